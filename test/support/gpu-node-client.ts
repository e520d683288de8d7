/** Test clients for a running gpu-node over each protocol, and helpers to read its vectors. */
import { type Client, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { EmbedderService } from "../../proto/gen/embedder/v1/embedder_pb.js";

export type Protocol = "connect-h1" | "connect-h2" | "grpc" | "grpc-web";

export function transportFor(baseUrl: string, protocol: Protocol, token?: string): Transport {
  const auth: Interceptor = (next) => async (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const interceptors = token ? [auth] : [];
  switch (protocol) {
    case "connect-h1":
      return createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors });
    case "connect-h2":
      return createConnectTransport({ baseUrl, httpVersion: "2", interceptors });
    case "grpc":
      return createGrpcTransport({ baseUrl, interceptors });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors });
  }
}

export function embedderClient(
  baseUrl: string,
  protocol: Protocol = "connect-h2",
  token?: string,
): Client<typeof EmbedderService> {
  return createClient(EmbedderService, transportFor(baseUrl, protocol, token));
}

/** Copies the bytes (a `bytes` field can be an unaligned view) and reads little-endian float32. */
export function toFloats(bytes: Uint8Array): Float32Array {
  const copy = new Uint8Array(bytes);
  return new Float32Array(copy.buffer, 0, copy.byteLength / 4);
}

export function norm(v: Float32Array): number {
  let s = 0;
  for (const x of v) s += x * x;
  return Math.sqrt(s);
}

export function cosine(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s / (norm(a) * norm(b));
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** One sample of a Prometheus exposition, `name` or `name{labels}` as written; NaN when absent. */
export function metricSample(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1));
}

/** One sample of the node's /metrics at `metricsUrl` (NaN when absent). */
export async function metricValue(metricsUrl: string, series: string): Promise<number> {
  return metricSample(await (await fetch(`${metricsUrl}/metrics`)).text(), series);
}
