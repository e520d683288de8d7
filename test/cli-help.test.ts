// Every npm script answers --help with its usage and exits 0 without doing work. The scripts are
// read from package.json, so a new one is covered (or must be skipped here, by name) on arrival.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { NODE_FLAGS as EDGE_NODE_FLAGS } from "../edge/node/server.ts";

const ROOT = resolve(import.meta.dirname, "..");
const scripts = (
  JSON.parse(readFileSync(resolve(ROOT, "package.json"), "utf8")) as {
    scripts: Record<string, string>;
  }
).scripts;

/** Scripts that are not tools of ours with a usage: the toolchain's own, and the edge's entries. */
const SKIPPED: Record<string, string> = {
  test: "vitest",
  lint: "biome",
  format: "biome",
  typecheck: "tsc",
  generate: "buf and wrangler",
  start: "the edge's local stack: its command line belongs to the edge's reorganisation",
  "edge:node": "the edge's Node entry: likewise",
  postinstall: "patch-package (patches/README.md)",
};
const isDocs = (name: string) => name === "docs" || name.startsWith("docs:");

/** Entry files that are not npm scripts but are run directly (`node FILE --help`). */
const DIRECT = [
  "test/support/kserve-double.ts",
  "test/bench/e2e/edge-child.ts",
  "test/bench/e2e/workerd-child.ts",
];

const words = (text: string) => text.trim().split(/\s+/).filter(Boolean);

/** `[VAR=… ]node [--flags…] FILE.ts [args…]` → Node's flags, the file and the script's arguments. */
function entryOf(
  command: string,
): { nodeFlags: string[]; file: string; args: string[] } | undefined {
  const m = /(?:^|\s)node((?:\s+--\S+)*)\s+(\S+\.ts)((?:\s+\S+)*)\s*$/.exec(command);
  if (!m) return undefined;
  return { nodeFlags: words(m[1]!), file: m[2]!, args: words(m[3]!) };
}

const covered = Object.entries(scripts).filter(([name]) => !(name in SKIPPED) && !isDocs(name));

describe("--help", () => {
  it("every script that is not skipped by name runs a .ts entry file with node", () => {
    expect(covered.filter(([, command]) => entryOf(command) === undefined)).toEqual([]);
    expect(Object.keys(SKIPPED).filter((name) => !(name in scripts))).toEqual([]);
  });

  const cases = [
    ...covered.map(([name, command]) => ({ name: `npm run ${name}`, ...entryOf(command)! })),
    ...DIRECT.map((file) => ({
      name: file,
      nodeFlags: [] as string[],
      file,
      args: [] as string[],
    })),
  ];
  it.each(cases)("$name -- --help prints its usage and exits 0", ({ nodeFlags, file, args }) => {
    // With the script's own Node flags: Node refusing one would stop the script at start.
    const res = spawnSync(
      process.execPath,
      [...nodeFlags, resolve(ROOT, file), ...args, "--help"],
      {
        cwd: ROOT,
        encoding: "utf8",
        // Were --help ignored, the tool would start its work: the test's timeout says so.
        timeout: 50_000,
      },
    );
    expect(res.stderr).toBe("");
    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(/^usage: /i);
  });
});

// Bad arguments stop a benchmark before it starts any server, naming what was wrong.
describe("benchmark arguments", () => {
  it.each([
    ["test/bench/gpu-host.ts", ["--protocol", "h3"], "--protocol is grpc or connect"],
    [
      "test/bench/gpu-host.ts",
      ["--stub-decoder", "--counts", "1,2"],
      "--stub-decoder runs one process",
    ],
    [
      "test/bench/gpu-host.ts",
      ["--stub-decoder", "--max-processes", "4"],
      "--stub-decoder runs one process",
    ],
    ["test/bench/seed-tails.ts", ["--calls", "5"], "--calls takes an integer ≥ 20"],
    ["test/bench/seed-tails.ts", ["--runs", "0"], "--runs a positive integer"],
  ])("%s %j is refused", (file, args, message) => {
    const res = spawnSync(process.execPath, [resolve(ROOT, file), ...args], {
      cwd: ROOT,
      encoding: "utf8",
      timeout: 50_000,
    });
    expect(res.status).not.toBe(0);
    expect(res.stderr).toContain(message);
    expect(res.stdout).not.toContain("##");
  });
});

// The twin of test/deploy.test.ts's check on the gpu-node's launchers: the edge's Node flags are
// written out in package.json, so a change to NODE_FLAGS must reach each script that uses them.
describe("the edge's Node flags", () => {
  it.each(["edge:node", "bench", "bench:seed-tails"])(
    "npm run %s passes NODE_FLAGS from edge/node/server.ts",
    (name) => {
      expect(entryOf(scripts[name]!)?.nodeFlags).toEqual([...EDGE_NODE_FLAGS]);
    },
  );
});
