import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CALIBRATION_IMAGE_SEED } from "./calibrate.ts";
import { generateVitModel } from "./generate.ts";
import { embedAll, openSession } from "./ort-run.ts";
import { Rng } from "./prng.ts";
import { PATTERNS, syntheticBatch } from "./synthetic-images.ts";

const TEST_IMAGE_SEED = 2024;
const COUNT = 3 * PATTERNS.length; // 18 different images, every pattern three times

type Session = Awaited<ReturnType<typeof openSession>>;

function cosine(a: Float32Array, i: number, b: Float32Array, j: number, dim: number): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let k = 0; k < dim; k++) {
    const x = a[i * dim + k]!;
    const y = b[j * dim + k]!;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return dot / Math.sqrt(na * nb);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function pairwiseMedian(session: Session, images: Uint8Array): Promise<number> {
  const { data, dim } = await embedAll(session, images);
  const cosines: number[] = [];
  for (let i = 0; i < COUNT; i++) {
    for (let j = i + 1; j < COUNT; j++) cosines.push(cosine(data, i, data, j, dim));
  }
  return median(cosines);
}

describe("calibration", () => {
  expect(TEST_IMAGE_SEED).not.toBe(CALIBRATION_IMAGE_SEED);
  const images = syntheticBatch(TEST_IMAGE_SEED, COUNT);
  let calibrated: Session;
  let plain: Session;

  beforeAll(async () => {
    calibrated = await openSession(await generateVitModel("vit-tiny"), 2);
    plain = await openSession(await generateVitModel("vit-tiny", { calibrate: false }), 2);
  });
  afterAll(async () => {
    await calibrated?.release();
    await plain?.release();
  });

  it("spreads different images apart that a random ViT puts close together", async () => {
    const before = await pairwiseMedian(plain, images);
    const after = await pairwiseMedian(calibrated, images);
    expect(before).toBeGreaterThan(0.8);
    expect(after).toBeLessThanOrEqual(0.6);
  });

  it("keeps an image with a little noise (±4 grey levels) at cosine ≥ 0.98", async () => {
    const rng = new Rng(99);
    const noisy = images.map((v) => Math.min(255, Math.max(0, v + rng.int(9) - 4)));
    const clean = await embedAll(calibrated, images);
    const perturbed = await embedAll(calibrated, noisy);
    for (let i = 0; i < COUNT; i++) {
      expect(cosine(clean.data, i, perturbed.data, i, clean.dim)).toBeGreaterThanOrEqual(0.98);
    }
  });
});
