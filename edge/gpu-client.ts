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

export interface GpuClientOptions {
  readonly urls: readonly string[];
  readonly token: string;
  readonly timeoutMs: number;
  /** A Cloudflare Access service token (id, secret) for a gpu-node behind Access. */
  readonly access?: { readonly id: string; readonly secret: string };
  /** The fetch to use (tests pass stand-ins). */
  readonly fetch?: typeof fetch;
  /** Jittered backoff base between attempts, ms. */
  readonly backoffMs?: number;
  readonly random?: () => number;
}

/** The client settings a config gives: URLs, token, deadline, Access service token. */
export function gpuClientOptions(
  config: EdgeConfig,
): Pick<GpuClientOptions, "urls" | "token" | "timeoutMs" | "access"> {
  return {
    urls: config.gpuNodeUrls,
    token: config.gpuNodeToken,
    timeoutMs: config.gpuNodeTimeoutMs,
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
  embed(
    images: readonly Uint8Array[],
    requestId: string,
    signal?: AbortSignal,
  ): Promise<EmbeddedImages>;
  /**
   * True when some gpu-node, within `timeoutMs`, says it is ready (its `/readyz`: model loaded
   * and answering, not draining) and accepts our token (GetModelInfo).
   */
  ready(timeoutMs: number): Promise<boolean>;
}

// connect-web passes `redirect: "error"`, which workerd rejects ("Invalid redirect value").
const manualRedirect =
  (f: typeof fetch): typeof fetch =>
  (input, init) =>
    f(input, { ...init, redirect: "manual" });

/** Codes worth trying on another gpu-node: it is down, unreachable or full. */
const RETRYABLE = new Set([Code.Unavailable, Code.Unknown, Code.ResourceExhausted]);

export function createGpuClient(opts: GpuClientOptions): GpuClient {
  const baseFetch = opts.fetch ?? ((input, init) => fetch(input, init));
  const transports: Transport[] = opts.urls.map((baseUrl) =>
    createConnectTransport({
      baseUrl,
      useBinaryFormat: true,
      fetch: manualRedirect(baseFetch),
    }),
  );
  const clients = transports.map((t) => createClient(EmbedderService, t));
  const random = opts.random ?? Math.random;
  const backoff = opts.backoffMs ?? 25;
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
    async embed(images, requestId, signal) {
      const deadline = Date.now() + opts.timeoutMs;
      // Spread load: each request starts at the next gpu-node, then walks the list.
      const start = next++ % clients.length;
      let last: ConnectError | undefined;
      for (let attempt = 0; attempt < clients.length; attempt++) {
        const i = (start + attempt) % clients.length;
        const remaining = deadline - Date.now();
        if (remaining <= 0) break;
        try {
          const res: EmbedResponse = await clients[i]!.embed(
            { images: images.map((data, k) => ({ id: String(k), data })) },
            { timeoutMs: remaining, headers: headers(requestId), signal },
          );
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
          if (!RETRYABLE.has(last.code) || signal?.aborted) break;
          const pause = Math.min(backoff * 2 ** attempt * (0.5 + random()), deadline - Date.now());
          if (pause > 0 && attempt + 1 < clients.length) {
            await new Promise((r) => setTimeout(r, pause));
          }
        }
      }
      throw toHttpError(last ?? new ConnectError("deadline exceeded", Code.DeadlineExceeded));
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
      return new HttpError(
        503,
        "overloaded",
        "the embedding service is at capacity; retry shortly",
        {
          cause: err,
          retryAfter: 1,
        },
      );
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
