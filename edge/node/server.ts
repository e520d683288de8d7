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
 * The Node flags the edge runs with (`npm run edge:node`; package.json must say the same): a young
 * generation of at most 4 MB. Each request leaves ~0.75 MB of ArrayBuffers that only a GC frees
 * (the body as read and joined, the decoded image, sharp's output, the gpu-node request). Under
 * V8's default young generation they could pile up until a full GC every ~10 requests, 2–7 ms
 * each, and p95 reached 2.2–2.7× p50 on loopback (in half to most runs of 200 seed calls). With
 * 4 MB, scavenges every few requests (~1–3 ms) free them: p95 stayed at 1.4–1.5× p50 in every run
 * (`npm run bench:seed-tails -- --compare`; docs/benchmarks.md).
 */
export const NODE_FLAGS = ["--max-semi-space-size=4"] as const;

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
