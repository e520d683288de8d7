/**
 * Assembles a gpu-node from a config: backend, model, metrics, batcher and decoder behind the RPC
 * server (one process), or a cluster of worker processes sharing the port (cluster/primary.ts).
 * Tests start nodes here with port 0.
 */
import { endianness } from "node:os";
import { createBackend } from "./backends/create.ts";
import { createModelBatcher } from "./batching/model-batcher.ts";
import { type Config, summary } from "./config.ts";
import { createLogger } from "./logger.ts";
import { createMetrics, tritonStatsOf } from "./observability/metrics.ts";
import { chooseJpegDecoder, decodeForClip, jpegFastPath } from "./preprocess/decode.ts";
import { releasePixels } from "./preprocess/jpeg-fast-path.ts";
import { type GpuNode, type GpuNodeOverrides, serveNode } from "./rpc/server.ts";
import { loadTlsFiles } from "./rpc/tls.ts";

export type { CloseOptions, GpuNode, GpuNodeOverrides } from "./rpc/server.ts";

/**
 * Loads the model and starts listening. Tests call this with port 0. With `processes` > 1 this
 * process becomes the primary of a cluster of workers sharing the port (cluster.ts).
 */
export async function startGpuNode(
  config: Config,
  overrides: GpuNodeOverrides = {},
): Promise<GpuNode> {
  if (endianness() !== "LE")
    throw new Error(
      "vectors are sent as little-endian float32: big-endian hosts are not supported",
    );
  // Before the model loads: a bad certificate or key stops the start at once, naming the file.
  if (config.tlsCert !== "") loadTlsFiles(config.tlsCert, config.tlsKey);
  // Likewise GPU_NODE_JPEG_DECODER=native where the native build cannot load.
  if (!overrides.decode) chooseJpegDecoder(config.jpegDecoder);
  if (config.processes > 1) {
    const { startCluster } = await import("./cluster/primary.ts");
    return startCluster(config, overrides);
  }
  const log = overrides.log ?? createLogger(config.logLevel);
  const backend = overrides.backend ?? (await createBackend(config, log));
  const model = await backend.start();
  log.info({ ...model }, "model loaded");
  const metrics = createMetrics({ model, triton: tritonStatsOf(backend) });
  const node = await serveNode(config, {
    log,
    model,
    metrics,
    batcher: createModelBatcher(config, backend, model, metrics),
    decode: overrides.decode ?? decodeForClip,
    releasePixels,
    backendReady: () => backend.ready(),
    notReadyReason: () => backend.notReadyReason?.(),
    serveMetrics: config.metrics,
    release: () => backend.close(),
  });
  // Which build decodes plain JPEGs without sharp (jpeg-fast-path.ts); off if none agreed with it.
  const fastPath = overrides.decode ? undefined : await jpegFastPath();
  log.info(
    { url: node.url, metricsUrl: node.metricsUrl, ...summary(config), jpegFastPath: fastPath },
    "listening",
  );
  return node;
}
