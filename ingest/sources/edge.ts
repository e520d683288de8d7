/** The edge as a Source: one photo per `POST /v1/embeddings` (raw body, the path mobile clients take, so that a bad photo fails alone), base64 vectors back; statuses sorted once into retry (429/503 with their Retry-After, 502/504), this photo (400/413/415/422) or stop (401). */
import type { Model, Timings } from "../store.ts";
import {
  type Answer,
  failureOfStatus,
  parseRetryAfter,
  type Source,
  SourceError,
} from "./source.ts";

interface EmbeddingsBody {
  readonly data: readonly { readonly embedding: string }[];
  readonly model: string;
  readonly model_version?: string;
}

/** `gpu-node-decode;dur=1.2, …` (milliseconds) → the gpu-node's timings in µs, when all are there. */
export function timingsFromServerTiming(header: string | null): Timings | null {
  if (!header) return null;
  const dur = new Map<string, number>();
  for (const part of header.split(",")) {
    const [name, ...params] = part.trim().split(";");
    const d = params.map((p) => /^\s*dur=([\d.]+)/.exec(p)).find(Boolean);
    if (name && d) dur.set(name.trim(), Math.round(Number(d[1]) * 1000));
  }
  const get = (n: string) => dur.get(`gpu-node-${n}`);
  const [decodeUs, preprocessUs, queueUs, inferenceUs, totalUs] = [
    "decode",
    "preprocess",
    "queue",
    "inference",
    "total",
  ].map(get);
  if (totalUs === undefined) return null;
  return {
    decodeUs: decodeUs ?? 0,
    preprocessUs: preprocessUs ?? 0,
    queueUs: queueUs ?? 0,
    inferenceUs: inferenceUs ?? 0,
    totalUs,
  };
}

/** The cause's code (ECONNREFUSED, …) of a failed fetch, which says more than "fetch failed". */
function networkCause(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message;
}

export function createEdgeSource(opts: {
  readonly url: string;
  readonly key: string;
  readonly timeoutMs: number;
}): Source {
  const endpoint = `${opts.url}/v1/embeddings?encoding_format=base64`;

  async function post(data: Uint8Array, signal: AbortSignal): Promise<Answer> {
    let res: Response;
    try {
      res = await fetch(endpoint, {
        method: "POST",
        headers: {
          "content-type": "application/octet-stream",
          ...(opts.key ? { authorization: `Bearer ${opts.key}` } : {}),
        },
        body: data,
        signal: AbortSignal.any([signal, AbortSignal.timeout(opts.timeoutMs)]),
      });
    } catch (error) {
      if (signal.aborted) throw new SourceError("transient", "canceled", "cancelled");
      if ((error as Error).name === "TimeoutError") {
        throw new SourceError("transient", "timeout", `edge: no answer in ${opts.timeoutMs} ms`);
      }
      throw new SourceError("transient", "network", `edge unreachable: ${networkCause(error)}`);
    }
    const text = await res.text();
    if (!res.ok) {
      let message = text.slice(0, 300);
      try {
        message = (JSON.parse(text) as { error: { message: string } }).error.message;
      } catch {}
      const failure = failureOfStatus(res.status);
      const hint = res.status === 401 ? " (check --key / INGEST_EDGE_KEY)" : "";
      throw new SourceError(
        failure,
        String(res.status),
        `edge answered ${res.status}: ${message}${hint}`,
        parseRetryAfter(res.headers.get("retry-after")),
      );
    }
    const body = JSON.parse(text) as EmbeddingsBody;
    const first = body.data[0];
    if (!first) throw new SourceError("transient", "502", "edge answered 200 without an embedding");
    const vector = new Uint8Array(Buffer.from(first.embedding, "base64"));
    return {
      vector,
      dimension: vector.byteLength / 4,
      model: { model: body.model, version: body.model_version ?? "" },
      timings: timingsFromServerTiming(res.headers.get("server-timing")),
    };
  }

  let model: Model | undefined;
  return {
    kind: "edge",
    needsProbe: true,
    async describe(probe) {
      if (!probe) throw new Error("the edge is described by embedding a probe photo");
      model = (await post(probe, new AbortController().signal)).model;
      return model;
    },
    embed: post,
    async close() {},
  };
}
