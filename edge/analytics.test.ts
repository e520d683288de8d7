// One Analytics Engine data point per request, in workerd with the real wrangler.toml: what a
// successful embedding, an auth failure and a health check write; nothing (and no error) without
// the binding; a failing write never reaches the client.
import { env } from "cloudflare:test";
import { describe, expect, inject, it } from "vitest";
import type { EdgeFixture } from "../test/support/edge-fixtures.setup.ts";
import {
  type AnalyticsDataPoint,
  BLOB_FIELDS,
  DOUBLE_FIELDS,
  parseServerTiming,
} from "./analytics.ts";
import { testApp } from "./testing/test-app.ts";

const fixtures = inject("edgeFixtures") as Record<string, EdgeFixture>;
const jpeg = Uint8Array.from(atob(fixtures.photoWithGps!.base64), (c) => c.charCodeAt(0));
const KEY = "analytics-test-key-0123";

/** An app with a gpu-node stand-in, and `ANALYTICS` replaced by `dataset` (undefined = unbound). */
async function setup(dataset: unknown) {
  const { request } = await testApp({ key: KEY, token: null, vars: { ANALYTICS: dataset } });
  return request;
}

const recorder = () => {
  const points: AnalyticsDataPoint[] = [];
  return { points, dataset: { writeDataPoint: (p: AnalyticsDataPoint) => points.push(p) } };
};
const named = (p: AnalyticsDataPoint): Record<string, string | number | undefined> => ({
  index: p.indexes[0],
  ...Object.fromEntries(BLOB_FIELDS.map((f, i) => [f, p.blobs[i]])),
  ...Object.fromEntries(DOUBLE_FIELDS.map((f, i) => [f, p.doubles[i]])),
});

const postJpeg = {
  method: "POST",
  // Clients send a length with a fixed body; it is what request_bytes reports.
  headers: { "content-type": "image/jpeg", "content-length": String(jpeg.byteLength) },
  body: jpeg,
};

describe("Analytics Engine data points", () => {
  it("writes one point per embedding request: route, status, images, bytes and every stage", async () => {
    const { points, dataset } = recorder();
    const request = await setup(dataset);
    const res = await request("/v1/embeddings", postJpeg);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: { sent: { bytes: number } }[] };
    expect(points).toHaveLength(1);
    const p = named(points[0]!);
    expect(points[0]!.blobs).toHaveLength(BLOB_FIELDS.length);
    expect(points[0]!.doubles).toHaveLength(DOUBLE_FIELDS.length);
    expect(p).toMatchObject({
      route: "/v1/embeddings",
      method: "POST",
      error_code: "",
      status: 200,
      images: 1,
      request_bytes: jpeg.byteLength,
      original_bytes: jpeg.byteLength,
      sent_bytes: body.data[0]!.sent.bytes,
      // The stand-in's own timings, as the gpu-node reports them.
      gpu_node_decode_ms: 1,
      gpu_node_queue_ms: 0.2,
      gpu_node_inference_ms: 3,
      gpu_node_total_ms: 4.5,
    });
    expect(p.index).toMatch(/^[0-9a-f]{8,}/); // the key's id, never the key
    expect(p.index).not.toContain(KEY);
    // The same figures as the response's Server-Timing.
    const timing = parseServerTiming(res.headers.get("server-timing"));
    expect(p.edge_total_ms).toBe(timing.get("total"));
    expect(p.validate_ms).toBe(timing.get("validate"));
    expect(p.resize_ms).toBe(timing.get("resize"));
    expect(p.gpu_ms).toBe(timing.get("gpu"));
    expect(p.edge_total_ms).toBeGreaterThan(0);
  });

  it("records failures with their status and error code, and unknown paths as 'other'", async () => {
    const { points, dataset } = recorder();
    const request = await setup(dataset);
    expect((await request("/v1/embeddings", postJpeg, "wrong-key")).status).toBe(401);
    expect((await request("/wp-login.php", {}, null)).status).toBe(404);
    expect((await request("/healthz", {}, null)).status).toBe(200);
    expect(points.map(named)).toMatchObject([
      {
        route: "/v1/embeddings",
        status: 401,
        error_code: "unauthenticated",
        images: 0,
        index: "none",
      },
      { route: "other", method: "GET", status: 404, error_code: "not_found" },
      { route: "/healthz", status: 200, error_code: "" },
    ]);
  });

  it("writes nothing and fails nothing without the binding, or when the write throws", async () => {
    const unbound = await setup(undefined);
    expect((await unbound("/v1/embeddings", postJpeg)).status).toBe(200);
    const broken = await setup({
      writeDataPoint() {
        throw new Error("dataset unavailable");
      },
    });
    expect((await broken("/v1/embeddings", postJpeg)).status).toBe(200);
  });

  it("accepts the binding configured in wrangler.toml", async () => {
    expect(typeof env.ANALYTICS.writeDataPoint).toBe("function");
    const request = await setup(env.ANALYTICS);
    expect((await request("/v1/embeddings", postJpeg)).status).toBe(200);
  });

  it("parses Server-Timing entries with descriptions, and ignores entries without a duration", () => {
    const t = parseServerTiming(
      'validate;dur=1.5, resize;dur=12.0;desc="a, b", cache;desc="hit", total;dur=20.25;desc="edge total"',
    );
    expect([...t]).toEqual([
      ["validate", 1.5],
      ["resize", 12],
      ["total", 20.25],
    ]);
    expect(parseServerTiming(null).size).toBe(0);
  });
});
