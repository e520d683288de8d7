/** The resize stage's interface: a validated original photo in, a small metadata-free sRGB JPEG out. Two implementations: the Images binding and in-Worker WASM. */
import type { ImageFormat } from "../validate.ts";

export interface ResizeInput {
  readonly bytes: Uint8Array;
  /** From the magic bytes (validate.ts), never from the client's Content-Type. */
  readonly format: ImageFormat;
  /** Stored (pre-orientation) dimensions, read from the header. */
  readonly width: number;
  readonly height: number;
  /** EXIF orientation 1..8 from the header (validate.ts), when known. */
  readonly orientation?: number;
}

export interface ResizeOptions {
  /** Target short side in pixels after EXIF orientation (224 or 256). */
  readonly shortSide: number;
  /** JPEG quality, 1..100. */
  readonly quality: number;
}

export interface ResizedImage {
  /** A baseline JPEG: EXIF orientation applied, sRGB, no EXIF/XMP/ICC/comment segments. */
  readonly bytes: Uint8Array;
  readonly width: number;
  readonly height: number;
}

export interface Resizer {
  /** "images-binding", "wasm" or "sharp". */
  readonly name: string;
  /** Formats this resizer can decode; others are refused with 415 before any work. */
  supports(format: ImageFormat): boolean;
  /** Throws HttpError 422 (undecodable) or 415 (unsupported); anything else is a fault. */
  resize(input: ResizeInput, options: ResizeOptions): Promise<ResizedImage>;
}

/**
 * The output size for `input` once EXIF orientation is applied (orientations 5-8 swap width and
 * height): short side scaled to `shortSide`, never upscaled, long side rounded.
 */
export function orientedTargetSize(input: ResizeInput, shortSide: number) {
  const turned = input.orientation !== undefined && input.orientation >= 5;
  return turned
    ? targetSize(input.height, input.width, shortSide)
    : targetSize(input.width, input.height, shortSide);
}

/** The output size: short side scaled to `shortSide`, never upscaled; long side rounded. */
export function targetSize(width: number, height: number, shortSide: number) {
  const short = Math.min(width, height);
  if (short <= shortSide) return { width, height };
  const scale = shortSide / short;
  return width <= height
    ? { width: shortSide, height: Math.max(1, Math.round(height * scale)) }
    : { width: Math.max(1, Math.round(width * scale)), height: shortSide };
}
