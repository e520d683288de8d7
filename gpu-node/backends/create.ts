/** Creates the backend a config names: noop, Triton over localhost, or ONNX Runtime in-process. */
import type { Config } from "../config.ts";
import type { Logger } from "../logger.ts";
import { type Backend, CPU_MAX_BATCH } from "./backend.ts";
import { createNoopBackend } from "./noop.ts";

/** Creates the backend the config asks for (the model is generated on first use). */
export async function createBackend(config: Config, log: Logger): Promise<Backend> {
  const explicit = config.maxBatchSize === "auto" ? undefined : config.maxBatchSize;
  if (config.backend === "noop") return createNoopBackend(explicit ?? CPU_MAX_BATCH);
  // Imported on demand: a cluster worker of an onnxruntime node never loads ONNX Runtime.
  if (config.backend === "triton") {
    const { createTritonBackend } = await import("./triton/backend.ts");
    return createTritonBackend({
      url: config.tritonUrl,
      model: config.tritonModel,
      modelVersion: config.tritonModelVersion,
      shm: config.tritonShm,
      concurrency: config.tritonConcurrency,
      // Triton's own max_batch_size rules; this applies only where its config does not say.
      maxBatchSize: explicit ?? CPU_MAX_BATCH,
      timeoutMs: config.tritonTimeoutMs,
      startTimeoutMs: config.tritonStartTimeoutMs,
      healthIntervalMs: config.tritonHealthIntervalMs,
      statsIntervalMs: config.tritonStatsIntervalMs,
      log,
    });
  }
  const t0 = performance.now();
  // Loaded on demand: ONNX Runtime's native library is large, and the noop and triton backends
  // (e.g. a GPU host running Triton beside us) do not need it installed at all.
  const { ensureModel } = await import("../model/index.ts");
  const model = await ensureModel(config.model, config.cacheDir);
  log.info(
    { model: model.name, path: model.path, ms: Math.round(performance.now() - t0) },
    "model file ready",
  );
  const { createOnnxRuntimeBackend } = await import("./onnxruntime.ts");
  return createOnnxRuntimeBackend({
    modelPath: model.path,
    name: model.name,
    version: model.sha256.slice(0, 12),
    threads: config.threads,
    provider: config.ortProvider,
    maxBatchSize: explicit,
    runTimeoutMs: config.ortRunTimeoutMs,
    log,
    // The device is gone and did not come back: stop, so that the supervisor (systemd, a
    // container runtime, Kubernetes) starts a fresh process; waiting would only fail calls.
    onFatal: (err) => {
      log.fatal({ err: err.message }, "GPU lost: exiting");
      process.exit(1);
    },
  });
}
