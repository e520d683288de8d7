/** Runs a generated model in onnxruntime-node (CPU): calibration, tests and benchmarks. */

import * as ort from "onnxruntime-node";
import { IMAGE_BYTES, INPUT_SIZE } from "../../imaging/clip.ts";
import { INPUT_NAME, OUTPUT_NAME } from "./vit-graph.ts";

export { IMAGE_BYTES };

/** A CPU session with an explicit thread count (onnxruntime-node's default used one here). */
export function openSession(
  model: Uint8Array | string,
  threads: number,
): Promise<ort.InferenceSession> {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: ["cpu"],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
  };
  return typeof model === "string"
    ? ort.InferenceSession.create(model, options)
    : ort.InferenceSession.create(model, options);
}

/** Embeds `images` (count x 224x224x3 uint8, back to back); returns count x dim floats. */
export async function embed(
  session: ort.InferenceSession,
  images: Uint8Array,
): Promise<{ data: Float32Array; dim: number }> {
  if (images.length === 0 || images.length % IMAGE_BYTES !== 0) {
    throw new Error(`expected a multiple of ${IMAGE_BYTES} bytes, got ${images.length}`);
  }
  const count = images.length / IMAGE_BYTES;
  const input = new ort.Tensor("uint8", images, [count, INPUT_SIZE, INPUT_SIZE, 3]);
  const result = await session.run({ [INPUT_NAME]: input });
  const output = result[OUTPUT_NAME];
  if (output === undefined || output.type !== "float32") {
    throw new Error(`model has no float32 output "${OUTPUT_NAME}"`);
  }
  const data = output.data as Float32Array;
  return { data, dim: data.length / count };
}

/** Embeds many images in batches of `batchSize` (bounds memory for large models). */
export async function embedAll(
  session: ort.InferenceSession,
  images: Uint8Array,
  batchSize = 8,
): Promise<{ data: Float32Array; dim: number }> {
  const count = images.length / IMAGE_BYTES;
  const parts: Float32Array[] = [];
  let dim = 0;
  for (let start = 0; start < count; start += batchSize) {
    const end = Math.min(count, start + batchSize);
    const part = await embed(session, images.subarray(start * IMAGE_BYTES, end * IMAGE_BYTES));
    parts.push(part.data);
    dim = part.dim;
  }
  const data = new Float32Array(count * dim);
  let at = 0;
  for (const part of parts) {
    data.set(part, at);
    at += part.length;
  }
  return { data, dim };
}
