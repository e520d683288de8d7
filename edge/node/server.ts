/** The edge on Node, for teams that self-host without Cloudflare: the same Hono app, sharp as the resizer, settings from the environment. */
import { parseArgs } from "node:util";
import { serve } from "@hono/node-server";
import { createApp } from "../app.ts";
import { EDGE_SETTINGS, parseEdgeConfig } from "../config.ts";
import { createGpuClient, gpuClientOptions } from "../gpu-client.ts";
import { nodeGpuTransport } from "./gpu-transport.ts";
import { createSharpResizer } from "./sharp-resizer.ts";

const resizer = createSharpResizer();

/**
 * The Node flags the edge runs with (`npm run edge:node`; package.json's scripts say them again,
 * and test/cli-help.test.ts checks that they agree). Each request leaves ~0.75 MB of ArrayBuffers
 * that only a GC frees (the body as read and joined, the decoded image, sharp's output, the
 * gpu-node request), and V8 counts them toward the limit at which it starts a full GC. Under V8's defaults the edge settled into a full GC every ~15
 * requests, each costing the request it lands on 10–15 ms on 2 cores (incremental marking, then
 * the pause): 67–73 in 1,000 seed calls.
 * - `--max-semi-space-size=4`: a young generation of at most 4 MB, so that scavenges every few
 *   requests (~1–3 ms) free those buffers before they add up. Alone, it only put that mode off
 *   (53–76 full GCs in 1,000 calls, in four scratch runs).
 * - `--initial-old-space-size=64`: V8 starts from a 64 MB old-generation budget and sets that
 *   limit from it. With both: 6 full GCs in 1,000 calls, p95 1.55–1.63× p50 against 3.0–3.1×,
 *   and less RSS (184–187 MB against 208) (`npm run bench:seed-tails -- --compare`;
 *   docs/benchmarks.md).
 */
export const NODE_FLAGS = ["--max-semi-space-size=4", "--initial-old-space-size=64"] as const;

/** The app with the environment as its bindings (the same variable names as wrangler.toml). */
export function createNodeEdge(env: Record<string, string | undefined> = process.env) {
  const vars = Object.fromEntries(
    Object.keys(EDGE_SETTINGS).flatMap((k) => (env[k] === undefined ? [] : [[k, env[k]]])),
  );
  parseEdgeConfig(vars); // fail at start, with the variable named, not on the first request
  const app = createApp({
    resizer: () => resizer,
    gpu: (config) => createGpuClient({ ...gpuClientOptions(config), transport: nodeGpuTransport }),
  });
  return { app, bindings: Object.freeze(vars) };
}

/** `npm run edge:node -- --help`: the listening address and every setting, with its default. */
function usage(): string {
  const width = Math.max(...Object.keys(EDGE_SETTINGS).map((k) => k.length));
  const settings = Object.entries(EDGE_SETTINGS).map(
    ([name, [fallback, meaning]]) =>
      `  ${name.padEnd(width)}  ${meaning}${fallback === "" ? "" : ` (default ${fallback})`}`,
  );
  return [
    "Usage: npm run edge:node [-- --help]",
    "",
    "Serves the edge (POST /v1/embeddings, POST /embed/base64, GET /healthz, GET /readyz) on",
    "EDGE_HOST:EDGE_PORT (default 127.0.0.1:8787), resizing with sharp. Settings come from the",
    "environment, with the names wrangler.toml uses (RESIZER aside: on Node it is always sharp, with",
    "HEIC through the Worker's WASM decoders):",
    ...settings,
  ].join("\n");
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { help: { type: "boolean", short: "h" } } });
  if (values.help) {
    console.log(usage());
    process.exit(0);
  }
  const { app, bindings } = createNodeEdge();
  const port = Number(process.env.EDGE_PORT ?? 8787);
  const hostname = process.env.EDGE_HOST ?? "127.0.0.1";
  serve({ fetch: (req) => app.fetch(req, bindings), port, hostname }, (info) => {
    console.log(JSON.stringify({ msg: "listening", url: `http://${hostname}:${info.port}` }));
  });
}
