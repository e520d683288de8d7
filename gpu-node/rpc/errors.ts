/** Translates every failure inside the gpu-node into a ConnectError with an honest code, once, at the RPC boundary. */
import { Code, ConnectError } from "@connectrpc/connect";
import { ImageError } from "../preprocess/image-errors.ts";

/** Thrown by admission control when the node is full: clients should back off and retry. */
export function overloaded(what: string): ConnectError {
  return new ConnectError(`server overloaded: ${what}; retry later`, Code.ResourceExhausted);
}

/** The message a client sees for one image of a call. */
export function imageFailure(index: number, id: string, err: ImageError): ConnectError {
  const who =
    id === "" ? `image ${index}` : `image ${index} (id ${JSON.stringify(id.slice(0, 64))})`;
  return new ConnectError(`${who}: ${err.reason}: ${err.message}`, Code.InvalidArgument);
}

/**
 * Anything else becomes a ConnectError; unknown failures become Internal with a generic
 * message (the real error goes to the log, never to the client).
 */
export function toConnectError(err: unknown, onUnknown: (err: unknown) => void): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof ImageError) return new ConnectError(err.message, Code.InvalidArgument);
  if (err instanceof DOMException && err.name === "TimeoutError") {
    return new ConnectError("deadline exceeded", Code.DeadlineExceeded);
  }
  if (err instanceof DOMException && err.name === "AbortError") {
    return new ConnectError("call cancelled", Code.Canceled);
  }
  onUnknown(err);
  return new ConnectError("internal error", Code.Internal);
}
