/** How a decoder of the portable core failed (HEIC, PNG, WebP): corrupt or truncated data (422), a variant it does not read (415), or over the memory budget (422). */
export type DecodeFailure = "corrupt" | "unsupported" | "too_large";

export class DecodeError extends Error {
  override readonly name = "DecodeError";
  readonly kind: DecodeFailure;
  constructor(kind: DecodeFailure, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
  }
}
