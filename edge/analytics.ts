/**
 * Workers Analytics Engine: receives each finished request (route, status, error code, images,
 * bytes and the stage times already in its Server-Timing header) and writes one data point to
 * the `ANALYTICS` binding when one is configured; without the binding it does nothing.
 */
import type { Context, MiddlewareHandler } from "hono";

/**
 * The data point's positional fields, in order: Analytics Engine names them blob1…, double1…,
 * so SQL reads e.g. `double9` for the gpu-node call. Append only: reordering breaks queries.
 */
export const BLOB_FIELDS = ["route", "method", "error_code", "colo"] as const;
export const DOUBLE_FIELDS = [
  "status",
  "images",
  "request_bytes",
  "original_bytes",
  "sent_bytes",
  "edge_total_ms",
  "validate_ms",
  "resize_ms",
  "gpu_ms",
  "gpu_node_decode_ms",
  "gpu_node_preprocess_ms",
  "gpu_node_queue_ms",
  "gpu_node_inference_ms",
  "gpu_node_total_ms",
] as const;

/** Server-Timing entry names behind the *_ms doubles (`total` is the edge's whole request). */
const TIMING_OF: Partial<Record<(typeof DOUBLE_FIELDS)[number], string>> = {
  edge_total_ms: "total",
  validate_ms: "validate",
  resize_ms: "resize",
  gpu_ms: "gpu",
  gpu_node_decode_ms: "gpu-node-decode",
  gpu_node_preprocess_ms: "gpu-node-preprocess",
  gpu_node_queue_ms: "gpu-node-queue",
  gpu_node_inference_ms: "gpu-node-inference",
  gpu_node_total_ms: "gpu-node-total",
};

/** Routes by name; anything else is "other", so a scanner cannot blow up the blob's cardinality. */
const ROUTES = new Set(["/v1/embeddings", "/embed/base64", "/healthz", "/readyz"]);

export interface AnalyticsDataPoint {
  readonly indexes: string[];
  readonly blobs: string[];
  readonly doubles: number[];
}

/** The part of the Workers AnalyticsEngineDataset binding this module uses. */
export interface AnalyticsDataset {
  writeDataPoint(point: AnalyticsDataPoint): void;
}

interface ImageNote {
  readonly original: { readonly bytes: number };
  readonly sent: { readonly bytes: number };
}

const notes = new WeakMap<object, readonly ImageNote[]>();

/** Records the request's images (sizes before and after the resize) for its data point. */
export function noteImages(c: Context, images: readonly ImageNote[]): void {
  notes.set(c, images);
}

/** `validate;dur=1.2, total;dur=9.8;desc="edge total"` → { validate: 1.2, total: 9.8 }. */
export function parseServerTiming(header: string | null): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of (header ?? "").matchAll(/([\w.-]+)((?:;[^,;"]*(?:"(?:[^"\\]|\\.)*")?)*)/g)) {
    const dur = /;\s*dur=([\d.eE+-]+)/.exec(m[2] ?? "");
    if (dur) out.set(m[1]!, Number(dur[1]));
  }
  return out;
}

async function errorCode(res: Response): Promise<string> {
  if (res.status < 400 || !res.headers.get("content-type")?.includes("application/json")) {
    return "";
  }
  const body = (await res
    .clone()
    .json()
    .catch(() => undefined)) as { error?: { code?: unknown } } | undefined;
  return typeof body?.error?.code === "string" ? body.error.code.slice(0, 64) : "";
}

/** Builds the request's data point (exported for tests). */
export async function dataPoint(
  c: Context,
  apiKeyId: string | undefined,
): Promise<AnalyticsDataPoint> {
  const res = c.res;
  const timing = parseServerTiming(res.headers.get("server-timing"));
  const images = notes.get(c) ?? [];
  const path = new URL(c.req.url).pathname;
  const cf = (c.req.raw as { cf?: { colo?: unknown } }).cf;
  const values: Record<(typeof DOUBLE_FIELDS)[number], number> = {
    status: res.status,
    images: images.length,
    request_bytes: Number(c.req.header("content-length")) || 0,
    original_bytes: images.reduce((s, i) => s + i.original.bytes, 0),
    sent_bytes: images.reduce((s, i) => s + i.sent.bytes, 0),
    edge_total_ms: 0,
    validate_ms: 0,
    resize_ms: 0,
    gpu_ms: 0,
    gpu_node_decode_ms: 0,
    gpu_node_preprocess_ms: 0,
    gpu_node_queue_ms: 0,
    gpu_node_inference_ms: 0,
    gpu_node_total_ms: 0,
  };
  for (const [field, name] of Object.entries(TIMING_OF)) {
    values[field as keyof typeof values] = timing.get(name!) ?? 0;
  }
  return {
    // The sampling key: Analytics Engine samples per index, so one busy key cannot crowd out the rest.
    indexes: [(apiKeyId ?? "none").slice(0, 96)],
    blobs: [
      ROUTES.has(path) ? path : "other",
      c.req.method,
      await errorCode(res),
      typeof cf?.colo === "string" ? cf.colo : "",
    ],
    doubles: DOUBLE_FIELDS.map((f) => values[f]),
  };
}

/**
 * Middleware: after the request, one data point to `env.ANALYTICS` when bound. Register it
 * before the Server-Timing middleware so that the header is complete when it runs. A failing
 * write is logged and never affects the response.
 */
export function analytics(): MiddlewareHandler {
  return async (c, next) => {
    await next();
    const dataset = (c.env as { ANALYTICS?: Partial<AnalyticsDataset> } | undefined)?.ANALYTICS;
    if (typeof dataset?.writeDataPoint !== "function") return;
    try {
      dataset.writeDataPoint(await dataPoint(c, c.get("apiKeyId") as string | undefined));
    } catch (err) {
      console.error(JSON.stringify({ code: "analytics_write_failed", message: String(err) }));
    }
  };
}
