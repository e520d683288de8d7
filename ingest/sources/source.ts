/** What the ingest pipeline needs from a server, whichever it is: the model it runs, and one encoded photo in → its embedding out, with failures sorted once, here, into transient (retry), permanent (this photo) and fatal (stop the run). */
import type { Model, Timings } from "../store.ts";

export interface Answer {
  /** L2-normalised little-endian float32 bytes (an own copy, not a view into a message). */
  readonly vector: Uint8Array;
  readonly dimension: number;
  readonly model: Model;
  readonly timings: Timings | null;
}

export interface Source {
  readonly kind: "edge" | "gpu-node";
  /**
   * The model that will answer. The gpu-node says so (GetModelInfo); the edge has no such route,
   * so it is asked to embed `probe`, one photo of the library.
   */
  describe(probe: Uint8Array | undefined): Promise<Model>;
  /** Whether `describe` needs a probe photo. */
  readonly needsProbe: boolean;
  embed(data: Uint8Array, signal: AbortSignal): Promise<Answer>;
  close(): Promise<void>;
}

export type Failure = "transient" | "permanent" | "fatal";

/** A failed attempt, classified: `code` is a Connect code name or an HTTP status. */
export class SourceError extends Error {
  readonly failure: Failure;
  readonly code: string;
  /** The server's Retry-After, when it sent one. */
  readonly retryAfterMs: number | undefined;

  constructor(failure: Failure, code: string, message: string, retryAfterMs?: number) {
    super(message);
    this.failure = failure;
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

/** Connect code names (as ImageError.code and ConnectError carry them) → what to do. */
export function failureOfConnectCode(code: string): Failure {
  switch (code) {
    case "unavailable":
    case "resource_exhausted":
    case "deadline_exceeded":
    case "aborted":
    case "unknown":
    case "internal":
    case "canceled":
      return "transient";
    case "unauthenticated":
    case "permission_denied":
    case "unimplemented":
      return "fatal";
    default:
      // invalid_argument, out_of_range, failed_precondition, not_found, …: this photo, as sent.
      return "permanent";
  }
}

/** HTTP statuses of the edge (docs/api.md) → what to do. */
export function failureOfStatus(status: number): Failure {
  if (status === 401 || status === 403 || status === 404 || status === 405) return "fatal";
  if (status === 408 || status === 429 || status >= 500) return "transient";
  return "permanent";
}

/** `Retry-After` as seconds or an HTTP date → milliseconds from `now`; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  if (/^\d+(\.\d+)?$/.test(value.trim())) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** A copy of `bytes` (a `bytes` field or a Buffer may be an unaligned view into a larger one). */
export function ownCopy(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}
