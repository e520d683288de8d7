/** Translates every failure of a call to Triton into one ConnectError with an honest code, once, at the backend boundary. */
import { Code, ConnectError } from "@connectrpc/connect";

/** What a failed call to Triton means for the caller and for the backend's health. */
export interface TritonFailure {
  readonly error: ConnectError;
  /** Triton (or the model) is not answering: the backend is not ready until a check passes. */
  readonly down: boolean;
  /** Our own per-request deadline to Triton passed: it may be stalled. */
  readonly timedOut: boolean;
}

/**
 * A status that Triton itself sent carries `grpc-status` in its metadata; anything else
 * (refused, reset, GOAWAY, a session torn down mid-call) happened to the connection.
 */
export function sentByServer(err: ConnectError): boolean {
  return err.metadata.has("grpc-status");
}

/**
 * - refused, reset or lost connection → Unavailable ("triton unreachable at …"), down
 * - Triton says UNAVAILABLE or NOT_FOUND (model not ready, unloaded, unknown) → Unavailable
 *   with Triton's reason, down
 * - our per-request deadline → DeadlineExceeded, timed out
 * - the caller gave up (`signal`) → its own reason, untouched
 * - any other status Triton sent (a rejected request) → Internal with Triton's message
 */
export function translateTritonError(
  err: unknown,
  where: { readonly url: string; readonly model: string },
  signal?: AbortSignal,
): TritonFailure | { readonly callerAborted: unknown } {
  if (signal?.aborted) return { callerAborted: signal.reason };
  const ce = ConnectError.from(err);
  if (ce.code === Code.DeadlineExceeded && !sentByServer(ce)) {
    return {
      error: new ConnectError(
        `triton did not answer in time (model '${where.model}')`,
        Code.DeadlineExceeded,
      ),
      down: false,
      timedOut: true,
    };
  }
  if (!sentByServer(ce)) {
    return {
      error: new ConnectError(
        `triton unreachable at ${where.url}: ${ce.rawMessage}`,
        Code.Unavailable,
        undefined,
        undefined,
        ce,
      ),
      down: true,
      timedOut: false,
    };
  }
  switch (ce.code) {
    case Code.Unavailable:
    case Code.NotFound:
      return {
        error: new ConnectError(
          `triton model '${where.model}' not available: ${ce.rawMessage}`,
          Code.Unavailable,
        ),
        down: true,
        timedOut: false,
      };
    case Code.DeadlineExceeded:
      return {
        error: new ConnectError(`triton: ${ce.rawMessage}`, Code.DeadlineExceeded),
        down: false,
        timedOut: true,
      };
    case Code.ResourceExhausted:
      return {
        error: new ConnectError(`triton overloaded: ${ce.rawMessage}`, Code.ResourceExhausted),
        down: false,
        timedOut: false,
      };
    default:
      return {
        error: new ConnectError(`triton rejected the request: ${ce.rawMessage}`, Code.Internal),
        down: false,
        timedOut: false,
      };
  }
}
