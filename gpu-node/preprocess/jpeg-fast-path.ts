/**
 * The fast paths for plain JPEGs (8-bit grey or YCbCr/RGB, no ICC profile, no EXIF: what the edge
 * sends): receive an encoded image, hand on its 224x224 RGB tensor, or undefined to leave it to
 * sharp (decode.ts), which also words the client's error for anything broken. Both decode with
 * libjpeg-turbo in WASM (the edge's build, imaging/jpeg/) with the settings libvips and Pillow
 * use (ISLOW IDCT, fancy upsampling); sharp's per-call overhead dominates at these sizes.
 *
 * - exact 224x224 (RESIZE_MODE=crop-224): decode only; the same bytes as sharp's full path for
 *   that file (decode.ts checks it once per process before using it), at ~40% of its CPU.
 * - short side 224..447 (the edge's 256-px JPEGs): decode at full size, then Pillow's BICUBIC
 *   resize and crop (imaging/resample/bicubic-wasm.ts): bit for bit open_clip's own
 *   preprocessing (Pillow) of the file, at ~60% of sharp's CPU. Larger photos stay with sharp, which decodes them DCT-scaled.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { IMAGE_BYTES, INPUT_SIZE } from "../../imaging/clip.ts";
import { compileJpegWasm, JpegWasm } from "../../imaging/jpeg/codec.ts";
import { readIccProfile } from "../../imaging/jpeg/markers.ts";
import { isSof, jpegSegments } from "../../imaging/jpeg/segments.ts";
import { BicubicWasm, compileBicubicWasm } from "../../imaging/resample/bicubic-wasm.ts";
import type { ResizeWindow } from "../../imaging/resample/pillow-bicubic.ts";

const WASM_FILE = resolve(import.meta.dirname, "../../imaging/jpeg/jpeg.wasm");
const RESAMPLE_WASM_FILE = resolve(
  import.meta.dirname,
  "../../imaging/resample/wasm/resample.wasm",
);
let resampler: BicubicWasm | undefined;
const LIMITS = { libjpegBytes: 8 * 1024 * 1024, outputBytes: IMAGE_BYTES } as const;
/** Largest plain JPEG decoded at full size in WASM (short side < 448 keeps it small anyway). */
const MAX_RESIZE_PIXELS = 4_000_000;
const RESIZE_LIMITS = {
  libjpegBytes: 32 * 1024 * 1024,
  outputBytes: 3 * MAX_RESIZE_PIXELS,
} as const;

interface Frame {
  readonly width: number;
  readonly height: number;
  /** An APP1 "Exif" segment is present (it may carry an orientation). */
  readonly exif: boolean;
}

/**
 * The frame of a JPEG with one 8-bit frame of 1 or 3 components, read from its marker segments
 * up to the first scan (never the pixels); undefined for anything else or anything unexpected.
 */
function plainFrame(data: Uint8Array): Frame | undefined {
  const { segments, end } = jpegSegments(data);
  if (end.kind !== "scan" && end.kind !== "eoi" && end.kind !== "exhausted") return undefined;
  let frame: { width: number; height: number } | undefined;
  let exif = false;
  for (const { marker, start, end: segmentEnd } of segments) {
    const length = segmentEnd - start;
    if (marker === 0xe1 && length >= 6 && data[start] === 0x45 && data[start + 1] === 0x78) {
      exif = true;
    }
    if (isSof(marker)) {
      if (frame || length < 6) return undefined;
      const precision = data[start]!;
      const height = (data[start + 1]! << 8) | data[start + 2]!;
      const width = (data[start + 3]! << 8) | data[start + 4]!;
      const components = data[start + 5]!;
      if (precision !== 8 || (components !== 1 && components !== 3)) return undefined;
      if (width === 0 || height === 0) return undefined;
      frame = { width, height };
    }
  }
  return frame && { ...frame, exif };
}

/**
 * The size of a plain JPEG without any EXIF segment (so libvips finds no orientation either),
 * read without sharp: what the edge sends. Saves sharp's header call (~0.25 ms of the main
 * thread per image); undefined means: ask sharp.
 */
export function plainJpegSize(data: Uint8Array): { width: number; height: number } | undefined {
  const f = plainFrame(data);
  return f && !f.exif ? { width: f.width, height: f.height } : undefined;
}

/**
 * A plain JPEG's frame: one 8-bit frame of 1 or 3 components, no EXIF segment (so no orientation
 * for libvips to apply either), no embedded ICC profile (sharp would convert it with lcms).
 */
function plainJpeg(data: Uint8Array): Frame | undefined {
  const f = plainFrame(data);
  return f && !f.exif && readIccProfile(data) === undefined ? f : undefined;
}

/** True when the header says: a plain JPEG of exactly 224x224 (see plainJpeg). */
export function isPlainJpeg224(data: Uint8Array): boolean {
  const f = plainJpeg(data);
  return f !== undefined && f.width === INPUT_SIZE && f.height === INPUT_SIZE;
}

let codec: Promise<JpegWasm> | undefined;

// Decoded images are recycled: a fresh 150,528-byte buffer per image made V8 run a full GC every
// ~100 ms under load (external memory), 12-20% of a process's CPU on exact-224 images.
const free: Buffer[] = [];
const pooled = new WeakSet<Uint8Array>();
const MAX_FREE = 64;

/**
 * Takes back a buffer decodePlainJpeg224 returned, for the next image, once nothing reads it any
 * more (the embed service calls this when the batcher has settled the image: a local batcher has
 * copied it into its batch tensor, or dropped it). Any other array is left alone.
 */
export function releasePixels(pixels: Uint8Array): void {
  if (!pooled.delete(pixels)) return;
  if (free.length < MAX_FREE) free.push(pixels as Buffer);
}

function instance(): Promise<JpegWasm> {
  codec ??= compileJpegWasm(readFileSync(WASM_FILE)).then((module) => new JpegWasm(module));
  return codec;
}

/**
 * The open_clip tensor of a plain JPEG whose short side is 224..447 (see plainJpeg): Pillow's
 * BICUBIC resize to `windowFor(width, height)` (torchvision's size and centre crop), bit for bit.
 * Undefined for any other image, over `maxPixels`, or when libjpeg-turbo refuses it.
 */
export async function decodePlainJpegResized(
  data: Uint8Array,
  maxPixels: number,
  windowFor: (width: number, height: number) => ResizeWindow,
): Promise<{ pixels: Buffer; width: number; height: number } | undefined> {
  const f = plainJpeg(data);
  if (!f) return undefined;
  const short = Math.min(f.width, f.height);
  const pixels = f.width * f.height;
  if (short < INPUT_SIZE || short >= 2 * INPUT_SIZE) return undefined;
  if (pixels > maxPixels || pixels > MAX_RESIZE_PIXELS) return undefined;
  const jpeg = await instance();
  try {
    return await jpeg.decode(
      data,
      () => 1,
      RESIZE_LIMITS,
      (px) => {
        if (px.width !== f.width || px.height !== f.height || px.channels !== 3) return undefined;
        const out = free.pop() ?? Buffer.allocUnsafe(IMAGE_BYTES);
        // px.data is a view into the decoder's WASM memory: resized before the callback returns.
        resampler ??= new BicubicWasm(compileBicubicWasm(readFileSync(RESAMPLE_WASM_FILE)));
        resampler.resize(px, windowFor(px.width, px.height), out);
        pooled.add(out);
        return { pixels: out, width: px.width, height: px.height };
      },
    );
  } catch {
    return undefined;
  }
}

/**
 * The 224x224 RGB pixels of a JPEG that `isPlainJpeg224` accepted, or undefined when
 * libjpeg-turbo refuses it (corrupt, truncated, a variant it does not decode): the caller then
 * takes the full path. Runs synchronously once the module is compiled (~0.5 ms here).
 */
export async function decodePlainJpeg224(data: Uint8Array): Promise<Buffer | undefined> {
  const jpeg = await instance();
  try {
    return await jpeg.decode(
      data,
      () => 1,
      LIMITS,
      (px) => {
        if (px.width !== INPUT_SIZE || px.height !== INPUT_SIZE || px.channels !== 3) {
          return undefined;
        }
        // px.data is a view into WASM memory, valid only inside this callback.
        const pixels = free.pop() ?? Buffer.allocUnsafe(IMAGE_BYTES);
        pixels.set(px.data);
        pooled.add(pixels);
        return pixels;
      },
    );
  } catch {
    return undefined;
  }
}
