/** The benchmark's photos: 341x256 q80 JPEGs of about 15 KB, like what the edge sends on. */
import sharp from "sharp";
import { photoPixels } from "../support/images.ts";

export const BENCH_WIDTH = 341;
export const BENCH_HEIGHT = 256;
export const BENCH_QUALITY = 80;
/**
 * Amplitude of the seeded luma grain added to test/support's smooth synthetic photo. Without it
 * a 341x256 q80 JPEG is ~4.5 KB (gradients and blobs compress far better than photos); with ±17
 * it is ~15 KB, the size of a real phone photo shrunk to a 256 px short side at q80.
 */
const GRAIN = 17;

/** `count` distinct JPEGs (seeds seed0, seed0 + 1, ...); deterministic. */
export async function benchPhotos(count: number, seed0 = 1000): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const seed = seed0 + i;
    const px = photoPixels(BENCH_WIDTH, BENCH_HEIGHT, seed);
    let s = (seed * 2654435761 + 7) >>> 0 || 1;
    for (let p = 0; p < px.length; p += 3) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      s >>>= 0;
      const grain = Math.round((((s & 0xff) + ((s >>> 8) & 0xff) - 255) / 255) * GRAIN);
      for (let c = 0; c < 3; c++) px[p + c] = Math.max(0, Math.min(255, px[p + c]! + grain));
    }
    const raw = { width: BENCH_WIDTH, height: BENCH_HEIGHT, channels: 3 } as const;
    out.push(await sharp(px, { raw }).jpeg({ quality: BENCH_QUALITY }).toBuffer());
  }
  return out;
}
