/** The only client of the gpu-node: Connect over fetch with binary protobuf, a deadline, the shared token, and failover across gpu-node URLs; gpu-node errors become HttpErrors here, once. */
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import {
  EmbedderService,
  type EmbedResponse,
  type Timings,
} from "../proto/gen/embedder/v1/embedder_pb.js";
import type { EdgeConfig } from "./config.ts";
import { HttpError } from "./errors.ts";
import { subrequestBodyRead, subrequestStarted } from "./event-loop.ts";

export interface GpuClientOptions {
  readonly urls: readonly string[];
  readonly token: string;
  readonly timeoutMs: number;
  /** A Cloudflare Access service token (id, secret) for a gpu-node behind Access. */
  readonly access?: { readonly id: string; readonly secret: string };
  /** The fetch to use (tests pass stand-ins). */
  readonly fetch?: typeof fetch;
  /**
   * The Connect transport to a gpu-node URL, instead of connect-web over `fetch` (the Node edge
   * passes connect-node's, over node:http).
   */
  readonly transport?: (baseUrl: string) => Transport;
  /**
   * After a gpu-node refuses with ResourceExhausted, it is skipped for this long (ms); while every
   * gpu-node is skipped, calls fail at once with 503 (`saturated()` lets the pipeline shed before
   * it resizes). 0 turns it off.
   */
  readonly shedMs?: number;
  /** The clock (tests pass their own). */
  readonly now?: () => number;
}

/** The client settings a config gives: URLs, token, deadline, Access service token. */
export function gpuClientOptions(
  config: EdgeConfig,
): Pick<GpuClientOptions, "urls" | "token" | "timeoutMs" | "shedMs" | "access"> {
  return {
    urls: config.gpuNodeUrls,
    token: config.gpuNodeToken,
    timeoutMs: config.gpuNodeTimeoutMs,
    shedMs: config.gpuNodeShedMs,
    access:
      config.accessClientId === ""
        ? undefined
        : { id: config.accessClientId, secret: config.accessClientSecret },
  };
}

export interface EmbeddedImages {
  readonly vectors: Float32Array[];
  readonly dimension: number;
  readonly model: string;
  readonly modelVersion: string;
  readonly timings: Timings | undefined;
  /** Which gpu-node answered, and after how many attempts. */
  readonly url: string;
  readonly attempts: number;
}

export interface GpuClient {
  /** `firstId`: the id of the first image (its position in the whole request), the rest follow. */
  embed(
    images: readonly Uint8Array[],
    requestId: string,
    signal?: AbortSignal,
    firstId?: number,
  ): Promise<EmbeddedImages>;
  /**
   * True when some gpu-node, within `timeoutMs`, says it is ready (its `/readyz`: model loaded
   * and answering, not draining) and accepts our token (GetModelInfo).
   */
  ready(timeoutMs: number): Promise<boolean>;
  /**
   * True while every gpu-node refused work (ResourceExhausted) within the last `shedMs`: a call
   * now would be refused too, so the caller can answer 503 before doing any work for it.
   */
  saturated(): boolean;
}

/** workerd's stream whose length is known up front: its body goes out with a Content-Length. */
type FixedLength = new (
  length: number,
) => { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> };
const FixedLengthStream = (globalThis as { FixedLengthStream?: FixedLength }).FixedLengthStream;

/**
 * connect-web's fetch, made fit for workerd: it passes `redirect: "error"`, which workerd rejects
 * ("Invalid redirect value"). In workerd the request body (the same bytes, the same
 * Content-Length) goes through a FixedLengthStream, whose write settles once the runtime has read
 * the body to send it: the resizes waiting for the call to go out wait until then
 * (event-loop.ts), not for a 2 ms timer.
 */
const forWorkerd =
  (f: typeof fetch): typeof fetch =>
  (input, init) => {
    const body = init?.body;
    if (!FixedLengthStream || !(body instanceof Uint8Array)) {
      return f(input, { ...init, redirect: "manual" });
    }
    const stream = new FixedLengthStream(body.byteLength);
    const writer = stream.writable.getWriter();
    subrequestBodyRead(writer.write(body).then(() => writer.close()));
    return f(input, { ...init, body: stream.readable, redirect: "manual" });
  };

/** Codes worth trying on another gpu-node: it is down, unreachable or full. */
const RETRYABLE = new Set([Code.Unavailable, Code.Unknown, Code.ResourceExhausted]);

export function createGpuClient(opts: GpuClientOptions): GpuClient {
  const baseFetch = opts.fetch ?? ((input, init) => fetch(input, init));
  const transports: Transport[] = opts.urls.map(
    (baseUrl) =>
      opts.transport?.(baseUrl) ??
      createConnectTransport({
        baseUrl,
        useBinaryFormat: true,
        fetch: forWorkerd(baseFetch),
      }),
  );
  const clients = transports.map((t) => createClient(EmbedderService, t));
  const now = opts.now ?? Date.now;
  const shedMs = opts.shedMs ?? 0;
  // Per gpu-node: until when it is taken as full (its last answer was ResourceExhausted).
  const fullUntil = opts.urls.map(() => 0);
  const isFull = (i: number) => fullUntil[i]! > now();
  let next = 0;

  const headers = (requestId: string) => {
    const h = new Headers({ "x-request-id": requestId });
    if (opts.token !== "") h.set("authorization", `Bearer ${opts.token}`);
    if (opts.access) {
      h.set("cf-access-client-id", opts.access.id);
      h.set("cf-access-client-secret", opts.access.secret);
    }
    return h;
  };

  return {
    async embed(images, requestId, signal, firstId = 0) {
      const deadline = now() + opts.timeoutMs;
      // Spread load: each request starts at the next gpu-node, then walks the list. A gpu-node
      // that just refused is skipped; the others are tried at once, one after the other: no
      // pause between them (a full or dead node says nothing about the next one), and when all
      // have refused the client hears 503 now rather than after a wait.
      const start = next++ % clients.length;
      let last: ConnectError | undefined;
      for (let attempt = 0; attempt < clients.length; attempt++) {
        const i = (start + attempt) % clients.length;
        if (isFull(i)) {
          last ??= new ConnectError("refused moments ago", Code.ResourceExhausted);
          continue;
        }
        const remaining = deadline - now();
        if (remaining <= 0) break;
        try {
          // Before the call: connect-web may reach fetch (which reports the body's read) at once.
          subrequestStarted();
          const res: EmbedResponse = await clients[i]!.embed(
            { images: images.map((data, k) => ({ id: String(firstId + k), data })) },
            { timeoutMs: remaining, headers: headers(requestId), signal },
          );
          fullUntil[i] = 0;
          return {
            vectors: res.embeddings.map((e) => toFloats(e.vector)),
            dimension: res.dimension,
            model: res.model,
            modelVersion: res.modelVersion,
            timings: res.timings,
            url: opts.urls[i]!,
            attempts: attempt + 1,
          };
        } catch (err) {
          last = ConnectError.from(err);
          if (last.code === Code.ResourceExhausted && shedMs > 0) fullUntil[i] = now() + shedMs;
          if (!RETRYABLE.has(last.code) || signal?.aborted) break;
        }
      }
      throw toHttpError(last ?? new ConnectError("deadline exceeded", Code.DeadlineExceeded));
    },

    saturated() {
      return shedMs > 0 && fullUntil.every((_, i) => isFull(i));
    },

    async ready(timeoutMs) {
      // GetModelInfo alone answers while the node's backend is down (Triton gone, model
      // unloaded): the node's own /readyz knows, and GetModelInfo proves the token is accepted.
      const one = async (url: string, client: (typeof clients)[number]) => {
        const [res] = await Promise.all([
          baseFetch(`${url}/readyz`, {
            signal: AbortSignal.timeout(timeoutMs),
            redirect: "manual",
          }),
          client.getModelInfo({}, { timeoutMs, headers: headers("readyz") }),
        ]);
        await res.body?.cancel();
        if (res.status !== 200) throw new Error(`${url}/readyz: ${res.status}`);
      };
      const results = await Promise.allSettled(clients.map((c, i) => one(opts.urls[i]!, c)));
      return results.some((r) => r.status === "fulfilled");
    },
  };
}

/** A `bytes` field may be an unaligned view: copy before reading little-endian float32. */
function toFloats(bytes: Uint8Array): Float32Array {
  const copy = new Uint8Array(bytes);
  return new Float32Array(copy.buffer, 0, copy.byteLength >> 2);
}

/** gpu-node error → HTTP: honest statuses, gpu-node's message only where it is about the client's input. */
export function toHttpError(err: ConnectError): HttpError {
  switch (err.code) {
    case Code.InvalidArgument:
      return new HttpError(422, "unprocessable_image", err.rawMessage, { cause: err });
    case Code.ResourceExhausted:
      return gpuNodesFull(err);
    case Code.DeadlineExceeded:
      return new HttpError(504, "timeout", "the embedding service did not answer in time", {
        cause: err,
      });
    case Code.Unavailable:
    case Code.Unknown:
    case Code.Canceled:
      return new HttpError(
        503,
        "unavailable",
        "the embedding service is unavailable; retry shortly",
        {
          cause: err,
          retryAfter: 2,
        },
      );
    default:
      return new HttpError(502, "bad_gateway", "the embedding service failed", { cause: err });
  }
}

/** Every gpu-node is full: 503 with a Retry-After, whether they said so now or moments ago. */
export function gpuNodesFull(cause?: unknown): HttpError {
  return new HttpError(503, "overloaded", "the embedding service is at capacity; retry shortly", {
    cause,
    retryAfter: 1,
  });
}
