/**
 * The benchmark's Worker as a deployed one runs: the bundle that `wrangler deploy` would upload
 * (`wrangler deploy --dry-run --env "" --outdir`: the top-level environment, as `wrangler dev`), served by workerd itself — Cloudflare's open-source Workers
 * runtime, the build wrangler carries — with none of wrangler dev's layers. Under wrangler dev a
 * request also passes Miniflare's entry Worker (a JS hop in another isolate that fills in
 * `request.cf` and dev headers) and wrangler's dev middleware: on this machine a no-op GET took
 * 2.0–2.3 ms there against 0.6–0.8 ms here, the same as the Node edge's.
 *
 * Bindings are wrangler.toml's top-level [vars], then EDGE_VARS (JSON, from the environment, never
 * argv) over them; there is no Images binding, so RESIZER must be "wasm" (or "auto", which then
 * has nothing to hand large images to). The network allows loopback and private addresses: the
 * gpu-node is on loopback.
 *
 *   EDGE_VARS='{"GPU_NODE_URLS":"…","RESIZER":"wasm"}' node test/bench/e2e/workerd-child.ts --dir DIR
 * prints {"url": "http://127.0.0.1:PORT"} once workerd listens; SIGTERM stops it.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { parse } from "smol-toml";
import { parseCli } from "../../support/cli.ts";

const ROOT = resolve(import.meta.dirname, "../../..");
const USAGE = `usage: EDGE_VARS='{"GPU_NODE_URLS":"…","RESIZER":"wasm"}' node test/bench/e2e/workerd-child.ts --dir DIR

The edge Worker's production bundle (wrangler deploy --dry-run) on wrangler's own workerd, with a
config generated into DIR from wrangler.toml's vars and EDGE_VARS over them (no Images binding).
Prints {"url": "http://127.0.0.1:PORT"} once workerd listens; SIGTERM stops it.`;
const { values } = parseCli(USAGE, { options: { dir: { type: "string" } } });
if (!values.dir) throw new Error("--dir DIR is required (the bundle and config go there)");
const dir = resolve(values.dir);
const vars = JSON.parse(process.env.EDGE_VARS ?? "{}") as Record<string, string>;
delete process.env.EDGE_VARS;

interface WranglerToml {
  readonly compatibility_date?: string;
  readonly compatibility_flags?: readonly string[];
  readonly vars?: Readonly<Record<string, unknown>>;
}
const toml = parse(readFileSync(join(ROOT, "wrangler.toml"), "utf8")) as WranglerToml;
if (!toml.compatibility_date) throw new Error("wrangler.toml has no compatibility_date");

// The bundle wrangler would upload: the same esbuild run, the same module rules.
rmSync(dir, { recursive: true, force: true });
const build = spawn(
  process.execPath,
  [
    join(ROOT, "node_modules/wrangler/bin/wrangler.js"),
    "deploy",
    "--dry-run",
    "--env",
    "",
    "--outdir",
    dir,
  ],
  { cwd: ROOT, stdio: ["ignore", "ignore", "inherit"] },
);
const [code] = (await once(build, "exit")) as [number | null];
if (code !== 0) throw new Error(`wrangler deploy --dry-run exited with ${code}`);

/** A Cap'n Proto text literal: JSON's escapes are C's for printable text; nothing else is let in. */
function text(value: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f]/.test(value)) {
    throw new Error(`a binding holds a control character: ${JSON.stringify(value)}`);
  }
  return JSON.stringify(value);
}

if (!existsSync(join(dir, "index.js"))) throw new Error(`no index.js in ${dir}`);
// The entry module first; the WASM modules it imports by their file names.
const modules = [
  `(name = "index.js", esModule = embed "index.js")`,
  ...readdirSync(dir)
    .filter((name) => name.endsWith(".wasm"))
    .sort()
    .map((name) => `(name = ${text(name)}, wasm = embed ${text(name)})`),
];
const bindings = Object.entries({ ...toml.vars, ...vars }).map(
  ([name, value]) => `(name = ${text(name)}, text = ${text(String(value))})`,
);
writeFileSync(
  join(dir, "config.capnp"),
  `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "edge", worker = .edge),
    (name = "network", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:0", http = (), service = "edge")],
);
const edge :Workerd.Worker = (
  modules = [
    ${modules.join(",\n    ")},
  ],
  compatibilityDate = ${text(toml.compatibility_date)},
  compatibilityFlags = [${(toml.compatibility_flags ?? []).map(text).join(", ")}],
  bindings = [
    ${bindings.join(",\n    ")},
  ],
  globalOutbound = "network",
);
`,
);

// wrangler's own workerd (the one `wrangler dev` runs), not whichever the root node_modules has.
const workerdPath = (
  createRequire(join(ROOT, "node_modules/wrangler/package.json"))("workerd") as { default: string }
).default;
const workerd = spawn(workerdPath, ["serve", "config.capnp", "--control-fd=3"], {
  cwd: dir,
  stdio: ["ignore", "inherit", "inherit", "pipe"],
});
workerd.once("exit", (exitCode, signal) => {
  process.stderr.write(`workerd exited (${exitCode ?? signal})\n`);
  process.exit(1);
});
// workerd reports each socket it listens on as a JSON line on the control descriptor (kept open
// and read to the end: closing it early would break workerd's later writes).
createInterface({ input: workerd.stdio[3] as NodeJS.ReadableStream }).on("line", (line) => {
  const event = JSON.parse(line) as { event?: string; socket?: string; port?: number };
  if (event.event === "listen" && event.socket === "http") {
    process.stdout.write(`${JSON.stringify({ url: `http://127.0.0.1:${event.port}` })}\n`);
  }
});
const stop = () => {
  workerd.removeAllListeners("exit");
  workerd.once("exit", () => process.exit(0));
  workerd.kill("SIGTERM");
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
