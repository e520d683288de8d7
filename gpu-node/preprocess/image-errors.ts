/** Typed rejections of bad image input: preprocessing throws these, the service maps them to 4xx. */

export type ImageErrorReason =
  | "empty"
  | "too_large"
  | "too_many_pixels"
  | "unsupported_format"
  | "corrupt";

/**
 * The input image cannot be embedded, and retrying the same bytes will not help. `message` is
 * written for the client: it names the problem, never echoes the image bytes.
 */
export class ImageError extends Error {
  override readonly name = "ImageError";
  readonly reason: ImageErrorReason;

  constructor(reason: ImageErrorReason, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.reason = reason;
  }
}

export function isImageError(error: unknown): error is ImageError {
  return error instanceof ImageError;
}

/** The HTTP status that fits each reason (413 for both size limits, 422 for undecodable data). */
export const IMAGE_ERROR_STATUS: Readonly<Record<ImageErrorReason, number>> = Object.freeze({
  empty: 400,
  too_large: 413,
  too_many_pixels: 413,
  unsupported_format: 415,
  corrupt: 422,
});
