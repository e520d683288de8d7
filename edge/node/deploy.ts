/**
 * `npm run deploy`: checks wrangler.toml's [env.production] the way the deployed Worker will read
 * it (edge/config.ts), refuses configurations that cannot work once deployed, then runs
 * `wrangler deploy --env production` and reports the bundle's compressed size against the
 * Workers limits.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import { parse } from "smol-toml";
import { type EdgeVars, parseEdgeConfig } from "../config.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const WRANGLER = join(ROOT, "node_modules/.bin/wrangler");
const MB = 1024 * 1024;
/** Compressed Worker size limits (Cloudflare's published figures). */
const LIMITS = { free: 3 * MB, paid: 10 * MB } as const;

const HELP = `Usage: npm run deploy -- [--check] [--dry-run [--outdir DIR]] [wrangler deploy options]

Checks wrangler.toml's [env.production] with the edge's own config parser, then runs
\`wrangler deploy --env production\` with the remaining options.

  --check     only the checks, no wrangler
  --dry-run   bundle without uploading (wrangler's own flag); the bundle's compressed size is
              printed against the Workers limits (3 MB Free, 10 MB Paid)
  --outdir    where the dry run writes the bundle (default: a temporary folder)
  --help      this text

Refused: ENVIRONMENT other than "production", a GPU_NODE_URLS entry with a port other than its
scheme's default (a deployed Worker ignores it), http: to a host that is not loopback, and any
value the edge itself would reject. Secrets (API_KEY_HASHES, GPU_NODE_TOKEN, CF_ACCESS_CLIENT_*)
are set with \`wrangler secret put NAME --env production\` (docs/deployment.md).`;

/** The problems that stop a deploy of `toml` (wrangler.toml's text); empty when it may go. */
export function productionProblems(toml: string): string[] {
  const config = parse(toml) as { env?: { production?: { vars?: Record<string, unknown> } } };
  const production = config.env?.production;
  if (!production) return ["wrangler.toml has no [env.production]"];
  const vars = Object.fromEntries(
    Object.entries(production.vars ?? {}).map(([k, v]) => [k, String(v)]),
  ) as EdgeVars;
  if (vars.ENVIRONMENT !== "production") {
    return [
      `[env.production.vars] ENVIRONMENT must be "production" (got ${JSON.stringify(vars.ENVIRONMENT ?? null)}): the Worker's guards key on it`,
    ];
  }
  try {
    return [...parseEdgeConfig(vars).problems];
  } catch (err) {
    return [err instanceof Error ? err.message : String(err)];
  }
}

function sizeOf(dir: string): { raw: number; gzip: number; files: number } {
  let raw = 0;
  let gzip = 0;
  let files = 0;
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const path = join(dir, name);
    if (!statSync(path).isFile() || name.endsWith(".map")) continue;
    const bytes = readFileSync(path);
    raw += bytes.length;
    gzip += gzipSync(bytes, { level: 9 }).length;
    files++;
  }
  return { raw, gzip, files };
}

function main(): number {
  const args = process.argv.slice(2);
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const problems = productionProblems(readFileSync(join(ROOT, "wrangler.toml"), "utf8"));
  if (problems.length > 0) {
    process.stderr.write(
      `deploy refused: [env.production] cannot work once deployed:\n${problems.map((p) => `  - ${p}`).join("\n")}\n`,
    );
    return 1;
  }
  process.stdout.write("deploy checks passed: [env.production] is fit for a deployed Worker\n");
  if (args.includes("--check")) return 0;

  const dryRun = args.includes("--dry-run");
  let outdir: string | undefined;
  const rest = [...args];
  const at = rest.indexOf("--outdir");
  if (at >= 0) {
    outdir = resolve(rest[at + 1] ?? "");
    rest.splice(at, 2);
  }
  const temporary = dryRun && !outdir ? mkdtempSync(join(tmpdir(), "edge-bundle-")) : undefined;
  outdir ??= temporary;
  const wranglerArgs = ["deploy", "--env", "production", ...rest];
  if (outdir) wranglerArgs.push("--outdir", outdir);
  const run = spawnSync(WRANGLER, wranglerArgs, { cwd: ROOT, stdio: "inherit" });
  if (run.status !== 0) return run.status ?? 1;
  if (outdir) {
    const size = sizeOf(outdir);
    const verdict =
      size.gzip > LIMITS.paid
        ? "OVER the Paid limit"
        : size.gzip > LIMITS.free
          ? "over the Free limit, within Paid"
          : "within the Free and Paid limits";
    process.stdout.write(
      `bundle: ${size.files} files, ${(size.raw / 1024).toFixed(0)} KiB, ${(size.gzip / 1024).toFixed(0)} KiB compressed — ${verdict} (Free ${LIMITS.free / MB} MB, Paid ${LIMITS.paid / MB} MB compressed)\n`,
    );
    if (temporary) rmSync(temporary, { recursive: true, force: true });
    if (size.gzip > LIMITS.paid) return 1;
  }
  return 0;
}

if (import.meta.main) process.exitCode = main();
