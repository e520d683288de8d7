/** Test images made on the fly: photo-like JPEG/PNG/WebP of any size, so core tests need no corpus. */
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

/** A PNG that is nothing but a valid signature and IHDR claiming width x height. */
export function pngHeaderClaiming(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const idat = chunk("IDAT", Buffer.from([0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    idat,
    chunk("IEND", Buffer.alloc(0)),
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
