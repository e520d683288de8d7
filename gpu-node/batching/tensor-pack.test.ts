import { describe, expect, it } from "vitest";
import { IMAGE_BYTES, INPUT_SIZE } from "../backends/backend.ts";
import { packFloat32Nchw, packUint8Nhwc } from "./tensor-pack.ts";

const PLANE = INPUT_SIZE * INPUT_SIZE;

/** An image whose every byte is a function of its position, so misplaced bytes show. */
function patterned(seed: number): Uint8Array {
  const image = new Uint8Array(IMAGE_BYTES);
  for (let i = 0; i < IMAGE_BYTES; i++) image[i] = (i * 31 + seed * 7) % 256;
  return image;
}

// open_clip's OPENAI_DATASET_MEAN / OPENAI_DATASET_STD, written out independently of the code.
const MEAN = [0.48145466, 0.4578275, 0.40821073];
const STD = [0.26862954, 0.26130258, 0.27577711];

function normalised(value: number, channel: number): number {
  return (value / 255 - MEAN[channel]!) / STD[channel]!;
}

describe("packUint8Nhwc", () => {
  it("concatenates images in order", () => {
    const images = [patterned(1), patterned(2), patterned(3)];
    const packed = packUint8Nhwc(images);
    expect(packed.length).toBe(3 * IMAGE_BYTES);
    images.forEach((image, i) => {
      expect(packed.subarray(i * IMAGE_BYTES, (i + 1) * IMAGE_BYTES)).toEqual(image);
    });
  });

  it("fills a caller's larger buffer and returns a view of exactly N images", () => {
    const buffer = new Uint8Array(8 * IMAGE_BYTES);
    const packed = packUint8Nhwc([patterned(4), patterned(5)], buffer);
    expect(packed.buffer).toBe(buffer.buffer);
    expect(packed.byteOffset).toBe(0);
    expect(packed.length).toBe(2 * IMAGE_BYTES);
    expect(buffer.subarray(IMAGE_BYTES, 2 * IMAGE_BYTES)).toEqual(patterned(5));
  });

  it("accepts an empty batch", () => {
    expect(packUint8Nhwc([]).length).toBe(0);
  });

  it("rejects an image of the wrong size and a buffer that is too small", () => {
    expect(() => packUint8Nhwc([new Uint8Array(10)])).toThrow(RangeError);
    expect(() => packUint8Nhwc([patterned(1)], new Uint8Array(IMAGE_BYTES - 1))).toThrow(
      RangeError,
    );
  });
});

describe("packFloat32Nchw", () => {
  it("transposes HWC to CHW and normalises with OpenCLIP mean and std", () => {
    const images = [patterned(1), patterned(9)];
    const packed = packFloat32Nchw(images);
    expect(packed.length).toBe(2 * IMAGE_BYTES);
    for (const [n, y, x] of [
      [0, 0, 0],
      [0, 17, 200],
      [1, 223, 223],
      [1, 100, 3],
    ] as const) {
      for (let c = 0; c < 3; c++) {
        const byte = images[n]![(y * INPUT_SIZE + x) * 3 + c]!;
        const value = packed[n * IMAGE_BYTES + c * PLANE + y * INPUT_SIZE + x]!;
        expect(value).toBeCloseTo(normalised(byte, c), 6);
      }
    }
  });

  it("maps the extremes to the known OpenCLIP range", () => {
    const black = new Uint8Array(IMAGE_BYTES);
    const white = new Uint8Array(IMAGE_BYTES).fill(255);
    const packed = packFloat32Nchw([black, white]);
    expect(packed[0]).toBeCloseTo(-1.7922625, 6); // R of black
    expect(packed[IMAGE_BYTES + 2 * PLANE]).toBeCloseTo(2.145897, 6); // B of white
  });

  it("reuses the caller's buffer and overwrites stale data", () => {
    const buffer = new Float32Array(4 * IMAGE_BYTES).fill(Number.NaN);
    const packed = packFloat32Nchw([patterned(2)], buffer);
    expect(packed.buffer).toBe(buffer.buffer);
    expect(packed.length).toBe(IMAGE_BYTES);
    expect(packed.every(Number.isFinite)).toBe(true);
    expect(Number.isNaN(buffer[IMAGE_BYTES]!)).toBe(true);
  });

  it("rejects a buffer that is too small", () => {
    expect(() => packFloat32Nchw([patterned(1)], new Float32Array(10))).toThrow(RangeError);
  });

  it("packs a batch fast enough (prints µs/image)", () => {
    const images = Array.from({ length: 32 }, (_, i) => patterned(i));
    const buffer = new Float32Array(32 * IMAGE_BYTES);
    packFloat32Nchw(images, buffer);
    const rounds = 10;
    const start = performance.now();
    for (let r = 0; r < rounds; r++) packFloat32Nchw(images, buffer);
    const micros = ((performance.now() - start) * 1000) / (rounds * images.length);
    console.log(`packFloat32Nchw: ${micros.toFixed(0)} µs/image (batch 32, reused buffer)`);
    // Generous bound: a regression to per-pixel arithmetic or allocation shows up as >1 ms.
    expect(micros).toBeLessThan(1000);
  });
});
