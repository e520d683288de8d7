/** The gpu-node's own model path without the server: createBackend + the batch runner, for tests and benchmarks that embed pixels directly. */

import { createBackend } from "../../gpu-node/backends/create.ts";
import { createBatchRunner } from "../../gpu-node/batching/batch-runner.ts";
import { testConfig } from "../../gpu-node/config.ts";
import { createLogger } from "../../gpu-node/logger.ts";

export interface PixelEmbedder {
  /** Unit vectors for 224x224 RGB images, in order. */
  embed(pixels: readonly Uint8Array[]): Promise<Float32Array[]>;
  close(): Promise<void>;
}

export async function openEmbedder(model = "vit-b32", threads = 2): Promise<PixelEmbedder> {
  const config = testConfig({ model, threads });
  const backend = await createBackend(config, createLogger("silent"));
  const description = await backend.start();
  const run = createBatchRunner(backend, description);
  return {
    async embed(pixels) {
      const out: Float32Array[] = [];
      for (let i = 0; i < pixels.length; i += description.maxBatchSize) {
        // Rows are views into one batch output: copy so the caller owns each vector.
        const batch = await run(pixels.slice(i, i + description.maxBatchSize));
        out.push(...batch.vectors.map((v) => v.slice()));
      }
      return out;
    },
    close: () => backend.close(),
  };
}
