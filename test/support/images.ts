/** Synthetic photos for tests and benchmarks, made on the fly so that nothing needs a corpus: smooth seeded scenes (`photoPixels`, `photo`), a striped scene with a disc (`photoLike`), seeded grain that makes JPEGs as big as real photos (`addGrain`), the benchmarks' 341x256 photos and 12 MP phone photos; plus non-images (a lying PNG header, random bytes). */
import { crc32 } from "node:zlib";
import sharp from "sharp";

/** Smooth gradients plus a few seeded blobs: compresses like a photo, differs per seed. */
export function photoPixels(width: number, height: number, seed: number): Buffer {
  const px = Buffer.alloc(width * height * 3);
  let s = seed * 2654435761 + 1;
  const rnd = () => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s / 2 ** 32;
  };
  const blobs = Array.from({ length: 4 }, () => ({
    x: rnd() * width,
    y: rnd() * height,
    r: (0.1 + rnd() * 0.3) * Math.min(width, height),
    c: [rnd() * 255, rnd() * 255, rnd() * 255],
  }));
  const base = [rnd() * 255, rnd() * 255, rnd() * 255];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      for (let c = 0; c < 3; c++) {
        let v = base[c]! * (0.5 + (0.5 * x) / width) + (c === 1 ? (60 * y) / height : 0);
        for (const b of blobs) {
          const d = Math.hypot(x - b.x, y - b.y);
          if (d < b.r) v = v * 0.3 + b.c[c]! * 0.7;
        }
        px[i + c] = Math.max(0, Math.min(255, Math.round(v)));
      }
    }
  }
  return px;
}

export type Format = "jpeg" | "png" | "webp";

export async function photo(
  width: number,
  height: number,
  seed: number,
  format: Format = "jpeg",
  quality = 85,
): Promise<Buffer> {
  // Large photos are drawn small and scaled up: drawing pixels in JS is the slow part.
  const scale = Math.min(1, 480 / Math.max(width, height));
  const w = Math.max(1, Math.round(width * scale));
  const h = Math.max(1, Math.round(height * scale));
  let img = sharp(photoPixels(w, h, seed), { raw: { width: w, height: h, channels: 3 } });
  if (w !== width || h !== height) {
    img = sharp(await img.resize(width, height, { fit: "fill" }).raw().toBuffer(), {
      raw: { width, height, channels: 3 },
    });
  }
  if (format === "png") return img.png().toBuffer();
  if (format === "webp") return img.webp({ quality }).toBuffer();
  return img.jpeg({ quality }).toBuffer();
}

/**
 * Adds seeded luma grain of ±`amplitude` to RGB pixels in place (the same offset on all three
 * channels): smooth synthetic scenes compress far better than photos, grain brings a JPEG to a
 * real photo's size. `state` seeds the xorshift generator (0 becomes 1).
 */
export function addGrain(px: Buffer, state: number, amplitude: number): Buffer {
  let s = state >>> 0 || 1;
  for (let p = 0; p < px.length; p += 3) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    const g = Math.round((((s & 0xff) + ((s >>> 8) & 0xff) - 255) / 255) * amplitude);
    for (let c = 0; c < 3; c++) px[p + c] = Math.max(0, Math.min(255, px[p + c]! + g));
  }
  return px;
}

/**
 * Deterministic photo-like RGB with edges: gradients, stripes, a bright disc, a dark block and
 * seeded sensor-like noise of ±`noise`/2 (resizer and codec tests want sharp detail).
 */
export function photoLike(w: number, h: number, seed = 1, noise = 12): Buffer {
  const buf = Buffer.allocUnsafe(w * h * 3);
  let s = seed >>> 0;
  const cx = w * 0.6;
  const cy = h * 0.4;
  const r2 = (Math.min(w, h) * 0.25) ** 2;
  const clamp = (v: number) => Math.max(0, Math.min(255, v));
  for (let y = 0; y < h; y++) {
    const v = y / h;
    for (let x = 0; x < w; x++) {
      const u = x / w;
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const n = ((s >>> 24) / 255 - 0.5) * noise;
      let r = 60 + 140 * u + Math.sin(u * 40 + v * 13) * 25 + n;
      let g = 80 + 120 * v + 30 * Math.sin(v * 25) + n;
      let b = 180 - 120 * u * v + n;
      if ((x - cx) ** 2 + (y - cy) ** 2 < r2) {
        r = 230 - 40 * v + n;
        g = 200 - 60 * u + n;
        b = 40 + n;
      }
      if (x > w * 0.1 && x < w * 0.3 && y > h * 0.6 && y < h * 0.9) {
        r = 20 + n;
        g = 30 + n;
        b = 35 + 60 * u + n;
      }
      const o = (y * w + x) * 3;
      buf[o] = clamp(r);
      buf[o + 1] = clamp(g);
      buf[o + 2] = clamp(b);
    }
  }
  return buf;
}

/** The benchmarks' photos: 341x256 q80 JPEGs of about 15 KB, like what the edge sends on. */
export const BENCH_WIDTH = 341;
export const BENCH_HEIGHT = 256;
export const BENCH_QUALITY = 80;
/**
 * Grain on the benchmarks' photos. Without it a 341x256 q80 JPEG is ~4.5 KB (gradients and blobs
 * compress far better than photos); with ±17 it is ~15 KB, the size of a real phone photo shrunk
 * to a 256 px short side at q80.
 */
const BENCH_GRAIN = 17;

/** `count` distinct benchmark JPEGs (seeds seed0, seed0 + 1, ...); deterministic. */
export async function benchPhotos(count: number, seed0 = 1000): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const seed = seed0 + i;
    const px = addGrain(
      photoPixels(BENCH_WIDTH, BENCH_HEIGHT, seed),
      seed * 2654435761 + 7,
      BENCH_GRAIN,
    );
    const raw = { width: BENCH_WIDTH, height: BENCH_HEIGHT, channels: 3 } as const;
    out.push(await sharp(px, { raw }).jpeg({ quality: BENCH_QUALITY }).toBuffer());
  }
  return out;
}

export const PHONE_WIDTH = 4032;
export const PHONE_HEIGHT = 3024;

/**
 * One 12 MP photo-like JPEG: a smooth seeded scene drawn small and scaled up, plus per-pixel
 * grain so that it compresses like a phone photo (3–5 MB at q92), with camera EXIF and GPS that
 * the edge must strip.
 */
export async function phonePhoto(seed: number): Promise<Buffer> {
  const small = photoPixels(504, 378, seed);
  const px = await sharp(small, { raw: { width: 504, height: 378, channels: 3 } })
    .resize(PHONE_WIDTH, PHONE_HEIGHT, { kernel: "cubic" })
    .raw()
    .toBuffer();
  addGrain(px, seed * 2654435761 + 11, 14 + (seed % 3) * 3);
  return sharp(px, { raw: { width: PHONE_WIDTH, height: PHONE_HEIGHT, channels: 3 } })
    .jpeg({ quality: 92 })
    .withExif({
      IFD0: { Make: "BenchPhone", Model: "12MP", Software: "photo-embed-ingest bench" },
      IFD3: { GPSLatitudeRef: "N", GPSLatitude: "48/1 8/1 0/1" },
    })
    .toBuffer();
}

/** A ~4 MB 2400x1800 JPEG with EXIF orientation 3: noise on a photo-like base (noise is what makes JPEGs big). */
export function bigJpeg(): Promise<Buffer> {
  const px = photoPixels(2400, 1800, 9);
  const noise = randomBytes(px.length, 5);
  for (let i = 0; i < px.length; i++) px[i] = (px[i]! + (noise[i]! & 0x3f)) & 0xff;
  return sharp(px, { raw: { width: 2400, height: 1800, channels: 3 } })
    .jpeg({ quality: 85, chromaSubsampling: "4:4:4" })
    .withMetadata({ orientation: 3 })
    .toBuffer();
}

/** Packed RGB with an alpha channel added: `alpha(i)` for pixel i. */
export function withAlpha(rgb: Buffer, alpha: (i: number) => number): Buffer {
  const pixels = rgb.length / 3;
  const rgba = Buffer.alloc(pixels * 4);
  for (let i = 0; i < pixels; i++) {
    rgb.copy(rgba, i * 4, i * 3, i * 3 + 3);
    rgba[i * 4 + 3] = alpha(i);
  }
  return rgba;
}

/** A PNG chunk: its length, type, data and CRC-32. */
export function pngChunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])));
  return Buffer.concat([head, data, crc]);
}

/** A PNG that is nothing but a valid signature and IHDR claiming width x height. */
export function pngHeaderClaiming(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const idat = pngChunk(
    "IDAT",
    Buffer.from([0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]),
  );
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", ihdr),
    idat,
    pngChunk("IEND", Buffer.alloc(0)),
  ]);
}

/** Seeded random bytes (never a valid image). */
export function randomBytes(n: number, seed: number): Buffer {
  const out = Buffer.alloc(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s & 0xff;
  }
  return out;
}

/**
 * The seed benchmark's own image: a 224x224 RGB PNG of seeded noise, which deflate cannot shrink
 * (~148 KiB of stored blocks).
 */
export function seedNoisePng(seed: number): Promise<Buffer> {
  return sharp(randomBytes(224 * 224 * 3, seed), { raw: { width: 224, height: 224, channels: 3 } })
    .png()
    .toBuffer();
}
