/** The one micro-batcher a model gets: batch limits from the config and the model, timed by the metrics. */
import type { Backend, ModelDescription } from "../backends/backend.ts";
import type { Config } from "../config.ts";
import type { NodeMetrics } from "../observability/metrics.ts";
import { createBatchRunner } from "./batch-runner.ts";
import { MicroBatcher } from "./batcher.ts";

/** A micro-batcher in front of `backend`, timed by `metrics`: the one batcher a model gets. */
export function createModelBatcher(
  config: Config,
  backend: Backend,
  model: ModelDescription,
  metrics: NodeMetrics,
): MicroBatcher {
  return new MicroBatcher({
    maxBatchSize: Math.min(config.maxBatchSize, model.maxBatchSize),
    maxWaitMs: config.maxBatchWaitMs,
    // An in-process CPU backend gains nothing from overlapping batches; Triton overlaps them
    // (dynamic batching, several instances, transfers while the GPU computes).
    maxConcurrentBatches: config.backend === "triton" ? config.tritonConcurrency : 1,
    run: metrics.timeBatches(createBatchRunner(backend, model)),
  });
}
