/** Calibration: the mean unit embedding of a fixed synthetic image set, to centre a model on. */

import { embedAll, openSession } from "./ort-run.ts";
import { syntheticBatch } from "./synthetic-images.ts";

/** The calibration set: fixed, independent of the model seed, so it is part of the recipe. */
export const CALIBRATION_IMAGE_SEED = 0xca11b;
export const CALIBRATION_IMAGE_COUNT = 32;
/**
 * Fixed, so the centre (and so the file) does not depend on the caller's machine settings.
 * Results may still differ in the last bits across CPU types (onnxruntime picks SIMD kernels
 * by CPU), so "byte-identical per seed" holds per host type and onnxruntime version.
 */
const CALIBRATION_THREADS = 2;

/**
 * Runs `uncalibratedModel` (whose output is already L2-normalised) on the calibration set and
 * returns the mean of its embeddings. Accumulated in float64 in a fixed order.
 */
export async function computeCentre(uncalibratedModel: Uint8Array): Promise<Float32Array> {
  const session = await openSession(uncalibratedModel, CALIBRATION_THREADS);
  try {
    const images = syntheticBatch(CALIBRATION_IMAGE_SEED, CALIBRATION_IMAGE_COUNT);
    const { data, dim } = await embedAll(session, images);
    const sum = new Float64Array(dim);
    for (let i = 0; i < CALIBRATION_IMAGE_COUNT; i++) {
      for (let j = 0; j < dim; j++) sum[j]! += data[i * dim + j]!;
    }
    return Float32Array.from(sum, (s) => s / CALIBRATION_IMAGE_COUNT);
  } finally {
    await session.release();
  }
}
