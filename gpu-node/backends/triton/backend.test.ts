// The Triton backend against the KServe v2 test double (a real gRPC server running vit-tiny):
// batch splitting, shared-memory slots, fallback, error translation, recovery, statistics.
import { readdirSync } from "node:fs";
import { Writable } from "node:stream";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import {
  type KServeDouble,
  startKServeDouble,
  tinyModelFiles,
} from "../../../test/support/kserve-double.ts";
import { testConfig } from "../../config.ts";
import { createLogger } from "../../logger.ts";
import type { Backend } from "../backend.ts";
import { IMAGE_BYTES } from "../backend.ts";
import { createOnnxRuntimeBackend } from "../onnxruntime.ts";
import { createTritonBackend, type TritonBackend, type TritonBackendOptions } from "./backend.ts";
import { SHM_PREFIX } from "./shm.ts";

let double: KServeDouble;
let reference: Backend;
const backends: TritonBackend[] = [];

beforeAll(async () => {
  const files = await tinyModelFiles(testConfig().cacheDir);
  double = await startKServeDouble({
    models: [
      { name: "tiny4", path: files.uint8, layout: "uint8-nhwc", maxBatchSize: 4 },
      { name: "tiny8", path: files.uint8, layout: "uint8-nhwc", maxBatchSize: 8 },
    ],
  });
  reference = createOnnxRuntimeBackend({
    modelPath: files.uint8,
    name: "ref",
    version: "0",
    threads: 1,
    provider: "cpu",
    maxBatchSize: 32,
  });
  await reference.start();
});
afterAll(async () => {
  await reference?.close();
  await double?.close();
});
afterEach(async () => {
  for (const b of backends.splice(0)) await b.close();
  double.faults.refuseShm = false;
  double.faults.reject = undefined;
  double.faults.unloaded.clear();
  double.faults.stall = false;
  double.faults.serverNotReady = false;
  double.releaseStall();
  double.requests.length = 0;
});

/** Log lines a backend wrote, parsed. */
function logSink() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l));
      done();
    },
  });
  return { lines, log: createLogger("info", stream) };
}

function backend(overrides: Partial<TritonBackendOptions> = {}): TritonBackend {
  const b = createTritonBackend({
    url: double.url,
    model: "tiny8",
    modelVersion: "",
    shm: false,
    concurrency: 2,
    maxBatchSize: 16,
    timeoutMs: 2000,
    startTimeoutMs: 2000,
    healthIntervalMs: 100,
    statsIntervalMs: 0,
    log: createLogger("silent"),
    ...overrides,
  });
  backends.push(b);
  return b;
}

/** `count` distinct pseudo-images, UINT8 NHWC, packed. */
function images(count: number, seed: number): Uint8Array {
  const data = new Uint8Array(count * IMAGE_BYTES);
  let s = seed * 7919 + 1;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    data[i] = s >>> 24;
  }
  return data;
}

const rows = (v: Float32Array, dim: number) =>
  Array.from({ length: v.length / dim }, (_, i) => v.subarray(i * dim, (i + 1) * dim));
const maxAbsDiff = (a: Float32Array, b: Float32Array) =>
  a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i]!)), 0);

async function expected(data: Uint8Array, count: number): Promise<Float32Array> {
  return reference.infer({ layout: "uint8-nhwc", data, count });
}

const ownShmFiles = () =>
  readdirSync("/dev/shm").filter((f) => f.startsWith(`${SHM_PREFIX}-${process.pid}-`));

const failure = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    return ConnectError.from(err);
  }
  throw new Error("expected a failure");
};

describe("triton backend (against the KServe v2 double)", () => {
  it("describes the model from its metadata and splits batches above max_batch_size, rows in order", async () => {
    const b = backend({ model: "tiny4" });
    const model = await b.start();
    expect(model).toMatchObject({
      backend: "triton",
      layout: "uint8-nhwc",
      dimension: 512,
      maxBatchSize: 16,
      version: "1",
    });
    double.requests.length = 0;
    const data = images(10, 1);
    const out = await b.infer({ layout: "uint8-nhwc", data, count: 10 });
    expect(double.requests.map((r) => r.images).sort()).toEqual([2, 4, 4]);
    expect(maxAbsDiff(out, await expected(data, 10))).toBeLessThanOrEqual(1e-5);
    const r = rows(out, 512);
    expect(maxAbsDiff(r[0]!, r[9]!)).toBeGreaterThan(0.01); // distinct images, distinct rows
  });

  it("puts inputs in /dev/shm slots, never shares a slot between requests in flight, and removes them on close", async () => {
    const b = backend({ shm: true, concurrency: 2, maxBatchSize: 8 });
    await b.start();
    const slots = b.transportInfo().shmRegions;
    expect(slots.length).toBe(2);
    expect(ownShmFiles().sort()).toEqual([...slots].sort());
    expect([...double.regions().keys()].sort()).toEqual([...slots].sort());
    double.requests.length = 0;
    double.faults.delayMs = 5; // keep requests overlapping
    const sentBefore = b.transportInfo().wireBytes.sent;
    // 12 calls at once, each its own images: more than the pool's 3 slots (2 batches + a probe).
    const calls = Array.from({ length: 12 }, (_, k) => ({
      data: images(1 + (k % 3), 100 + k),
      count: 1 + (k % 3),
    }));
    const outs = await Promise.all(calls.map((c) => b.infer({ layout: "uint8-nhwc", ...c })));
    double.faults.delayMs = 0;
    for (const [k, c] of calls.entries()) {
      expect(maxAbsDiff(outs[k]!, await expected(c.data, c.count))).toBeLessThanOrEqual(1e-5);
    }
    expect(double.requests.every((r) => r.viaShm)).toBe(true);
    expect(b.transportInfo().shmRegions.length).toBeLessThanOrEqual(3);
    const imagesSent = calls.reduce((n, c) => n + c.count, 0);
    expect((b.transportInfo().wireBytes.sent - sentBefore) / imagesSent).toBeLessThan(1000);
    await b.close();
    expect(ownShmFiles()).toEqual([]);
    expect(double.regions().size).toBe(0);
  });

  it("falls back to bytes with one log line when Triton refuses shared memory, and leaves no files", async () => {
    double.faults.refuseShm = true;
    const { lines, log } = logSink();
    const b = backend({ shm: true, log });
    await b.start();
    const data = images(3, 7);
    const out = await b.infer({ layout: "uint8-nhwc", data, count: 3 });
    await b.infer({ layout: "uint8-nhwc", data, count: 3 });
    expect(maxAbsDiff(out, await expected(data, 3))).toBeLessThanOrEqual(1e-5);
    expect(b.transportInfo().mode).toBe("bytes");
    expect(double.requests.some((r) => r.viaShm)).toBe(false);
    const warnings = lines.filter((l) => String(l.msg).includes("shared memory unavailable"));
    expect(warnings.length).toBe(1);
    expect(String(warnings[0]!.reason)).toContain("--allow-client-shm=true");
    expect(ownShmFiles()).toEqual([]);
  });

  it("translates failures once: rejected → Internal with Triton's message; model unloaded → Unavailable with the reason", async () => {
    const b = backend();
    await b.start();
    const batch = { layout: "uint8-nhwc" as const, data: images(1, 3), count: 1 };
    double.faults.reject = {
      code: Code.Internal,
      message: "onnx runtime error 6: CUDA out of memory",
    };
    const rejected = await failure(b.infer(batch));
    expect(rejected.code).toBe(Code.Internal);
    expect(rejected.rawMessage).toBe(
      "triton rejected the request: onnx runtime error 6: CUDA out of memory",
    );
    expect(await b.ready()).toBe(true); // a rejected request says nothing about Triton's health
    double.faults.reject = undefined;

    double.faults.unloaded.add("tiny8");
    const unloaded = await failure(b.infer(batch));
    expect(unloaded.code).toBe(Code.Unavailable);
    expect(unloaded.rawMessage).toContain("'tiny8' has no available versions");
    expect(await b.ready()).toBe(false);
    expect(b.notReadyReason()).toMatch(/tiny8/);
    double.faults.unloaded.clear();
    await vi.waitUntil(() => b.ready(), { timeout: 2000, interval: 20 });
    expect((await b.infer(batch)).length).toBe(512);
  });

  it("says Triton is unreachable while it is down, and comes back by itself, shm re-registered", async () => {
    const b = backend({ shm: true });
    await b.start();
    const batch = { layout: "uint8-nhwc" as const, data: images(2, 9), count: 2 };
    await b.infer(batch);
    await double.kill();
    const down = await failure(b.infer(batch));
    expect(down.code).toBe(Code.Unavailable);
    expect(down.rawMessage).toMatch(/triton unreachable at 127\.0\.0\.1:\d+/);
    await vi.waitUntil(async () => !(await b.ready()), { timeout: 2000, interval: 20 });
    await double.revive();
    const t0 = performance.now();
    await vi.waitUntil(() => b.ready(), { timeout: 3000, interval: 20 });
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(double.regions().size).toBeGreaterThan(0); // a restarted Triton forgot them: registered again
    double.requests.length = 0;
    const out = await b.infer(batch);
    expect(maxAbsDiff(out, await expected(batch.data, 2))).toBeLessThanOrEqual(1e-5);
    expect(double.requests.every((r) => r.viaShm)).toBe(true);
  });

  it("refuses to start on a model Triton does not have, naming it", async () => {
    const b = backend({ model: "no_such_model", startTimeoutMs: 300 });
    await expect(b.start()).rejects.toThrow(
      /triton model 'no_such_model' is not ready at 127\.0\.0\.1:\d+ \(gave up after 300 ms/,
    );
  });

  it("is not ready while Triton says it is not, with that reason", async () => {
    const b = backend();
    await b.start();
    double.faults.serverNotReady = true;
    try {
      await vi.waitUntil(async () => !(await b.ready()), { timeout: 2000, interval: 20 });
      expect(b.notReadyReason()).toMatch(/^triton at 127\.0\.0\.1:\d+ is not ready$/);
    } finally {
      double.faults.serverNotReady = false;
    }
    await vi.waitUntil(() => b.ready(), { timeout: 2000, interval: 20 });
  });

  it("polls ModelStatistics by itself when asked to", async () => {
    const b = backend({ statsIntervalMs: 50 });
    await b.start();
    await b.infer({ layout: "uint8-nhwc", data: images(1, 1), count: 1 });
    await vi.waitUntil(() => (b.stats()?.window?.requests ?? 0) >= 0 && b.stats()?.window, {
      timeout: 2000,
      interval: 20,
    });
    expect(b.stats()?.model).toBe("tiny8");
  });

  it("reports Triton's time per inference from ModelStatistics", async () => {
    const b = backend();
    await b.start();
    const first = await b.refreshStats();
    for (let i = 0; i < 5; i++)
      await b.infer({ layout: "uint8-nhwc", data: images(2, i), count: 2 });
    const stats = await b.refreshStats();
    expect(first).toBeDefined();
    expect(stats?.window).toMatchObject({ requests: 5, inferences: 10 });
    expect(stats?.window?.perInferenceUs?.computeInfer).toBeGreaterThan(0);
    expect(stats?.window?.perInferenceUs?.queue).toBeGreaterThanOrEqual(0);
    expect(b.stats()).toBe(stats);
  });
});
