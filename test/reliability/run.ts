/**
 * `npm run test:reliability`: runs the reliability suites (hostile inputs, fuzzers, overload,
 * faults, security) once with Vitest's JSON reporter, runs `npm audit`, and writes the report —
 * test-results/reliability/report.md and report.json — from the figures the passing tests
 * attached to themselves (test/reliability/figures.ts). A full run with the CI fuzz count also
 * refreshes the committed copy, test/reliability-report.md, that the README links.
 *
 *   npm run test:reliability                             # ~2 min on 2 cores
 *   npm run test:reliability -- --fuzz-iterations 20000  # a longer fuzz (report under test-results/ only)
 *   npm run fuzz -- --fuzz-iterations 20000 --fuzz-seed 7  # the fuzzers alone
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { CI_FUZZ_ITERATIONS } from "../support/fuzz-sources.ts";
import { type AuditResult, type RunInfo, writeReport } from "./report.ts";

const ROOT = resolve(import.meta.dirname, "../..");

export const SUITES = {
  hostile: ["edge/hostile.test.ts", "test/hostile-inputs.test.ts"],
  fuzz: ["edge/fuzz.test.ts", "test/fuzz.test.ts"],
  load: ["test/overload.test.ts"],
  faults: ["test/faults.test.ts", "test/triton-faults.test.ts"],
  security: ["test/security.test.ts", "test/gpu-node.test.ts"],
} as const;

const { values } = parseArgs({
  options: {
    "fuzz-iterations": { type: "string" },
    "fuzz-seed": { type: "string" },
    only: { type: "string", multiple: true },
    out: { type: "string", default: "test-results/reliability" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  process.stdout.write(
    "Usage: npm run test:reliability -- [--fuzz-iterations N] [--fuzz-seed S] [--only hostile|fuzz|load|faults|security]... [--out DIR]\n",
  );
  process.exit(0);
}

const only = (values.only ?? []) as (keyof typeof SUITES)[];
for (const o of only) {
  if (!(o in SUITES)) throw new Error(`--only ${o}: one of ${Object.keys(SUITES).join(", ")}`);
}
const suites = only.length > 0 ? only : (Object.keys(SUITES) as (keyof typeof SUITES)[]);
const files = suites.flatMap((s) => SUITES[s]);
const env: NodeJS.ProcessEnv = { ...process.env };
if (values["fuzz-iterations"] !== undefined) env.FUZZ_ITERATIONS = values["fuzz-iterations"];
if (values["fuzz-seed"] !== undefined) env.FUZZ_SEED = values["fuzz-seed"];
const out = resolve(ROOT, values.out);
mkdirSync(out, { recursive: true });
const vitestJson = join(out, "vitest.json");

const started = new Date();
const t0 = performance.now();
process.stderr.write(`reliability: running ${files.join(" ")}\n`);
const vitest = spawnSync(
  process.execPath,
  [
    join(ROOT, "node_modules/vitest/vitest.mjs"),
    "run",
    ...files,
    "--reporter=default",
    "--reporter=json",
    `--outputFile.json=${vitestJson}`,
  ],
  { cwd: ROOT, env, stdio: "inherit" },
);
const seconds = (performance.now() - t0) / 1000;

/** npm audit needs the registry's advisory endpoint; whatever it answers is recorded as is. */
function audit(): AuditResult {
  const res = spawnSync("npm", ["audit", "--json"], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 120_000,
  });
  try {
    const json = JSON.parse(res.stdout) as {
      metadata?: { vulnerabilities?: Record<string, number> };
      message?: string;
      error?: { summary?: string };
    };
    if (json.metadata?.vulnerabilities) {
      return { ran: true, vulnerabilities: json.metadata.vulnerabilities };
    }
    return { ran: false, error: json.message ?? json.error?.summary ?? res.stderr.trim() };
  } catch {
    return {
      ran: false,
      error: (res.stderr || res.stdout || String(res.error)).trim().slice(0, 500),
    };
  }
}

const git = (args: string[]) =>
  spawnSync("git", args, { cwd: ROOT, encoding: "utf8" }).stdout?.trim() ?? "";
const fuzzIterations = Number(env.FUZZ_ITERATIONS ?? CI_FUZZ_ITERATIONS);
const info: RunInfo = {
  startedAt: started.toISOString(),
  seconds: Math.round(seconds),
  suites,
  files,
  fuzzIterations,
  commit: git(["rev-parse", "--short", "HEAD"]),
  dirty: git(["status", "--porcelain"]) !== "",
  vitestExitCode: vitest.status ?? -1,
};
const { markdown, json } = writeReport(JSON.parse(readFileSync(vitestJson, "utf8")), info, audit());
writeFileSync(join(out, "report.md"), markdown);
writeFileSync(join(out, "report.json"), `${JSON.stringify(json, null, 2)}\n`);
process.stderr.write(`reliability: wrote ${join(values.out, "report.md")} and report.json\n`);
// The committed copy holds a full run with the CI fuzz count: the figures `npm test` asserts.
if (only.length === 0 && fuzzIterations === CI_FUZZ_ITERATIONS && vitest.status === 0) {
  writeFileSync(join(ROOT, "test/reliability-report.md"), markdown);
  process.stderr.write("reliability: refreshed test/reliability-report.md\n");
}
process.exit(vitest.status ?? 1);
