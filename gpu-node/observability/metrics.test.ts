// Metrics of a real gpu-node (noop backend, port 0): what each call, image and batch adds to
// /metrics and to /dashboard/data.json, Triton's statistics as counters, the metrics port's
// routes and settings.
import { createServer } from "node:net";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { embedderClient } from "../../test/support/gpu-node-client.ts";
import { photo, randomBytes } from "../../test/support/images.ts";
import type { TritonStats } from "../backends/triton/stats.ts";
import { parseConfig, testConfig } from "../config.ts";
import { type GpuNode, startGpuNode } from "../node.ts";
import { codeName, createMetrics, type DashboardData } from "./metrics.ts";

/** Sample values from a Prometheus text exposition, keyed by `name{labels}` as written. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

let node: GpuNode;
let images: Buffer[];

beforeAll(async () => {
  node = await startGpuNode(testConfig({ port: 0, backend: "noop", maxBatchWaitMs: 0 }));
  images = await Promise.all([1, 2, 3].map((s) => photo(300, 240, s)));
});
afterAll(() => node?.close());

const scrape = async () => {
  const res = await fetch(`${node.metricsUrl}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return samples(await res.text());
};

describe("gpu-node metrics", () => {
  it("counts calls, images, errors, stages and batches, and the dashboard JSON agrees", async () => {
    const client = embedderClient(node.url);
    const before = await scrape();
    const get = (m: Map<string, number>, key: string) => m.get(key) ?? 0;

    for (let i = 0; i < 3; i++) {
      await client.embed({ images: images.slice(0, 2).map((data, j) => ({ id: `${j}`, data })) });
    }
    await expect(
      client.embed({
        images: [
          { id: "ok", data: images[0]! },
          { id: "bad", data: randomBytes(500, 7) },
        ],
      }),
    ).rejects.toThrow(/invalid_argument|image 1/i);
    async function* stream() {
      yield { image: { id: "s0", data: images[2]! } };
      yield { image: { id: "s1", data: randomBytes(300, 9) } };
    }
    for await (const _ of client.embedStream(stream())) {
      // drain
    }

    const after = await scrape();
    const delta = (key: string) => get(after, key) - get(before, key);
    expect(delta('gpu_node_calls_total{method="Embed",code="ok"}')).toBe(3);
    expect(delta('gpu_node_calls_total{method="Embed",code="invalid_argument"}')).toBe(1);
    expect(delta('gpu_node_calls_total{method="EmbedStream",code="ok"}')).toBe(1);
    expect(delta('gpu_node_errors_total{method="Embed",code="invalid_argument"}')).toBe(1);
    expect(delta('gpu_node_images_total{outcome="ok"}')).toBe(3 * 2 + 1);
    // The failed Embed's two images, and the stream's bad item.
    expect(delta('gpu_node_images_total{outcome="invalid_argument"}')).toBe(3);
    for (const stage of ["decode", "preprocess", "queue", "inference", "total"]) {
      expect(delta(`gpu_node_stage_duration_seconds_count{stage="${stage}"}`)).toBe(4);
      expect(delta(`gpu_node_stage_duration_seconds_sum{stage="${stage}"}`)).toBeGreaterThanOrEqual(
        0,
      );
    }
    expect(delta('gpu_node_stage_duration_seconds_sum{stage="total"}')).toBeGreaterThan(0);
    const batches = delta("gpu_node_batch_size_count");
    expect(batches).toBeGreaterThanOrEqual(4);
    // The failed call's good image may have made it into a batch before its sibling failed.
    expect(delta("gpu_node_batch_size_sum")).toBeGreaterThanOrEqual(7);
    expect(delta("gpu_node_batch_size_sum")).toBeLessThanOrEqual(8);
    expect(delta("gpu_node_batch_inference_seconds_count")).toBe(batches);
    expect(get(after, "gpu_node_in_flight_calls")).toBe(0);
    expect(get(after, "gpu_node_queued_images")).toBe(0);
    expect(get(after, "gpu_node_admitted_images")).toBe(0);
    expect(get(after, "gpu_node_admitted_images_limit")).toBe(512);
    expect(
      get(
        after,
        'gpu_node_info{model="noop",model_version="0",backend="noop",layout="uint8-nhwc",provider="",device=""}',
      ),
    ).toBe(1);
    expect(after.has("process_cpu_user_seconds_total")).toBe(true);
    expect(after.has("nodejs_eventloop_lag_p99_seconds")).toBe(true);
    // Not the triton backend: no Triton series.
    expect([...after.keys()].some((k) => k.startsWith("gpu_node_triton"))).toBe(false);

    const data = (await (
      await fetch(`${node.metricsUrl}/dashboard/data.json`)
    ).json()) as DashboardData;
    expect(data.node).toMatchObject({ model: "noop", backend: "noop", maxBatchSize: 32 });
    expect(data.totals.images).toBe(get(after, 'gpu_node_images_total{outcome="ok"}'));
    expect(data.totals.failedImages).toBe(3);
    expect(data.totals.errors).toBe(1);
    expect(data.totals.calls).toBe(
      [...after]
        .filter(([k]) => k.startsWith("gpu_node_calls_total"))
        .reduce((s, [, v]) => s + v, 0),
    );
    expect(data.totals.batches).toBe(get(after, "gpu_node_batch_size_count"));
    expect(data.triton).toBeNull();
  });

  it("serves the page with a strict CSP, a redirect at /, 404 and 405", async () => {
    const page = await fetch(`${node.metricsUrl}/dashboard`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-security-policy")).toContain("default-src 'none'");
    const html = await page.text();
    expect(html).toContain('src="dashboard/dashboard.js"');
    expect(html).not.toMatch(/https?:\/\//); // nothing from another origin
    const js = await fetch(`${node.metricsUrl}/dashboard/dashboard.js`);
    expect(js.headers.get("content-type")).toMatch(/^text\/javascript/);
    expect(await js.text()).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    const root = await fetch(`${node.metricsUrl}/`, { redirect: "manual" });
    expect(root.status).toBe(302);
    expect(root.headers.get("location")).toBe("/dashboard");
    expect((await fetch(`${node.metricsUrl}/nope`)).status).toBe(404);
    expect((await fetch(`${node.metricsUrl}/metrics`, { method: "POST" })).status).toBe(405);
  });
});

describe("metrics settings", () => {
  it("defaults to port 9464, takes --metrics-port and switches off with --no-metrics or GPU_NODE_METRICS=false", () => {
    expect(parseConfig([], {})).toMatchObject({ metrics: true, metricsPort: 9464 });
    expect(parseConfig(["--metrics-port", "0"], {}).metricsPort).toBe(0);
    expect(parseConfig([], { GPU_NODE_METRICS_PORT: "9100" }).metricsPort).toBe(9100);
    expect(parseConfig(["--no-metrics"], {}).metrics).toBe(false);
    expect(parseConfig([], { GPU_NODE_METRICS: "false" }).metrics).toBe(false);
    expect(() => parseConfig(["--metrics-port", "70000"], {})).toThrow(/--metrics-port/);
  });

  it("serves no metrics port when switched off", async () => {
    const n = await startGpuNode(testConfig({ port: 0, backend: "noop", metrics: false }));
    try {
      expect(n.metricsUrl).toBeUndefined();
    } finally {
      await n.close();
    }
  });

  it("keeps serving embeddings when the metrics port is taken, and says so", async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
    const port = (blocker.address() as { port: number }).port;
    const lines: string[] = [];
    const log = {
      debug: () => {},
      info: () => {},
      warn: () => {},
      error: (obj: unknown, msg?: string) => lines.push(`${msg} ${JSON.stringify(obj)}`),
    };
    try {
      const n = await startGpuNode(testConfig({ port: 0, backend: "noop", metricsPort: port }), {
        log: log as never,
      });
      try {
        expect(n.metricsUrl).toBeUndefined();
        expect(lines.join("\n")).toMatch(/metrics port unavailable/);
        const res = await embedderClient(n.url).embed({ images: [{ id: "a", data: images[0]! }] });
        expect(res.embeddings).toHaveLength(1);
      } finally {
        await n.close();
      }
    } finally {
      blocker.close();
    }
  });
});

describe("Triton statistics", () => {
  it("re-exports ModelStatistics as counters and the dashboard's per-request times", async () => {
    let stats: TritonStats | undefined;
    const metrics = createMetrics({
      model: {
        name: "m",
        version: "1",
        dimension: 512,
        layout: "uint8-nhwc",
        maxBatchSize: 8,
        backend: "triton",
      },
      triton: { stats: () => stats },
      processMetrics: false,
    });
    // Before the first reading: zeros, not missing series.
    expect(
      samples(await metrics.exposition()).get('gpu_node_triton_requests_total{status="success"}'),
    ).toBe(0);
    stats = {
      at: Date.now(),
      model: "m",
      version: "1",
      total: {
        success: 10,
        fail: 1,
        inferences: 40,
        executions: 5,
        us: {
          success: 9000,
          queue: 2000,
          computeInput: 500,
          computeInfer: 6000,
          computeOutput: 250,
        },
      },
      window: {
        ms: 2000,
        requests: 4,
        inferences: 16,
        executions: 2,
        perInferenceUs: { queue: 150, computeInput: 50, computeInfer: 600, computeOutput: 25 },
      },
    };
    const s = samples(await metrics.exposition());
    expect(s.get('gpu_node_triton_duration_seconds_total{phase="queue"}')).toBeCloseTo(0.002, 9);
    expect(s.get('gpu_node_triton_duration_seconds_total{phase="compute_infer"}')).toBeCloseTo(
      0.006,
      9,
    );
    expect(s.get('gpu_node_triton_requests_total{status="success"}')).toBe(10);
    expect(s.get('gpu_node_triton_requests_total{status="fail"}')).toBe(1);
    expect(s.get("gpu_node_triton_inferences_total")).toBe(40);
    expect(s.get("gpu_node_triton_executions_total")).toBe(5);
    // Triton restarted: the counters follow it down (Prometheus' rate() treats that as a reset).
    stats = { ...stats, total: { ...stats.total, success: 2 }, window: null };
    expect(
      samples(await metrics.exposition()).get('gpu_node_triton_requests_total{status="success"}'),
    ).toBe(2);
    stats = {
      ...stats,
      window: {
        ms: 1000,
        requests: 1,
        inferences: 4,
        executions: 1,
        perInferenceUs: { queue: 150, computeInput: 50, computeInfer: 600, computeOutput: 25 },
      },
    };
    expect(metrics.dashboardData().triton).toMatchObject({
      windowSeconds: 1,
      requests: 1,
      perRequestMs: { queue: 0.15, computeInput: 0.05, computeInfer: 0.6, computeOutput: 0.025 },
      totals: { success: 2, fail: 1 },
    });
  });

  it("spells Connect codes as the protocol does", () => {
    expect(codeName(Code.ResourceExhausted)).toBe("resource_exhausted");
    expect(codeName(Code.InvalidArgument)).toBe("invalid_argument");
    expect(codeName(Code.Unavailable)).toBe("unavailable");
  });
});
