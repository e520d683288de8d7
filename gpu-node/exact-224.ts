/**
 * The exact-224 fast path: receives an encoded image and, when it is a plain 224x224 JPEG
 * (8-bit grey or YCbCr/RGB, no ICC profile, upright), hands on its 224x224 RGB pixels decoded by
 * libjpeg-turbo in WASM (the edge's build, edge/resize/wasm/) with the settings libvips uses
 * (ISLOW IDCT, fancy upsampling): the same bytes sharp's full pipeline gives for such an image
 * (preprocess.ts checks that once per process before using it), at about a third of its CPU —
 * sharp's per-call overhead dominates at 224 px. Anything else, and any decode error, is left
 * to the full path (undefined), which also words the client's error.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { compileJpegWasm, JpegWasm } from "../edge/resize/wasm/codec.ts";
import { readExifOrientation, readIccProfile } from "../edge/resize/wasm/jpeg-markers.ts";
import { IMAGE_BYTES, INPUT_SIZE } from "./backends/backend.ts";

const WASM_FILE = resolve(import.meta.dirname, "../edge/resize/wasm/jpeg.wasm");
const LIMITS = { libjpegBytes: 8 * 1024 * 1024, outputBytes: IMAGE_BYTES } as const;

/** SOF0-3, 5-7, 9-11, 13-15: every frame type (DHT C4, JPG C8 and DAC CC are not frames). */
const isSof = (m: number) => m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;

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
  if (data.length < 4 || data[0] !== 0xff || data[1] !== 0xd8) return undefined;
  let p = 2;
  let frame: { width: number; height: number } | undefined;
  let exif = false;
  while (p + 4 <= data.length) {
    if (data[p] !== 0xff) return undefined;
    const marker = data[p + 1]!;
    if (marker === 0xff) {
      p++;
      continue;
    }
    if (marker === 0xda || marker === 0xd9) break; // SOS / EOI: the header is over
    const len = (data[p + 2]! << 8) | data[p + 3]!;
    if (len < 2 || p + 2 + len > data.length) return undefined;
    if (marker === 0xe1 && len >= 8 && data[p + 4] === 0x45 && data[p + 5] === 0x78) exif = true;
    if (isSof(marker)) {
      if (frame || len < 8) return undefined;
      const precision = data[p + 4]!;
      const height = (data[p + 5]! << 8) | data[p + 6]!;
      const width = (data[p + 7]! << 8) | data[p + 8]!;
      const components = data[p + 9]!;
      if (precision !== 8 || (components !== 1 && components !== 3)) return undefined;
      if (width === 0 || height === 0) return undefined;
      frame = { width, height };
    }
    p += 2 + len;
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
 * True when the header says: JPEG, one 8-bit frame of exactly 224x224 with 1 or 3 components,
 * no embedded ICC profile (sharp would convert it with lcms), no EXIF rotation or flip.
 */
export function isPlainJpeg224(data: Uint8Array): boolean {
  const f = plainFrame(data);
  if (!f || f.width !== INPUT_SIZE || f.height !== INPUT_SIZE) return false;
  return readIccProfile(data) === undefined && (!f.exif || readExifOrientation(data) === 1);
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
