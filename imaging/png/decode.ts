/**
 * PNG bytes in; the image box-reduced by an integer factor k as 8-bit RGB out, plus its iCCP
 * profile. Pure TypeScript on the platform's inflate (DecompressionStream, in workerd and Node):
 * IDAT is inflated as a stream and each row is unfiltered and folded into the reduced image as it
 * arrives, so memory follows two rows and the reduced image, never the full picture.
 *
 * Why by hand: the npm PNG decoders (pngjs, UPNG.js, fast-png, @jsquash/png) inflate the whole
 * image into one buffer (a 48 MP 16-bit PNG: 288 MB, over the Worker's 128 MB) and none caps the
 * inflated size as it goes. Here a zlib stream that inflates past what the header declares (a
 * zlib bomb) is stopped at that point, and the header's size is capped before inflating.
 *
 * Every bit depth and colour type (1/2/4/8/16-bit grey, RGB, palette, grey+alpha, RGBA),
 * Adam7 interlacing; an APNG's default image (IDAT, its first frame) is what is decoded. Alpha
 * is dropped without compositing, as the gpu-node does (Pillow's convert("RGB")).
 */

import { be32, concatBytes, fourcc, fourccAt } from "../bytes.ts";
import { DecodeError } from "../decode-error.ts";

export interface PngReduced {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
  readonly k: number;
  readonly icc: Uint8Array | undefined;
  readonly grey: boolean;
}

export interface PngLimits {
  readonly maxPixels: number;
  /** Cap on the inflated image data (filter bytes included). */
  readonly maxInflatedBytes: number;
  /** The reduction factor for the image's size. */
  readonly factor: (width: number, height: number) => number;
}

export const IHDR = fourcc("IHDR");
const PLTE = fourcc("PLTE");
const ICCP = fourcc("iCCP");
export const IDAT = fourcc("IDAT");
export const IEND = fourcc("IEND");
/** Chunks walked at most, here and by the edge's header check (edge/validate/png.ts). */
export const MAX_PNG_CHUNKS = 1 << 20;
const MAX_ICC_BYTES = 4 << 20;

// Adam7: x start, y start, x step, y step per pass.
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
] as const;

const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const DEPTHS: Record<number, readonly number[]> = {
  0: [1, 2, 4, 8, 16],
  2: [8, 16],
  3: [1, 2, 4, 8],
  4: [8, 16],
  6: [8, 16],
};

interface Header {
  width: number;
  height: number;
  depth: number;
  colorType: number;
  interlaced: boolean;
  palette?: Uint8Array;
  iccp?: Uint8Array;
  idat: Uint8Array[];
}

function corrupt(message: string): never {
  throw new DecodeError("corrupt", message);
}

function readChunks(b: Uint8Array): Header {
  if (b.length < 33 || fourccAt(b, 12) !== IHDR) corrupt("no IHDR chunk");
  const h: Header = {
    width: be32(b, 16),
    height: be32(b, 20),
    depth: b[24]!,
    colorType: b[25]!,
    interlaced: b[28] === 1,
    idat: [],
  };
  if (!DEPTHS[h.colorType]?.includes(h.depth)) {
    corrupt(`bit depth ${h.depth} with colour type ${h.colorType}`);
  }
  if (b[26] !== 0 || b[27] !== 0 || b[28]! > 1)
    corrupt("unknown compression, filter or interlace method");
  let p = 33;
  for (let n = 0; n < MAX_PNG_CHUNKS && p + 12 <= b.length; n++) {
    const length = be32(b, p);
    const type = fourccAt(b, p + 4);
    const data = p + 8;
    if (length > 0x7fffffff || data + length + 4 > b.length)
      corrupt("a chunk runs past the end (truncated)");
    const body = b.subarray(data, data + length);
    if (type === IEND) return h;
    if (type === IDAT) h.idat.push(body);
    else if (type === PLTE && !h.palette) h.palette = body;
    else if (type === ICCP && !h.iccp) h.iccp = body;
    p = data + length + 4;
  }
  corrupt("no IEND chunk (truncated)");
}

/** Inflates a whole zlib stream, refusing more than `cap` bytes. */
async function inflateAll(parts: readonly Uint8Array[], cap: number): Promise<Uint8Array> {
  const out: Uint8Array[] = [];
  await inflate(parts, cap, (chunk) => {
    out.push(chunk.slice());
  });
  return concatBytes(out);
}

/**
 * Compressed bytes given to the inflater at once. One write's output is produced before the
 * reader can check it against the cap, so this bounds what a zlib bomb inflates past it (deflate
 * expands at most ~1032:1: 32 MiB); and a few writes a small image instead of a stream hop per
 * IDAT chunk (a 224-px noise PNG, 19 chunks: 2.0 → 0.7 ms in Node).
 */
const INFLATE_WRITE_BYTES = 32 * 1024;

/** `parts` regrouped into pieces of at most `limit` bytes: small ones joined, large ones cut. */
function* writeBatches(parts: readonly Uint8Array[], limit: number): Generator<Uint8Array> {
  let batch: Uint8Array[] = [];
  let size = 0;
  const join = () => (batch.length === 1 ? batch[0]! : concatBytes(batch));
  for (const part of parts) {
    for (let at = 0; at < part.length; at += limit) {
      const piece = part.subarray(at, at + limit);
      if (size > 0 && size + piece.length > limit) {
        yield join();
        batch = [];
        size = 0;
      }
      batch.push(piece);
      size += piece.length;
    }
  }
  if (size > 0) yield join();
}

/** Streams `parts` (one zlib stream) through the platform's inflate, chunk by chunk. */
async function inflate(
  parts: readonly Uint8Array[],
  cap: number,
  onChunk: (chunk: Uint8Array) => void,
): Promise<void> {
  const stream = new DecompressionStream("deflate");
  const writer = stream.writable.getWriter();
  const writing = (async () => {
    for (const chunk of writeBatches(parts, INFLATE_WRITE_BYTES)) {
      await writer.write(chunk as Uint8Array<ArrayBuffer>);
    }
    await writer.close();
  })();
  // A write fails only when the stream does (bad data, or cancelled below): the reader hears it.
  writing.catch(() => {});
  const reader = stream.readable.getReader();
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      total += value.length;
      if (total > cap) {
        throw new DecodeError(
          "corrupt",
          `image data inflates past the ${cap} bytes its header declares (zlib bomb?)`,
        );
      }
      onChunk(value);
    }
  } catch (e) {
    void reader.cancel().catch(() => {});
    if (e instanceof DecodeError) throw e;
    corrupt(`bad zlib data: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** The iCCP profile, or undefined when absent or unreadable (a profile never fails the image). */
async function iccProfile(iccp: Uint8Array | undefined): Promise<Uint8Array | undefined> {
  if (!iccp) return undefined;
  const nul = iccp.indexOf(0);
  if (nul < 1 || nul > 79 || iccp[nul + 1] !== 0) return undefined;
  try {
    return await inflateAll([iccp.subarray(nul + 2)], MAX_ICC_BYTES);
  } catch {
    return undefined;
  }
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

function unfilter(type: number, cur: Uint8Array, prev: Uint8Array, bpp: number): void {
  const n = cur.length;
  switch (type) {
    case 0:
      return;
    case 1:
      for (let i = bpp; i < n; i++) cur[i] = cur[i]! + cur[i - bpp]!;
      return;
    case 2:
      for (let i = 0; i < n; i++) cur[i] = cur[i]! + prev[i]!;
      return;
    case 3:
      for (let i = 0; i < bpp; i++) cur[i] = cur[i]! + (prev[i]! >> 1);
      for (let i = bpp; i < n; i++) cur[i] = cur[i]! + ((cur[i - bpp]! + prev[i]!) >> 1);
      return;
    case 4:
      for (let i = 0; i < bpp; i++) cur[i] = cur[i]! + prev[i]!;
      for (let i = bpp; i < n; i++)
        cur[i] = cur[i]! + paeth(cur[i - bpp]!, prev[i]!, prev[i - bpp]!);
      return;
    default:
      corrupt(`unknown row filter ${type}`);
  }
}

/** Decodes `b` box-reduced by `limits.factor`. Throws DecodeError. */
export async function decodePngReduced(b: Uint8Array, limits: PngLimits): Promise<PngReduced> {
  const h = readChunks(b);
  const { width: w, height: ht, depth, colorType } = h;
  if (w === 0 || ht === 0) corrupt("zero dimension");
  if (w * ht > limits.maxPixels)
    throw new DecodeError("too_large", `${w}x${ht} is over the pixel limit`);
  if (h.idat.length === 0) corrupt("no image data (IDAT)");
  if (colorType === 3 && !h.palette) corrupt("palette image without PLTE");
  const channels = CHANNELS[colorType]!;
  const bitsPerPixel = channels * depth;
  const bpp = Math.max(1, bitsPerPixel >> 3);
  const passes = h.interlaced ? ADAM7 : ([[0, 0, 1, 1]] as const);
  // Rows of each pass: [pixels per row, rows]; a pass with no pixels has no rows at all.
  const shapes = passes.map(([x0, y0, dx, dy]) => {
    const pw = w > x0 ? Math.ceil((w - x0) / dx) : 0;
    const ph = ht > y0 ? Math.ceil((ht - y0) / dy) : 0;
    return pw === 0 || ph === 0 ? [0, 0] : [pw, ph];
  });
  let expected = 0;
  for (const [pw, ph] of shapes) expected += ph! * (1 + Math.ceil((pw! * bitsPerPixel) / 8));
  if (expected > limits.maxInflatedBytes) {
    throw new DecodeError(
      "too_large",
      `${w}x${ht} at ${bitsPerPixel} bits a pixel inflates to ${expected} bytes`,
    );
  }

  const k = Math.max(1, Math.floor(limits.factor(w, ht)));
  const rw = Math.ceil(w / k);
  const rh = Math.ceil(ht / k);
  const data = new Uint8Array(rw * rh * 3);
  // k = 1 (the image is already small): every pixel is its own cell, written straight into
  // `data`; no sums to allocate (4 bytes a sample) or average afterwards.
  const sums = k === 1 ? undefined : new Uint32Array(rw * rh * 3);
  const rgb = new Uint8Array(Math.max(...shapes.map((s) => s[0]!)) * 3);

  // Palette and tRNS lookups: every sample becomes 8-bit RGB.
  const palette = h.palette;
  const maxSample = (1 << Math.min(depth, 8)) - 1;
  const toRgb = (row: Uint8Array, pixels: number): void => {
    let o = 0;
    for (let i = 0; i < pixels; i++, o += 3) {
      if (depth < 8) {
        const bit = i * depth;
        const v = (row[bit >> 3]! >> (8 - depth - (bit & 7))) & maxSample;
        if (colorType === 3) {
          const at = v * 3;
          rgb[o] = palette![at] ?? 0;
          rgb[o + 1] = palette![at + 1] ?? 0;
          rgb[o + 2] = palette![at + 2] ?? 0;
        } else {
          const g = Math.round((v * 255) / maxSample);
          rgb[o] = g;
          rgb[o + 1] = g;
          rgb[o + 2] = g;
        }
        continue;
      }
      const p = i * bpp;
      if (colorType === 3) {
        const at = row[p]! * 3;
        rgb[o] = palette![at] ?? 0;
        rgb[o + 1] = palette![at + 1] ?? 0;
        rgb[o + 2] = palette![at + 2] ?? 0;
      } else if (depth === 8) {
        const grey = colorType === 0 || colorType === 4;
        rgb[o] = row[p]!;
        rgb[o + 1] = grey ? row[p]! : row[p + 1]!;
        rgb[o + 2] = grey ? row[p]! : row[p + 2]!;
      } else {
        // 16-bit: the nearest 8-bit level.
        const s = (c: number) => Math.round(((row[p + 2 * c]! << 8) | row[p + 2 * c + 1]!) / 257);
        const grey = colorType === 0 || colorType === 4;
        const r = s(0);
        rgb[o] = r;
        rgb[o + 1] = grey ? r : s(1);
        rgb[o + 2] = grey ? r : s(2);
      }
    }
  };

  let pass = 0;
  let rowInPass = 0;
  const rowBytes = () => Math.ceil((shapes[pass]![0]! * bitsPerPixel) / 8);
  // Skip passes without pixels.
  const settle = () => {
    while (pass < shapes.length && (shapes[pass]![1] === 0 || rowInPass >= shapes[pass]![1]!)) {
      pass++;
      rowInPass = 0;
    }
  };
  settle();
  let cur = new Uint8Array(pass < shapes.length ? 1 + rowBytes() : 1);
  let prev = new Uint8Array(cur.length);
  let fill = 0;

  // Per pass: each pixel's reduced cell (x / k, times 3), so the row loop does no division.
  const cellsOf = passes.map(([x0, , dx], i) => {
    const cells = new Int32Array(shapes[i]![0]!);
    for (let j = 0; j < cells.length; j++) cells[j] = Math.floor((x0 + j * dx) / k) * 3;
    return cells;
  });
  // 8-bit grey, RGB and their alpha forms: summed straight from the row, no RGB copy.
  const direct = depth === 8 && colorType !== 3;
  const greyish = colorType === 0 || colorType === 4;

  const emitRow = () => {
    const [, y0, , dy] = passes[pass]!;
    const pixels = shapes[pass]![0]!;
    const line = cur.subarray(1);
    unfilter(cur[0]!, line, prev.subarray(1), bpp);
    const y = y0 + rowInPass * dy;
    const base = Math.floor(y / k) * rw * 3;
    const cells = cellsOf[pass]!;
    if (!sums) {
      if (direct && !greyish && bpp === 3 && pixels === w) data.set(line, base);
      else if (direct) {
        const g = greyish ? 0 : 1;
        const b = greyish ? 0 : 2;
        for (let i = 0, p = 0; i < pixels; i++, p += bpp) {
          const cell = base + cells[i]!;
          data[cell] = line[p]!;
          data[cell + 1] = line[p + g]!;
          data[cell + 2] = line[p + b]!;
        }
      } else {
        toRgb(line, pixels);
        for (let i = 0, o = 0; i < pixels; i++, o += 3) {
          const cell = base + cells[i]!;
          data[cell] = rgb[o]!;
          data[cell + 1] = rgb[o + 1]!;
          data[cell + 2] = rgb[o + 2]!;
        }
      }
    } else if (direct) {
      const g = greyish ? 0 : 1;
      const b = greyish ? 0 : 2;
      for (let i = 0, p = 0; i < pixels; i++, p += bpp) {
        const cell = base + cells[i]!;
        sums[cell] = sums[cell]! + line[p]!;
        sums[cell + 1] = sums[cell + 1]! + line[p + g]!;
        sums[cell + 2] = sums[cell + 2]! + line[p + b]!;
      }
    } else {
      toRgb(line, pixels);
      for (let i = 0, o = 0; i < pixels; i++, o += 3) {
        const cell = base + cells[i]!;
        sums[cell] = sums[cell]! + rgb[o]!;
        sums[cell + 1] = sums[cell + 1]! + rgb[o + 1]!;
        sums[cell + 2] = sums[cell + 2]! + rgb[o + 2]!;
      }
    }
    rowInPass++;
    const passBefore = pass;
    settle();
    if (pass !== passBefore) {
      // A new pass starts from a zero "previous row".
      if (pass < shapes.length) {
        cur = new Uint8Array(1 + rowBytes());
        prev = new Uint8Array(cur.length);
      }
    } else {
      const t = prev;
      prev = cur;
      cur = t;
    }
    fill = 0;
  };

  await inflate(h.idat, expected, (chunk) => {
    let i = 0;
    while (i < chunk.length) {
      if (pass >= shapes.length) corrupt("image data continues past the last row");
      const take = Math.min(cur.length - fill, chunk.length - i);
      cur.set(chunk.subarray(i, i + take), fill);
      fill += take;
      i += take;
      if (fill === cur.length) emitRow();
    }
  });
  if (pass < shapes.length) corrupt("image data ends before the last row (truncated)");

  for (let cy = 0; sums && cy < rh; cy++) {
    const ch = Math.min(k, ht - cy * k);
    for (let cx = 0; cx < rw; cx++) {
      const n = ch * Math.min(k, w - cx * k);
      const c = (cy * rw + cx) * 3;
      data[c] = Math.round(sums[c]! / n);
      data[c + 1] = Math.round(sums[c + 1]! / n);
      data[c + 2] = Math.round(sums[c + 2]! / n);
    }
  }
  const grey = colorType === 0 || colorType === 4;
  return { width: rw, height: rh, data, k, icc: await iccProfile(h.iccp), grey };
}
