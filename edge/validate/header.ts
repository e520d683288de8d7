/** What every format's parser hands back: the header read without decoding, and why the body looks incomplete when it does. */

export type ImageFormat = "jpeg" | "png" | "webp" | "gif" | "tiff" | "heic" | "avif";

export interface ImageHeader {
  /** As stored (before orientation). */
  width: number;
  height: number;
  /** EXIF orientation 1..8 (1 when absent or unreadable); HEIC/AVIF: irot/imir mapped to it. */
  orientation: number;
  /** Animated GIF/WebP/PNG frame count, TIFF page count; absent for single-image formats. */
  frames?: number;
  hasAlpha?: boolean;
}

/** A header plus, when the body is visibly incomplete, why (reported only after the bomb check). */
export interface Parsed extends ImageHeader {
  problem?: string;
}
