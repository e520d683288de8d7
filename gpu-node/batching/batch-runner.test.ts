import { describe, expect, it } from "vitest";
import type { Backend, BatchTensor, ModelDescription } from "../backends/backend.ts";
import { IMAGE_BYTES } from "../backends/backend.ts";
import { createBatchRunner, l2Normalise } from "./batch-runner.ts";

const model = (layout: ModelDescription["layout"]): ModelDescription => ({
  name: "fake",
  version: "1",
  dimension: 4,
  layout,
  maxBatchSize: 4,
  backend: "fake",
});

/** Records what it was given; row n is [n+1, 0, 0, 0] scaled by the first input value + 1. */
function fakeBackend(seen: BatchTensor[]): Backend {
  return {
    start: async () => model("uint8-nhwc"),
    ready: async () => true,
    close: async () => {},
    async infer(batch) {
      seen.push({ ...batch, data: batch.data.slice() } as BatchTensor);
      const out = new Float32Array(batch.count * 4);
      for (let n = 0; n < batch.count; n++) out[n * 4 + (n % 4)] = 3;
      return out;
    },
  };
}

const image = (v: number) => new Uint8Array(IMAGE_BYTES).fill(v);

describe("createBatchRunner", () => {
  it("packs UINT8 NHWC for a uint8 model and returns unit rows in order", async () => {
    const seen: BatchTensor[] = [];
    const run = createBatchRunner(fakeBackend(seen), model("uint8-nhwc"));
    const out = await run([image(10), image(20)]);
    expect(seen[0]!.layout).toBe("uint8-nhwc");
    expect(seen[0]!.count).toBe(2);
    expect(seen[0]!.data.length).toBe(2 * IMAGE_BYTES);
    expect(seen[0]!.data[IMAGE_BYTES]).toBe(20);
    expect(Array.from(out.vectors[0]!)).toEqual([1, 0, 0, 0]);
    expect(Array.from(out.vectors[1]!)).toEqual([0, 1, 0, 0]);
  });

  it("packs normalised FP32 NCHW for a float model", async () => {
    const seen: BatchTensor[] = [];
    const run = createBatchRunner(fakeBackend(seen), model("float32-nchw"));
    await run([image(255)]);
    expect(seen[0]!.layout).toBe("float32-nchw");
    // (1 - mean_r) / std_r for a white pixel, OpenCLIP's normalisation.
    expect(seen[0]!.data[0]).toBeCloseTo((1 - 0.48145466) / 0.26862954, 5);
  });

  it("reuses its batch buffer and refuses batches over the model's maximum", async () => {
    const seen: BatchTensor[] = [];
    const run = createBatchRunner(fakeBackend(seen), model("uint8-nhwc"));
    await run([image(1)]);
    await run([image(2)]);
    expect(seen[1]!.data[0]).toBe(2);
    await expect(run([1, 2, 3, 4, 5].map(image))).rejects.toThrow(/exceeds max batch size 4/);
  });

  it("fails a batch whose backend returns the wrong number of floats or a zero row", async () => {
    const short: Backend = { ...fakeBackend([]), infer: async () => new Float32Array(3) };
    await expect(createBatchRunner(short, model("uint8-nhwc"))([image(1)])).rejects.toThrow(
      /3 floats for 1 images/,
    );
    expect(() => l2Normalise(new Float32Array(4))).toThrow(/zero or non-finite/);
  });
});
