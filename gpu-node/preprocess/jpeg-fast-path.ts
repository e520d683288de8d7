/**
 * The fast paths for plain JPEGs (8-bit grey or YCbCr/RGB, no ICC profile, no EXIF: what the edge
 * sends): receive an encoded image, hand on its 224x224 RGB tensor, or undefined to leave it to
 * sharp (decode.ts), which also words the client's error for anything broken. Both decode with
 * libjpeg-turbo and the settings libvips and Pillow use (ISLOW IDCT, fancy upsampling): natively
 * with its SIMD (imaging/native/, Linux x86-64) or in WASM (the edge's build, imaging/jpeg/),
 * chosen once per process (GPU_NODE_JPEG_DECODER; decode.ts checks the choice against sharp).
 * sharp's per-call overhead dominates at these sizes.
 *
 * - exact 224x224 (RESIZE_MODE=crop-224): decode only; the same bytes as sharp's full path for
 *   that file (decode.ts checks it once per process before using it), at ~40% of its CPU.
 * - short side 224..447 (the edge's 256-px JPEGs): decode at full size (the native build: only
 *   the columns and rows the centre crop reads), then Pillow's BICUBIC resize and crop
 *   (imaging/resample/, native or WASM as the decode): bit for bit open_clip's own preprocessing
 *   (Pillow) of the file. Larger photos stay with sharp, which decodes them DCT-scaled.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { IMAGE_BYTES, INPUT_SIZE } from "../../imaging/clip.ts";
import { compileJpegWasm, JpegWasm } from "../../imaging/jpeg/codec.ts";
import { readIccProfile } from "../../imaging/jpeg/markers.ts";
import { isSof, jpegSegments } from "../../imaging/jpeg/segments.ts";
import { type ClipNative, loadClipNative } from "../../imaging/native/clip-native.ts";
import { BicubicNative } from "../../imaging/resample/bicubic-native.ts";
import { BicubicWasm, compileBicubicWasm } from "../../imaging/resample/bicubic-wasm.ts";
import type { ResizeWindow, RgbImage } from "../../imaging/resample/pillow-bicubic.ts";
import type { JpegDecoder } from "../config.ts";

const WASM_FILE = resolve(import.meta.dirname, "../../imaging/jpeg/jpeg.wasm");
const RESAMPLE_WASM_FILE = resolve(
  import.meta.dirname,
  "../../imaging/resample/wasm/resample.wasm",
);
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

// Decoded images are recycled: a fresh 150,528-byte buffer per image made V8 run a full GC every
// ~100 ms under load (external memory), 12-20% of a process's CPU on exact-224 images.
const free: Buffer[] = [];
const pooled = new WeakSet<Uint8Array>();
const MAX_FREE = 64;

/**
 * Takes back a buffer the fast paths returned, for the next image, once nothing reads it any
 * more (the embed service calls this when the batcher has settled the image: a local batcher has
 * copied it into its batch tensor, or dropped it). Any other array is left alone.
 */
export function releasePixels(pixels: Uint8Array): void {
  if (!pooled.delete(pixels)) return;
  if (free.length < MAX_FREE) free.push(pixels as Buffer);
}

/**
 * A pooled 224x224 RGB buffer that `fill` wrote, or undefined (the buffer goes back to the pool)
 * when it answered false or threw.
 */
async function intoPooled(fill: (out: Buffer) => Promise<boolean>): Promise<Buffer | undefined> {
  const out = free.pop() ?? Buffer.allocUnsafe(IMAGE_BYTES);
  let ok = false;
  try {
    ok = await fill(out);
  } catch {
    ok = false;
  }
  if (!ok) {
    if (free.length < MAX_FREE) free.push(out);
    return undefined;
  }
  pooled.add(out);
  return out;
}

/** A libjpeg-turbo build (the setting, `JpegDecoder`, may also say `auto`). */
export type JpegDecoderName = "native" | "wasm";

type Size = { readonly width: number; readonly height: number };

/** One build of the decoder and its resizer. */
interface Engine {
  readonly name: JpegDecoderName;
  /**
   * `window` of the Pillow resize of a plain JPEG whose frame (`size`) the caller has read, within
   * RESIZE_LIMITS, into `out`; false when libjpeg-turbo refuses it or it is not `size` RGB.
   */
  decodeResized(data: Uint8Array, size: Size, window: ResizeWindow, out: Buffer): Promise<boolean>;
  /** The 224x224 pixels straight into `out`; false when the image is not 224x224 RGB. */
  decode224(data: Uint8Array, out: Buffer): Promise<boolean>;
}

function wasmEngine(): Engine {
  let codec: Promise<JpegWasm> | undefined;
  let resampler: BicubicWasm | undefined;
  const instance = () => {
    codec ??= compileJpegWasm(readFileSync(WASM_FILE)).then((module) => new JpegWasm(module));
    return codec;
  };
  const decode = async <T>(
    data: Uint8Array,
    limits: { readonly libjpegBytes: number; readonly outputBytes: number },
    use: (px: RgbImage) => T | undefined,
  ) =>
    (await instance()).decode(
      data,
      () => 1,
      limits,
      (px) =>
        px.channels === 3 ? use({ data: px.data, width: px.width, height: px.height }) : undefined,
    );
  const resize = (image: RgbImage, window: ResizeWindow, out: Uint8Array) => {
    resampler ??= new BicubicWasm(compileBicubicWasm(readFileSync(RESAMPLE_WASM_FILE)));
    resampler.resize(image, window, out);
  };
  return {
    name: "wasm",
    async decodeResized(data, size, window, out) {
      const done = await decode(data, RESIZE_LIMITS, (px) => {
        if (px.width !== size.width || px.height !== size.height) return undefined;
        resize(px, window, out); // px is a view into WASM memory, valid only inside this callback
        return true;
      });
      return done === true;
    },
    async decode224(data, out) {
      const done = await decode(data, LIMITS, (px) => {
        if (px.width !== INPUT_SIZE || px.height !== INPUT_SIZE) return undefined;
        out.set(px.data); // a view into WASM memory, valid only inside this callback
        return true;
      });
      return done === true;
    },
  };
}

function nativeEngine(addon: ClipNative): Engine {
  const resampler = new BicubicNative(addon);
  // Grown to the largest image decoded for a resize (at most RESIZE_LIMITS.outputBytes).
  let scratch = Buffer.alloc(0);
  return {
    name: "native",
    async decodeResized(data, size, window, out) {
      const need = size.width * size.height * 3;
      if (need > RESIZE_LIMITS.outputBytes) return false;
      if (scratch.byteLength < need) scratch = Buffer.alloc(need);
      // Only the columns and rows the window reads (libjpeg-turbo's crop and skip, the same
      // pixels): the centre crop leaves ~20% of a landscape photo's columns, or of a portrait
      // one's rows, out of the IDCT and colour conversion. ~4% less CPU per photo: the entropy
      // decoding, most of the work, still reads every block.
      const region = resampler.sourceRegion(size.width, size.height, window);
      const r = addon.decode(data, scratch.subarray(0, need), RESIZE_LIMITS.libjpegBytes, region);
      if (r.failure || r.width !== size.width || r.height !== size.height) return false;
      const image = {
        data: scratch.subarray(0, r.cols * r.rows * 3),
        width: r.width,
        height: r.height,
      };
      resampler.resize(image, window, out, region ? r : undefined);
      return true;
    },
    async decode224(data, out) {
      // Decoded straight into the pooled buffer: anything but 224x224 RGB does not fit.
      const r = addon.decode(data, out.subarray(0, IMAGE_BYTES), LIMITS.libjpegBytes);
      return !r.failure && r.width === INPUT_SIZE && r.height === INPUT_SIZE;
    },
  };
}

let wasm: Engine | undefined;
let native: Engine | undefined;
let active: Engine | undefined;

/** The native build, or why it cannot load here (each build is made once per thread). */
function nativeBuild(): { engine?: Engine; why?: string } {
  const { addon, why } = loadClipNative();
  if (!addon) return { why };
  native ??= nativeEngine(addon);
  return { engine: native };
}

function wasmBuild(): Engine {
  wasm ??= wasmEngine();
  return wasm;
}

/**
 * The builds `choice` allows, best first, for decode.ts to check against sharp in turn: `native`
 * alone throws (naming why) where the native build cannot load; `auto` falls back to WASM.
 */
export function jpegEngines(choice: JpegDecoder): JpegDecoderName[] {
  if (choice === "wasm") return ["wasm"];
  const { engine, why } = nativeBuild();
  if (choice === "native") {
    if (!engine) throw new Error(`GPU_NODE_JPEG_DECODER=native: ${why}`);
    return ["native"];
  }
  return engine ? ["native", "wasm"] : ["wasm"];
}

/** Makes `name` the build the fast paths use from now on in this thread. */
export function useJpegEngine(name: JpegDecoderName): void {
  if (name === "wasm") {
    active = wasmBuild();
    return;
  }
  const { engine, why } = nativeBuild();
  if (!engine) throw new Error(`the native JPEG decoder: ${why}`);
  active = engine;
}

/** The build in use; WASM until decode.ts has chosen. */
function engine(): Engine {
  return active ?? wasmBuild();
}

/** The name of the build the fast paths use now. */
export function jpegEngineName(): JpegDecoderName {
  return engine().name;
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
  const out = await intoPooled((o) =>
    engine().decodeResized(data, f, windowFor(f.width, f.height), o),
  );
  return out && { pixels: out, width: f.width, height: f.height };
}

/**
 * The 224x224 RGB pixels of a JPEG that `isPlainJpeg224` accepted, or undefined when
 * libjpeg-turbo refuses it (corrupt, truncated, a variant it does not decode): the caller then
 * takes the full path. Synchronous once the build is loaded (~0.2 ms native, ~0.5 ms WASM here).
 */
export function decodePlainJpeg224(data: Uint8Array): Promise<Buffer | undefined> {
  return intoPooled((out) => engine().decode224(data, out));
}
