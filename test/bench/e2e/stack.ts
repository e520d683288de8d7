/** The end-to-end benchmark's servers as child processes: the edge (wrangler's dev runtime, its production bundle on workerd, and on Node) and the KServe v2 test double with the FP32 model files it needs. */
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { NODE_FLAGS } from "../../../edge/node/server.ts";
import { float32ModelFile } from "../../support/kserve-double.ts";
import {
  type Announced,
  type KServeDoubleProcess,
  ROOT,
  spawnKServeDouble,
  startAnnounced,
} from "../../support/processes.ts";

// ---------------------------------------------------------------------------------------------
// The edge (wrangler's dev runtime, in e2e/edge-child.ts)

/** wrangler offline and quiet, its state in the ignored cache. */
const WRANGLER_ENV = (cacheDir: string) => ({
  WRANGLER_SEND_METRICS: "false",
  WRANGLER_SEND_ERROR_REPORTS: "false",
  WRANGLER_HIDE_BANNER: "true",
  CLOUDFLARE_CF_FETCH_ENABLED: "false",
  XDG_CONFIG_HOME: join(cacheDir, "xdg/config"),
  XDG_CACHE_HOME: join(cacheDir, "xdg/cache"),
  XDG_DATA_HOME: join(cacheDir, "xdg/data"),
});

export interface EdgeDev extends Announced {
  readonly url: string;
}

/** The Worker in wrangler's dev runtime: `url` is wrangler's dev proxy. */
export interface WorkerDev extends EdgeDev {
  /**
   * The Worker's own runtime behind that proxy (see edge-child.ts): what the bench measures, a
   * deployed Worker having no such proxy.
   */
  readonly workerUrl: string;
}

/**
 * The edge Worker from the project's wrangler.toml under wrangler's dev runtime (workerd and the
 * local Images binding, as `npm start` runs it), offline and quiet, its state and config in the
 * ignored cache, not watching the sources. `vars` reach it through its environment.
 */
export async function startEdgeDev(
  name: string,
  vars: Record<string, string>,
  cacheDir: string,
  startTimeoutMs = 90_000,
): Promise<WorkerDev> {
  const dir = join(cacheDir, "bench", "edge", name);
  mkdirSync(dir, { recursive: true });
  const edge = await startAnnounced(resolve(import.meta.dirname, "edge-child.ts"), {
    args: ["--port", "0", "--persist-to", join(dir, "state")],
    env: { ...process.env, ...WRANGLER_ENV(cacheDir), EDGE_VARS: JSON.stringify(vars) },
    isReady: (l) => typeof l.url === "string" && typeof l.workerUrl === "string",
    what: "edge",
    startTimeoutMs,
    keepLogs: false,
  });
  return { ...edge, url: edge.ready.url as string, workerUrl: edge.ready.workerUrl as string };
}

/**
 * The edge Worker's production bundle on workerd itself, with none of wrangler dev's layers
 * (e2e/workerd-child.ts): as close as this machine gets to a deployed Worker. It has no Images
 * binding, so `vars` must set RESIZER to "wasm".
 */
export async function startWorkerdEdge(
  vars: Record<string, string>,
  cacheDir: string,
  startTimeoutMs = 90_000,
): Promise<EdgeDev> {
  const edge = await startAnnounced(resolve(import.meta.dirname, "workerd-child.ts"), {
    args: ["--dir", join(cacheDir, "bench", "edge", "workerd")],
    env: { ...process.env, ...WRANGLER_ENV(cacheDir), EDGE_VARS: JSON.stringify(vars) },
    isReady: (l) => typeof l.url === "string",
    what: "Worker on workerd",
    startTimeoutMs,
    keepLogs: false,
  });
  return { ...edge, url: edge.ready.url as string };
}

/**
 * The edge on Node (`edge/node/server.ts`, the sharp resizer) on a free loopback port, with the
 * Node flags `npm run edge:node` gives it (or `nodeArgs`) and settings from its environment as an
 * operator would give them.
 */
export async function startNodeEdge(
  vars: Record<string, string>,
  nodeArgs: readonly string[] = NODE_FLAGS,
): Promise<EdgeDev> {
  const edge = await startAnnounced(resolve(ROOT, "edge/node/server.ts"), {
    nodeArgs,
    env: { ...process.env, ...vars, EDGE_HOST: "127.0.0.1", EDGE_PORT: "0" },
    isReady: (l) => l.msg === "listening" && typeof l.url === "string",
    what: "Node edge",
    startTimeoutMs: 30_000,
    keepLogs: false,
  });
  return { ...edge, url: edge.ready.url as string };
}

// ---------------------------------------------------------------------------------------------
// The KServe v2 test double as the benchmark's Triton

export interface DoubleChild extends KServeDoubleProcess {
  readonly model: string;
}

/** The double serving `model` with the seed's FP32 input, behind a 16 MiB connection window. */
export async function startDouble(
  model: string,
  cacheDir: string,
  threads: number,
): Promise<DoubleChild> {
  const path = await float32ModelFile(model, cacheDir);
  const double = await spawnKServeDouble(
    { name: model, path, layout: "float32-nchw", maxBatch: 32 },
    { threads, openWindow: true, keepLogs: false },
  );
  return { ...double, model };
}
