/** What the routes share: the app's Hono environment, and `embed`, which runs the pipeline for a route's uploads and reports its stages in Server-Timing and analytics. */
import type { Context } from "hono";
import { endTime, setMetric, startTime } from "hono/timing";
import type { Admission } from "../admission.ts";
import { noteImages } from "../analytics.ts";
import { type EdgeConfig, edgeConfig } from "../config.ts";
import type { GpuClient } from "../gpu-client.ts";
import { type PipelineResult, runPipeline, type StageTimer } from "../pipeline.ts";
import type { Resizer } from "../resize/resizer.ts";

export type AppEnv = {
  Bindings: object;
  Variables: { apiKeyId: string; requestId: string };
};

export type Ctx = Context<AppEnv>;

/** Runs the pipeline on a request's uploads: its config and result, the timings already reported. */
export type Embed = (
  c: Ctx,
  uploads: Parameters<typeof runPipeline>[0],
  options: { readonly hashOriginals: boolean },
) => Promise<{ config: EdgeConfig; result: PipelineResult }>;

/** The app's `embed`, with its resizer and (per config) gpu-node client. */
export function createEmbed(
  resizer: (env: object, config: EdgeConfig) => Resizer,
  gpuFor: (config: EdgeConfig) => GpuClient,
  admissionFor: (config: EdgeConfig) => Admission | undefined,
): Embed {
  return async (c, uploads, { hashOriginals }) => {
    const config = edgeConfig(c.env);
    const result = await runPipeline(uploads, {
      config,
      resizer: resizer(c.env, config),
      gpu: gpuFor(config),
      admission: admissionFor(config),
      time: stageTimer(c),
      requestId: c.get("requestId"),
      signal: c.req.raw.signal,
      hashOriginals,
    });
    reportGpuTimings(c, result);
    noteImages(c, result.images);
    return { config, result };
  };
}

const stageTimer =
  (c: Ctx): StageTimer =>
  async (stage, work) => {
    startTime(c, stage);
    try {
      return await work();
    } finally {
      endTime(c, stage);
    }
  };

/** The gpu-node's own stages, prefixed, next to the edge's in Server-Timing. */
function reportGpuTimings(c: Ctx, result: PipelineResult): void {
  const t = result.embedded.timings;
  if (!t) return;
  const ms = (us: number) => us / 1000;
  setMetric(c, "gpu-node-decode", ms(t.decodeUs));
  setMetric(c, "gpu-node-preprocess", ms(t.preprocessUs));
  setMetric(c, "gpu-node-queue", ms(t.queueUs));
  setMetric(c, "gpu-node-inference", ms(t.inferenceUs));
  setMetric(c, "gpu-node-total", ms(t.totalUs));
}
