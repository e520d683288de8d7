/** The one micro-batcher a model gets: batch limits from the config and the model, timed by the metrics. */
import { type Backend, type ModelDescription, onOrtGpu } from "../backends/backend.ts";
import type { Config } from "../config.ts";
import type { NodeMetrics } from "../observability/metrics.ts";
import { createBatchRunner } from "./batch-runner.ts";
import { MicroBatcher } from "./batcher.ts";

/**
 * ONNX Runtime on the CPU shares the cores with decoding: batches that wait a little for the
 * images of calls still decoding (a 32-image call measured decode p50 1,248 → 79 ms) beat
 * batches that start at once and starve those decodes. A GPU or Triton computes elsewhere.
 */
export function autoBatchWaitMs(model: ModelDescription): number {
  return model.backend === "onnxruntime" && !onOrtGpu(model) ? 100 : 2;
}

/** A micro-batcher in front of `backend`, timed by `metrics`: the one batcher a model gets. */
export function createModelBatcher(
  config: Config,
  backend: Backend,
  model: ModelDescription,
  metrics: NodeMetrics,
): MicroBatcher {
  return new MicroBatcher({
    maxBatchSize:
      config.maxBatchSize === "auto"
        ? model.maxBatchSize
        : Math.min(config.maxBatchSize, model.maxBatchSize),
    maxWaitMs: config.maxBatchWaitMs === "auto" ? autoBatchWaitMs(model) : config.maxBatchWaitMs,
    // An in-process CPU backend gains nothing from overlapping batches; Triton overlaps them
    // (dynamic batching, several instances, transfers while the GPU computes); a GPU provider
    // gets its next batch queued on its thread while one computes, so the GPU never waits.
    maxConcurrentBatches:
      config.backend === "triton" ? config.tritonConcurrency : onOrtGpu(model) ? 2 : 1,
    run: metrics.timeBatches(createBatchRunner(backend, model)),
  });
}
