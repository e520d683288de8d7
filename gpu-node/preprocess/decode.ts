/** Receives one encoded image, hands on the 224x224 RGB tensor open_clip's eval transform makes of it. */
import sharp, { type Metadata, type OutputInfo, type Sharp } from "sharp";
import { centreCropOffset, clipResizeSize, IMAGE_BYTES, INPUT_SIZE } from "../../imaging/clip.ts";
import {
  type ResizeWindow,
  type RgbImage,
  resizeBicubicWindow,
} from "../../imaging/resample/pillow-bicubic.ts";
import type { JpegDecoder } from "../config.ts";
import { decodeHeic } from "./heic-decoder.ts";
import { ImageError } from "./image-errors.ts";
import {
  decodePlainJpeg224,
  decodePlainJpegResized,
  isPlainJpeg224,
  type JpegDecoderName,
  jpegEngines,
  plainJpegSize,
  releasePixels,
  useJpegEngine,
} from "./jpeg-fast-path.ts";

export { closeHeicDecoder } from "./heic-decoder.ts";
export { ImageError, type ImageErrorReason } from "./image-errors.ts";

// Every request carries a different image, so libvips' operation cache only holds memory.
sharp.cache(false);
// One libvips thread per image: throughput comes from several images in flight on libuv's pool,
// and extra threads per image only add handoffs for 224-px work (measured: no gain at 2). sharp
// already picks 1 on glibc; saying so keeps musl/jemalloc builds from running cores x pool threads.
sharp.concurrency(1);

export interface DecodeLimits {
  /** Largest accepted width * height. */
  readonly maxPixels: number;
  /** Largest accepted encoded size in bytes. */
  readonly maxBytes: number;
}

export interface ClipImage {
  /** Exactly IMAGE_BYTES: 224x224 RGB, row-major HWC, uint8. */
  readonly pixels: Buffer;
  /** Size of the whole image as displayed, i.e. after EXIF orientation. */
  readonly width: number;
  readonly height: number;
  /** "jpeg", "png", "webp", "gif", "tiff", "avif" or "heic". */
  readonly format: string;
}

interface Sized {
  readonly pixels: Buffer;
  readonly width: number;
  readonly height: number;
}

/** What the header says, read without decoding any pixels; sizes are after orientation. */
interface Header {
  readonly format: string;
  readonly width: number;
  readonly height: number;
  readonly hasAlpha: boolean;
}

const ACCEPTED_FORMATS = new Set(["jpeg", "png", "webp", "gif", "tiff", "heif"]);

// 'error' rejects truncated files (no half-grey images) and decoder errors, yet accepts files
// with harmless libjpeg warnings, as Pillow does.
const FAIL_ON = "error";
// Embedded ICC profiles ARE honoured (converted to sRGB), unlike Pillow in open_clip: the edge
// converts wide-gamut phone photos (Display P3) to sRGB before they get here, and a photo must
// embed the same whether it came through the edge or straight to this node. Untagged images
// (all the Pillow parity fixtures) are unaffected; tagged ones move 13-15 grey levels away from
// Pillow's output (measured on the corpus photos tagged "Generic RGB"). HEIC, decoded in WASM,
// gets its profile applied in its worker (heic-decode-worker.ts).
const IGNORE_ICC = false;
// Full-strength JPEG shrink-on-load (DCT scaling down to 1/8) saved ~11% on 12 MP but cost
// 1.6-1.9 grey levels on real 2-3 MP photos; `false` still DCT-scales, leaving at least a 2x
// kernel reduction (0.2-0.33 grey levels). WebP needs `false` or libwebp ignores the kernel.
const FAST_SHRINK_ON_LOAD = false;

/**
 * Decodes, orients and converts `data` to 8-bit RGB, then resizes and crops it as open_clip's
 * eval transform does with Pillow: torchvision Resize(224, bicubic) with the long side truncated,
 * then CenterCrop(224) with Python's rounding. Throws ImageError for input that cannot be embedded.
 *
 * Plain JPEGs (no EXIF, no ICC: what the edge sends) take a fast path in WASM
 * (jpeg-fast-path.ts): a 224x224 one (RESIZE_MODE=crop-224) is only decoded, giving the same
 * bytes as the sharp path below; one with a short side of 224..447 (the edge's 256-px JPEGs) is
 * decoded and resized exactly as Pillow does, i.e. bit for bit open_clip's tensor.
 */
export async function decodeForClip(data: Uint8Array, limits: DecodeLimits): Promise<ClipImage> {
  checkByteSize(data, limits.maxBytes);
  checkContainer(data);
  // Chosen (and checked) before the first image: no image meets a build still under test.
  const fast = await jpegFastPath();
  if (limits.maxPixels >= INPUT_SIZE * INPUT_SIZE && isPlainJpeg224(data) && fast !== "off") {
    const pixels = await decodePlainJpeg224(data);
    if (pixels) return { pixels, width: INPUT_SIZE, height: INPUT_SIZE, format: "jpeg" };
  }
  const resized = await decodePlainJpegResized(data, limits.maxPixels, (width, height) =>
    clipWindow({ width, height }),
  );
  if (resized) return { ...resized, format: "jpeg" };
  return decodeFull(data, limits);
}

/** decodeForClip without the WASM fast paths: sharp (or libheif) for every image. */
export async function decodeFull(data: Uint8Array, limits: DecodeLimits): Promise<ClipImage> {
  checkByteSize(data, limits.maxBytes);
  checkContainer(data);
  const header = await readHeader(data);
  checkPixelCount(header, limits.maxPixels);
  const { pixels, width, height } = await toClipTensor(data, header, limits.maxPixels);
  return { pixels, width, height, format: header.format };
}

let fastPath: Promise<FastPath> | undefined;
let fastPathChoice: JpegDecoder = "auto";

/** The libjpeg-turbo build the plain-JPEG fast paths use, or "off" (sharp for every image). */
export type FastPath = JpegDecoderName | "off";

/**
 * Sets GPU_NODE_JPEG_DECODER for this process (or thread) before its first image; the choice is
 * checked by jpegFastPath. Throws when `native` is asked for where it cannot load.
 */
export function chooseJpegDecoder(choice: JpegDecoder): void {
  jpegEngines(choice);
  fastPathChoice = choice;
  fastPath = undefined;
}

/**
 * Which build the fast paths use: once per process, the first one that `chooseJpegDecoder` allows
 * and that gives exactly the bytes of the full path for a few generated 224x224 JPEGs (4:2:0,
 * 4:4:4, progressive, grey). None: "off" (say, a sharp build whose libjpeg decodes differently).
 * The server logs the answer at start.
 */
export function jpegFastPath(): Promise<FastPath> {
  fastPath ??= (async (): Promise<FastPath> => {
    const size = INPUT_SIZE;
    const rgb = Buffer.alloc(size * size * 3);
    let seed = 12345;
    for (let i = 0; i < rgb.length; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const pixel = Math.floor(i / 3);
      const ramp = ((pixel % size) + Math.floor(pixel / size)) % 256;
      rgb[i] = (ramp + ((seed >>> 16) & 63) + (i % 3) * 40) & 0xff;
    }
    const raw = { width: size, height: size, channels: 3 } as const;
    const jpegs = await Promise.all([
      sharp(rgb, { raw }).jpeg({ quality: 80 }).toBuffer(),
      sharp(rgb, { raw }).jpeg({ quality: 95, chromaSubsampling: "4:4:4" }).toBuffer(),
      sharp(rgb, { raw }).jpeg({ quality: 75, progressive: true }).toBuffer(),
      sharp(rgb, { raw }).greyscale().jpeg({ quality: 85 }).toBuffer(),
    ]);
    const limits = { maxPixels: size * size, maxBytes: 1024 * 1024 };
    const full = await Promise.all(jpegs.map((jpeg) => decodeFull(jpeg, limits)));
    for (const name of jpegEngines(fastPathChoice)) {
      useJpegEngine(name);
      let agrees = true;
      for (const [i, jpeg] of jpegs.entries()) {
        const fast = isPlainJpeg224(jpeg) ? await decodePlainJpeg224(jpeg) : undefined;
        if (!fast?.equals(full[i]!.pixels)) agrees = false;
        if (fast) releasePixels(fast);
      }
      if (agrees) return name;
    }
    useJpegEngine("wasm");
    return "off";
  })().catch(() => {
    // A check that failed part-way may have left an unchecked build in use: back to WASM.
    useJpegEngine("wasm");
    return "off" as const;
  });
  return fastPath;
}

function checkByteSize(data: Uint8Array, maxBytes: number): void {
  if (data.byteLength === 0) throw new ImageError("empty", "The image is empty (0 bytes)");
  if (data.byteLength > maxBytes) {
    const message = `The image is ${data.byteLength} bytes; the limit is ${maxBytes}`;
    throw new ImageError("too_large", message);
  }
}

/**
 * Lets through only the containers we decode, by magic bytes, before libvips sees the data: SVG,
 * PDF and libvips' other loaders (and their attack surface) stay out of reach.
 */
function checkContainer(data: Uint8Array): void {
  const at = (offset: number, text: string) =>
    [...text].every((char, i) => data[offset + i] === char.charCodeAt(0));
  const known =
    at(0, "\xff\xd8\xff") ||
    at(0, "\x89PNG\r\n\x1a\n") ||
    at(0, "GIF87a") ||
    at(0, "GIF89a") ||
    (at(0, "RIFF") && at(8, "WEBP")) ||
    at(0, "II*\0") ||
    at(0, "MM\0*") ||
    at(4, "ftyp"); // ISO BMFF: HEIC, HEIF, AVIF (libvips checks the brand)
  if (!known) throw unsupported();
}

async function readHeader(data: Uint8Array): Promise<Header> {
  const plain = plainJpegSize(data);
  if (plain) return { format: "jpeg", ...plain, hasAlpha: false };
  let meta: Metadata;
  try {
    // Header only, no pixels: sharp's own cap is lifted so that our check below can name the size.
    meta = await sharp(data, { failOn: FAIL_ON, limitInputPixels: false }).metadata();
  } catch (error) {
    throw toImageError(error);
  }
  if (!ACCEPTED_FORMATS.has(meta.format)) throw unsupported(meta.format.toUpperCase());
  return {
    format: formatName(meta),
    width: meta.autoOrient.width,
    height: meta.autoOrient.height,
    hasAlpha: meta.hasAlpha,
  };
}

/** libvips calls both AVIF and HEIC "heif"; the codec tells them apart. */
function formatName(meta: Metadata): string {
  if (meta.format !== "heif") return meta.format;
  if (meta.compression === "hevc") return "heic";
  if (meta.compression === "av1") return "avif";
  throw unsupported(`HEIF (${meta.compression ?? "unknown codec"})`);
}

function checkPixelCount(header: Header, maxPixels: number): void {
  if (!(header.width >= 1 && header.height >= 1)) {
    throw new ImageError("corrupt", "The image header declares no pixels");
  }
  if (header.width * header.height > maxPixels) {
    const size = `${header.width}x${header.height}`;
    throw new ImageError(
      "too_many_pixels",
      `The image is ${size}; the limit is ${maxPixels} pixels`,
    );
  }
}

/**
 * Takes the cheapest path that still matches Pillow. The common case (downscale, no alpha) is one
 * sharp pipeline. Three cases first need the full-size RGB image: HEIC (decoded in a worker),
 * alpha (Pillow's convert("RGB") drops alpha BEFORE resizing; sharp's removeAlpha runs after a
 * premultiplied resize, which blends differently) and upscaling (libvips upsamples with another
 * interpolator, ~2 grey levels off; a port of Pillow's resampler is exact and cheap at that size).
 */
async function toClipTensor(data: Uint8Array, header: Header, maxPixels: number): Promise<Sized> {
  if (header.format !== "heic" && !header.hasAlpha && !isUpscale(header)) {
    const pixels = await sharpResize(openEncoded(data, maxPixels), clipWindow(header));
    return { pixels, width: header.width, height: header.height };
  }
  // The decoded size is the truth from here on (libheif applies HEIF crop/rotate itself).
  const rgb = await fullSizeRgb(data, header, maxPixels);
  const { width, height } = rgb;
  if (isUpscale(rgb)) {
    const pixels = Buffer.allocUnsafe(IMAGE_BYTES);
    resizeBicubicWindow(rgb, clipWindow(rgb), pixels);
    return { pixels, width, height };
  }
  const raw = { width, height, channels: 3 } as const;
  // Our own pixels, already within maxPixels: sharp's default pixel cap must not apply again.
  const image = sharp(rgb.data, { raw, limitInputPixels: false });
  return { pixels: await sharpResize(image, clipWindow(rgb)), width, height };
}

function isUpscale(size: { width: number; height: number }): boolean {
  return Math.min(size.width, size.height) < INPUT_SIZE;
}

/** torchvision's resize size and centre crop, as the window of the resized image to produce. */
function clipWindow(size: { width: number; height: number }): ResizeWindow {
  const { width: outWidth, height: outHeight } = clipResizeSize(size.width, size.height);
  const left = centreCropOffset(outWidth);
  const top = centreCropOffset(outHeight);
  return { outWidth, outHeight, left, top, width: INPUT_SIZE, height: INPUT_SIZE };
}

function openEncoded(data: Uint8Array, maxPixels: number): Sharp {
  const options = { limitInputPixels: maxPixels, autoOrient: true, ignoreIcc: IGNORE_ICC };
  return sharp(data, { failOn: FAIL_ON, ...options });
}

/** The whole image upright as 8-bit RGB, alpha dropped without compositing. */
async function fullSizeRgb(data: Uint8Array, header: Header, maxPixels: number): Promise<RgbImage> {
  if (header.format === "heic") {
    const { width, height, rgb } = await decodeHeic(data, maxPixels);
    return { data: rgb, width, height };
  }
  const image = openEncoded(data, maxPixels).removeAlpha().toColourspace("srgb").raw();
  const { data: rgb, info } = await run(image);
  if (info.channels !== 3) throw new Error(`full-size decode gave ${info.channels} channels`);
  return { data: rgb, width: info.width, height: info.height };
}

/** Resize to torchvision's exact size (fit "fill": each axis scaled on its own), then crop. */
async function sharpResize(image: Sharp, window: ResizeWindow): Promise<Buffer> {
  const { outWidth: width, outHeight: height, left, top } = window;
  const resize = { width, height, fit: "fill", kernel: "cubic" } as const;
  const pipeline = image
    .resize({ ...resize, fastShrinkOnLoad: FAST_SHRINK_ON_LOAD })
    .extract({ left, top, width: window.width, height: window.height })
    .toColourspace("srgb") // grey, CMYK and 16-bit become 8-bit sRGB
    .removeAlpha()
    .raw();
  const { data, info } = await run(pipeline);
  if (data.byteLength !== IMAGE_BYTES || info.channels !== 3) {
    throw new Error(`preprocess produced ${info.width}x${info.height}x${info.channels}`);
  }
  return data;
}

async function run(image: Sharp): Promise<{ data: Buffer; info: OutputInfo }> {
  try {
    return await image.toBuffer({ resolveWithObject: true });
  } catch (error) {
    throw toImageError(error);
  }
}

function unsupported(detail?: string): ImageError {
  const what = detail ? `${detail} images are not supported` : "The data is not a supported image";
  const message = `${what}; send JPEG, PNG, WebP, AVIF, HEIC, TIFF or GIF`;
  return new ImageError("unsupported_format", message);
}

/** Every libvips failure here is about the input; its first line is safe and useful to show. */
function toImageError(error: unknown): ImageError {
  const message = error instanceof Error ? error.message : String(error);
  if (message.includes("unsupported image format")) return unsupported();
  if (message.includes("exceeds pixel limit")) {
    const tooMany = "The image has more pixels than allowed";
    return new ImageError("too_many_pixels", tooMany, { cause: error });
  }
  const detail = message
    .split("\n")[0]!
    .replace(/[^\x20-\x7e]+/g, " ")
    .slice(0, 160);
  return new ImageError("corrupt", `The image could not be decoded (${detail})`, { cause: error });
}
