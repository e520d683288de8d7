// The PNG decoder's pixels against libpng's (through sharp), exactly: at k = 1 (a small image,
// written straight into the output) and at k = 3 (summed into cells, the last ones partial), for
// every colour type the seed and phones send. The edge's resize tests compare the JPEG it makes
// (wasm-formats.node.test.ts); these compare the decoded samples themselves.
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { pngChunk as chunk, photoLike, randomBytes, withAlpha } from "../../test/support/images.ts";
import { decodePngReduced } from "./decode.ts";

// Odd sizes: Adam7's passes are uneven and k = 3 leaves partial cells on both edges.
const W = 61;
const H = 47;
const rgb = photoLike(W, H, 7);
const rgba = withAlpha(rgb, (i) => (i * 37) % 256);
const src = () => sharp(rgb, { raw: { width: W, height: H, channels: 3 } });

const variants: [string, () => Promise<Buffer>, number][] = [
  // [name, PNG, largest difference allowed from libpng's 8-bit samples]
  ["8-bit RGB", () => src().png().toBuffer(), 0],
  [
    "8-bit RGBA",
    () =>
      sharp(rgba, { raw: { width: W, height: H, channels: 4 } })
        .png()
        .toBuffer(),
    0,
  ],
  ["8-bit grey", () => src().toColourspace("b-w").png().toBuffer(), 0],
  [
    "8-bit grey and alpha",
    () =>
      sharp(rgba, { raw: { width: W, height: H, channels: 4 } })
        .toColourspace("b-w")
        .png()
        .toBuffer(),
    0,
  ],
  ["palette, 256 colours", () => src().png({ palette: true, colours: 256 }).toBuffer(), 0],
  ["palette, 2 bits a pixel", () => src().png({ palette: true, colours: 4 }).toBuffer(), 0],
  ["Adam7 RGB", () => src().png({ progressive: true }).toBuffer(), 0],
  [
    "Adam7 palette, 1 bit a pixel",
    () => src().png({ progressive: true, palette: true, colours: 2 }).toBuffer(),
    0,
  ],
  // 16-bit: the nearest 8-bit level here, libvips' truncation there.
  ["16-bit RGB", () => src().toColourspace("rgb16").png().toBuffer(), 1],
];

/** `png` with its zlib stream re-cut into IDAT chunks of `size` bytes. */
function withIdatsOf(png: Buffer, size: number): Buffer {
  const before: Buffer[] = [];
  const stream: Buffer[] = [];
  for (let p = 8; p < png.length; ) {
    const length = png.readUInt32BE(p);
    const type = png.toString("latin1", p + 4, p + 8);
    const whole = png.subarray(p, p + 12 + length);
    if (type === "IDAT") stream.push(png.subarray(p + 8, p + 8 + length));
    else if (type !== "IEND") before.push(whole);
    p += 12 + length;
  }
  const z = Buffer.concat(stream);
  const idats: Buffer[] = [];
  for (let at = 0; at < z.length; at += Math.min(size, z.length)) {
    idats.push(chunk("IDAT", z.subarray(at, at + size)));
  }
  return Buffer.concat([png.subarray(0, 8), ...before, ...idats, chunk("IEND", Buffer.alloc(0))]);
}

/** libpng's samples as 8-bit RGB, alpha dropped (as Pillow's convert("RGB")). */
async function reference(png: Buffer): Promise<Uint8Array> {
  const { data, info } = await sharp(png)
    .removeAlpha()
    .raw({ depth: "uchar" })
    .toBuffer({ resolveWithObject: true });
  if (info.channels === 3) return data;
  const out = new Uint8Array(W * H * 3);
  for (let i = 0; i < W * H; i++) out.fill(data[i * info.channels]!, i * 3, i * 3 + 3);
  return out;
}

/** Each k×k cell's rounded mean, cells on the right and bottom edges partial. */
function boxReduce(px: Uint8Array, k: number): Uint8Array {
  const rw = Math.ceil(W / k);
  const rh = Math.ceil(H / k);
  const out = new Uint8Array(rw * rh * 3);
  for (let cy = 0; cy < rh; cy++) {
    for (let cx = 0; cx < rw; cx++) {
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        let n = 0;
        for (let y = cy * k; y < Math.min(H, cy * k + k); y++) {
          for (let x = cx * k; x < Math.min(W, cx * k + k); x++, n++)
            sum += px[(y * W + x) * 3 + c]!;
        }
        out[(cy * rw + cx) * 3 + c] = Math.round(sum / n);
      }
    }
  }
  return out;
}

function largestDifference(a: Uint8Array, b: Uint8Array): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

const limits = (k: number) => ({
  maxPixels: 1e8,
  maxInflatedBytes: 1 << 24,
  factor: () => k,
});

/** The PNG's IHDR colour type and bit depth, so each case is the kind its name says. */
const kindOf = (png: Buffer) => [png[25], png[24]];

describe("PNG decode against libpng's samples", () => {
  it("the cases are the colour types and depths they name", async () => {
    const kinds = await Promise.all(variants.map(async ([, make]) => kindOf(await make())));
    expect(kinds).toEqual([
      [2, 8],
      [6, 8],
      [0, 8],
      [4, 8],
      [3, 8],
      [3, 2],
      [2, 8],
      [3, 1],
      [2, 16],
    ]);
  });

  it.each(variants)("%s, k = 1 and k = 3", async (_name, make, tolerance) => {
    const png = await make();
    const ref = await reference(png);
    const whole = await decodePngReduced(png, limits(1));
    expect([whole.width, whole.height, whole.k]).toEqual([W, H, 1]);
    expect(largestDifference(whole.data, ref)).toBeLessThanOrEqual(tolerance);
    const reduced = await decodePngReduced(png, limits(3));
    expect([reduced.width, reduced.height, reduced.k]).toEqual([21, 16, 3]);
    expect(largestDifference(reduced.data, boxReduce(ref, 3))).toBeLessThanOrEqual(tolerance);
  });

  it("the seed's own image, 224x224 RGB noise, every byte: its zlib stream in one IDAT, in 8 KB ones, in 3-byte ones", async () => {
    // Seeded noise: deflate cannot shrink it (~150 KB of stored blocks, as the seed sends).
    const noise = randomBytes(224 * 224 * 3, 2463534242);
    const png = await sharp(noise, { raw: { width: 224, height: 224, channels: 3 } })
      .png()
      .toBuffer();
    expect(png.length).toBeGreaterThan(150_000);
    for (const size of [Number.POSITIVE_INFINITY, 8192, 3]) {
      const out = await decodePngReduced(withIdatsOf(png, size), limits(1));
      expect(Buffer.from(out.data).equals(noise), `IDATs of ${size} bytes`).toBe(true);
    }
  });
});
