/** Validation before any decode: upload bytes in; the format (from magic bytes), stored and oriented size, or an HttpError (413/415/422) naming the image. */

// One file per format beside this one (jpeg.ts, png.ts, webp.ts, gif.ts, tiff.ts, heif.ts; magic
// bytes in sniff.ts), on the portable imaging core (imaging/bytes.ts, exif.ts, jpeg/segments.ts).
// Headers are parsed by hand on purpose. The npm parsers that run without Node (image-size 2.x on
// a Uint8Array, probe-image-size's sync path) give dimensions only: no truncation check, no
// HEIF primary item (pitm/ipma) or irot/imir, and they throw whatever they hit on hostile input.
// Walking the structure ourselves answers all of it in one pass, bounded: every read goes through
// the bounds-checked helpers of imaging/bytes.ts (a hostile header raises ImageHeaderError, never
// a RangeError), every loop advances by at least one byte and has an iteration cap.

import { ImageHeaderError } from "../../imaging/bytes.ts";
import { HttpError } from "../errors.ts";
import { parseGif } from "./gif.ts";
import type { ImageFormat, ImageHeader, Parsed } from "./header.ts";
import { parseHeif } from "./heif.ts";
import { parseJpeg } from "./jpeg.ts";
import { parsePng } from "./png.ts";
import { describeUnknown, sniffFormat } from "./sniff.ts";
import { parseTiffFile } from "./tiff.ts";
import { parseWebp } from "./webp.ts";

export type { ImageFormat, ImageHeader } from "./header.ts";
export { ImageHeaderError, sniffFormat };

export interface ValidationLimits {
  readonly maxBytes: number;
  readonly maxPixels: number;
}

export interface ValidatedImage {
  readonly format: ImageFormat;
  /** As stored (before orientation). */
  readonly width: number;
  readonly height: number;
  readonly orientation: number;
  /** As displayed: width/height swapped for orientations 5..8. */
  readonly orientedWidth: number;
  readonly orientedHeight: number;
  readonly frames?: number;
  readonly hasAlpha?: boolean;
  readonly bytes: Uint8Array;
}

const FORMAT_NAMES: Record<ImageFormat, string> = {
  jpeg: "JPEG",
  png: "PNG",
  webp: "WebP",
  gif: "GIF",
  tiff: "TIFF",
  heic: "HEIC",
  avif: "AVIF",
};

/**
 * Checks, in this order and before any decode: not empty (422), size (413), magic bytes (415),
 * header readable (422), no zero dimension (422), pixel count (413: decompression bombs are
 * refused from the header alone), then a cheap truncation check (422). Every message starts with
 * `label` and describes, never echoes, the bytes.
 */
export function validateImage(
  bytes: Uint8Array,
  limits: ValidationLimits,
  label: string,
): ValidatedImage {
  if (bytes.length === 0) {
    throw new HttpError(422, "unprocessable_image", `${label}: empty image (0 bytes)`);
  }
  if (bytes.length > limits.maxBytes) {
    throw new HttpError(
      413,
      "payload_too_large",
      `${label}: ${bytes.length} bytes is over the limit of ${limits.maxBytes} bytes`,
    );
  }
  const format = sniffFormat(bytes);
  if (format === undefined) {
    throw new HttpError(415, "unsupported_media_type", `${label}: ${describeUnknown(bytes)}`);
  }
  const name = FORMAT_NAMES[format];
  let parsed: Parsed;
  try {
    parsed = parse(bytes, format);
  } catch (err) {
    // Only ImageHeaderError is expected; anything else would be a parser bug, and a hostile
    // upload must still get a 422 rather than a 500.
    const reason = err instanceof ImageHeaderError ? err.message : "malformed header";
    throw new HttpError(
      422,
      "unprocessable_image",
      `${label}: unreadable ${name} header: ${reason}`,
      {
        cause: err,
      },
    );
  }
  const { width, height, orientation } = parsed;
  if (width === 0 || height === 0) {
    throw new HttpError(
      422,
      "unprocessable_image",
      `${label}: ${name} header declares a zero dimension (${width}x${height})`,
    );
  }
  if (width * height > limits.maxPixels) {
    throw new HttpError(
      413,
      "payload_too_large",
      `${label}: ${width}x${height} is ${megapixels(width * height)} MP, over the pixel limit of ` +
        `${megapixels(limits.maxPixels)} MP (refused without decoding: possible decompression bomb)`,
    );
  }
  if (parsed.problem !== undefined) {
    throw new HttpError(
      422,
      "unprocessable_image",
      `${label}: corrupt or truncated ${name}: ${parsed.problem}`,
    );
  }
  const swap = orientation >= 5;
  const out: ValidatedImage = {
    format,
    width,
    height,
    orientation,
    orientedWidth: swap ? height : width,
    orientedHeight: swap ? width : height,
    bytes,
    ...(parsed.frames !== undefined ? { frames: parsed.frames } : {}),
    ...(parsed.hasAlpha !== undefined ? { hasAlpha: parsed.hasAlpha } : {}),
  };
  return out;
}

function megapixels(pixels: number): string {
  return (pixels / 1e6).toFixed(pixels < 1e7 ? 2 : 1);
}

/** Reads the header without decoding; throws ImageHeaderError when it is unreadable. */
export function readHeader(bytes: Uint8Array, format: ImageFormat): ImageHeader {
  const { problem: _ignored, ...header } = parse(bytes, format);
  return header;
}

function parse(b: Uint8Array, format: ImageFormat): Parsed {
  switch (format) {
    case "jpeg":
      return parseJpeg(b);
    case "png":
      return parsePng(b);
    case "webp":
      return parseWebp(b);
    case "gif":
      return parseGif(b);
    case "tiff":
      return parseTiffFile(b);
    case "heic":
    case "avif": {
      const { av1: _av1, ...header } = parseHeif(b);
      return header;
    }
  }
}
