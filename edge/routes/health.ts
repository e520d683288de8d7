/** GET /healthz (the process is up) and GET /readyz (a gpu-node answers and its model is ready): a request in, a status JSON (200, or 503 when not ready) out. */
import { type EdgeConfig, edgeConfig } from "../config.ts";
import type { GpuClient } from "../gpu-client.ts";
import type { Ctx } from "./context.ts";

export function healthz(c: Ctx) {
  return c.json({ status: "ok" });
}

export function readyz(gpuFor: (config: EdgeConfig) => GpuClient) {
  return async function readyzHandler(c: Ctx) {
    const config = edgeConfig(c.env);
    if (config.problems.length > 0) {
      return c.json({ status: "misconfigured", problems: config.problems }, 503);
    }
    const ready = await gpuFor(config).ready(2000);
    return c.json({ status: ready ? "ready" : "gpu-node unreachable" }, ready ? 200 : 503);
  };
}
