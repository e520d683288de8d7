/** Typed rejections of bad image input: preprocessing throws these, the embed service turns them into INVALID_ARGUMENT naming the image. */

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
