/** A backend that runs no model: each vector is a cheap fingerprint of its pixels, so benchmarks measure only our CPU work while tests can still tell images apart. */
import type { Backend, BatchTensor, ModelDescription } from "./backend.ts";
import { IMAGE_BYTES } from "./backend.ts";

const DIMENSION = 512;
const STRIDE = 7;

export function createNoopBackend(maxBatchSize: number): Backend {
  const description: ModelDescription = {
    name: "noop",
    version: "0",
    dimension: DIMENSION,
    layout: "uint8-nhwc",
    maxBatchSize,
    backend: "noop",
  };
  let open = false;
  return {
    async start() {
      open = true;
      return description;
    },
    async infer(batch: BatchTensor) {
      if (!open) throw new Error("noop backend is not started");
      const out = new Float32Array(batch.count * DIMENSION);
      const chunk = Math.floor(IMAGE_BYTES / DIMENSION);
      // Every STRIDE-th byte of each chunk (R, G and B in turn): reading all 150,528 bytes cost
      // 0.16 ms an image, a third of decoding an exact-224 JPEG, which is not work a real node does.
      const samples = Math.ceil(chunk / STRIDE);
      for (let n = 0; n < batch.count; n++) {
        const base = n * IMAGE_BYTES;
        for (let d = 0; d < DIMENSION; d++) {
          let sum = 0;
          const start = base + d * chunk;
          for (let i = start; i < start + chunk; i += STRIDE) sum += batch.data[i];
          // Centred on mid-grey so that different images point in different directions.
          out[n * DIMENSION + d] = sum / samples - 127.5 + (d % 7) * 1e-3;
        }
      }
      return out;
    },
    async ready() {
      return open;
    },
    async close() {
      open = false;
    },
  };
}
