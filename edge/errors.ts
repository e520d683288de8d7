/** The edge's one error type: a status, a stable machine code and a client-safe message; `onError` turns it into the JSON error body. */

export type ErrorCode =
  | "bad_request"
  | "unauthenticated"
  | "payload_too_large"
  | "unsupported_media_type"
  | "unprocessable_image"
  | "rate_limited"
  | "overloaded"
  | "unavailable"
  | "bad_gateway"
  | "timeout"
  | "misconfigured"
  | "internal";

export class HttpError extends Error {
  override readonly name = "HttpError";
  readonly status: 400 | 401 | 404 | 405 | 413 | 415 | 422 | 429 | 500 | 502 | 503 | 504;
  readonly code: ErrorCode;
  /** Seconds, for 429/503 answers. */
  readonly retryAfter: number | undefined;

  constructor(
    status: HttpError["status"],
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; retryAfter?: number },
  ) {
    super(message, options);
    this.status = status;
    this.code = code;
    this.retryAfter = options?.retryAfter;
  }
}

/** Names the image in a multi-image request: "image 2 (part 'image')" style prefixes stay uniform. */
export function imageLabel(index: number, name?: string): string {
  return name ? `image ${index} (${JSON.stringify(name.slice(0, 64))})` : `image ${index}`;
}
