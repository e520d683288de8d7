// Triton failing under a real gpu-node (--backend triton): killed mid-load (in process and as a
// real process, SIGKILL), stalled, model unloaded. The gpu-node stays up, answers honestly
// (Unavailable / DeadlineExceeded), turns /readyz false, and serves again by itself.
import type { ChildProcess } from "node:child_process";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type Config, testConfig } from "../gpu-node/config.ts";
import { type GpuNode, startGpuNode } from "../gpu-node/node.ts";
import { countBy, recordFigures } from "./reliability/figures.ts";
import { embedderClient, maxAbsDiff, toFloats } from "./support/gpu-node-client.ts";
import { photo } from "./support/images.ts";
import { type KServeDouble, startKServeDouble, tinyModelFiles } from "./support/kserve-double.ts";
import { closedLoop } from "./support/load.ts";
import { spawnKServeDouble } from "./support/processes.ts";

const MODEL = "openclip_vit_b32_uint8";
let files: { uint8: string; float32: string };
let images: Buffer[];
let reference: Float32Array[];

beforeAll(async () => {
  files = await tinyModelFiles(testConfig().cacheDir);
  images = await Promise.all(Array.from({ length: 6 }, (_, i) => photo(256, 240 + 8 * i, 70 + i)));
  const ort = await startGpuNode(
    testConfig({ port: 0, model: files.uint8, threads: 1, drainTimeoutMs: 200 }),
  );
  try {
    const res = await embedderClient(ort.url, "grpc").embed({
      images: images.map((data) => ({ id: "", data })),
    });
    reference = res.embeddings.map((e) => toFloats(e.vector));
  } finally {
    await ort.close();
  }
});

const tritonConfig = (url: string, overrides: Partial<Config> = {}): Config =>
  testConfig({
    port: 0,
    backend: "triton",
    tritonUrl: url,
    tritonModel: MODEL,
    tritonHealthIntervalMs: 200,
    tritonStatsIntervalMs: 0,
    drainTimeoutMs: 300,
    ...overrides,
  });

const readyz = async (node: GpuNode) => (await fetch(`${node.url}/readyz`)).status;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Outcome {
  readonly i: number;
  readonly t0: number;
  readonly ms: number;
  readonly code: Code | "ok";
  readonly message?: string;
  readonly vector?: Float32Array;
}

/** `workers` callers embedding one image at a time until `stop()`; every outcome recorded. */
function load(node: GpuNode, workers: number, deadlineMs: number) {
  const client = embedderClient(node.url, "grpc");
  const outcomes: Outcome[] = [];
  const loop = closedLoop({
    workers,
    async call({ worker, k }) {
      const i = (worker + k) % images.length;
      const t0 = performance.now();
      try {
        const res = await client.embed(
          { images: [{ id: String(i), data: images[i]! }] },
          { timeoutMs: deadlineMs },
        );
        outcomes.push({
          i,
          t0,
          ms: performance.now() - t0,
          code: "ok",
          vector: toFloats(res.embeddings[0]!.vector),
        });
      } catch (err) {
        const ce = ConnectError.from(err);
        outcomes.push({ i, t0, ms: performance.now() - t0, code: ce.code, message: ce.rawMessage });
        await sleep(10);
      }
    },
  });
  return {
    outcomes,
    async stop() {
      await loop.stop();
      return outcomes;
    },
  };
}

/** Every answer is the right one for its image; every failure is Unavailable, within the deadline. */
function checkOutcomes(outcomes: readonly Outcome[], deadlineMs: number) {
  let verified = 0;
  for (const o of outcomes) {
    if (o.code === "ok") {
      expect(maxAbsDiff(o.vector!, reference[o.i]!), `image ${o.i}`).toBeLessThanOrEqual(1e-5);
      verified++;
    } else {
      expect(Code[o.code], o.message).toBe("Unavailable");
      expect(o.message).toMatch(/^triton (unreachable at 127\.0\.0\.1:\d+|model .* not available)/);
      expect(o.ms).toBeLessThan(deadlineMs);
    }
  }
  return {
    calls: outcomes.length,
    byCode: countBy(outcomes, (o) => (o.code === "ok" ? "ok" : Code[o.code])),
    verified,
    misrouted: 0,
  };
}

describe("triton faults under a running gpu-node", () => {
  let double: KServeDouble;
  beforeAll(async () => {
    double = await startKServeDouble({
      models: [{ name: MODEL, path: files.uint8, layout: "uint8-nhwc", maxBatchSize: 8 }],
    });
  });
  afterAll(() => double?.close());

  it("Triton killed mid-load (shared memory on): Unavailable within the deadline, not ready, then serving again within 2 s of its return", async ({
    task,
  }) => {
    const node = await startGpuNode(tritonConfig(double.url, { tritonShm: true }));
    try {
      const deadlineMs = 1500;
      const run = load(node, 6, deadlineMs);
      await vi.waitUntil(() => run.outcomes.filter((o) => o.code === "ok").length >= 20, {
        timeout: 10_000,
      });
      await double.kill();
      const killedAt = performance.now();
      await vi.waitUntil(async () => (await readyz(node)) === 503, { timeout: 2000, interval: 20 });
      expect(performance.now() - killedAt).toBeLessThan(1000);
      expect((await fetch(`${node.url}/healthz`)).status).toBe(200);
      // Calls keep failing fast while Triton is away: for a while, and at least until one did.
      await Promise.all([
        sleep(400),
        vi.waitUntil(() => run.outcomes.some((o) => /triton/.test(o.message ?? "")), {
          timeout: 30_000,
          interval: 10,
        }),
      ]);
      await double.revive();
      const revivedAt = performance.now();
      await vi.waitUntil(async () => (await readyz(node)) === 200, { timeout: 3000, interval: 20 });
      const readyMs = performance.now() - revivedAt;
      expect(readyMs).toBeLessThan(2000);
      // Serving again: for a while, and at least until the calls asserted below are in.
      await Promise.all([
        sleep(300),
        vi.waitUntil(
          () => run.outcomes.filter((o) => o.code === "ok" && o.t0 > revivedAt + 100).length > 3,
          { timeout: 30_000, interval: 10 },
        ),
      ]);
      const outcomes = await run.stop();
      const checked = checkOutcomes(outcomes, deadlineMs);
      recordFigures(task, {
        section: "fault",
        title: "Triton (KServe double, in process) killed mid-load and revived, shared memory on",
        target: "gpu-node (triton backend), 6 callers",
        data: { ...checked, readyAfterRevivalMs: Math.round(readyMs) },
      });
      const failed = outcomes.filter((o) => o.code !== "ok");
      expect(failed.length).toBeGreaterThan(0);
      expect(failed.some((o) => /triton/.test(o.message ?? ""))).toBe(true);
      expect(
        outcomes.filter((o) => o.code === "ok" && o.t0 > revivedAt + 100).length,
      ).toBeGreaterThan(3);
      expect(double.regions().size).toBeGreaterThan(0); // registered again after the restart
      expect(double.requests.filter((r) => r.outcome === "ok").every((r) => r.viaShm)).toBe(true);
    } finally {
      await node.close();
    }
  });

  it("a stalled Triton: callers get DeadlineExceeded at their deadline, the queue drains, readiness follows", async () => {
    const node = await startGpuNode(
      tritonConfig(double.url, { tritonTimeoutMs: 800, tritonConcurrency: 2 }),
    );
    try {
      double.faults.stall = true;
      const client = embedderClient(node.url, "grpc");
      const calls = Array.from({ length: 8 }, async (_, k) => {
        const t0 = performance.now();
        const err = await client
          .embed({ images: [{ id: "", data: images[k % images.length]! }] }, { timeoutMs: 300 })
          .then(
            () => undefined,
            (e: unknown) => ConnectError.from(e),
          );
        return { code: err?.code, ms: performance.now() - t0 };
      });
      for (const r of await Promise.all(calls)) {
        expect(r.code).toBe(Code.DeadlineExceeded);
        expect(r.ms).toBeLessThan(700);
      }
      // Nothing of those calls is left waiting in the gpu-node.
      await vi.waitUntil(() => node.inFlight() === 0, { timeout: 500, interval: 10 });
      // Triton's own deadline (800 ms) passes on the stuck requests: the node stops claiming readiness.
      await vi.waitUntil(async () => (await readyz(node)) === 503, { timeout: 2000, interval: 20 });
      double.faults.stall = false;
      double.releaseStall();
      const t0 = performance.now();
      await vi.waitUntil(async () => (await readyz(node)) === 200, { timeout: 3000, interval: 20 });
      expect(performance.now() - t0).toBeLessThan(2000);
      const res = await client.embed(
        { images: [{ id: "", data: images[1]! }] },
        { timeoutMs: 2000 },
      );
      expect(maxAbsDiff(toFloats(res.embeddings[0]!.vector), reference[1]!)).toBeLessThanOrEqual(
        1e-5,
      );
    } finally {
      double.faults.stall = false;
      double.releaseStall();
      await node.close();
    }
  });

  it("the model unloaded: Unavailable naming it, /readyz 503, back when it is loaded again", async () => {
    const node = await startGpuNode(tritonConfig(double.url));
    try {
      const client = embedderClient(node.url, "grpc");
      double.faults.unloaded.add(MODEL);
      const err = await client.embed({ images: [{ id: "", data: images[0]! }] }).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      expect(err?.code).toBe(Code.Unavailable);
      expect(err?.rawMessage).toContain(`'${MODEL}'`);
      await vi.waitUntil(async () => (await readyz(node)) === 503, { timeout: 2000, interval: 20 });
      double.faults.unloaded.delete(MODEL);
      await vi.waitUntil(async () => (await readyz(node)) === 200, { timeout: 2000, interval: 20 });
      expect(
        (await client.embed({ images: [{ id: "", data: images[0]! }] })).embeddings.length,
      ).toBe(1);
    } finally {
      double.faults.unloaded.clear();
      await node.close();
    }
  });
});

/** The double as its own process, as Triton is: it can be SIGKILLed for real. */
const spawnDouble = (port: number) =>
  spawnKServeDouble({ name: MODEL, path: files.uint8, maxBatch: 8 }, { port });

describe("triton as a separate process, killed with SIGKILL", () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    child?.kill("SIGKILL");
  });

  it("the gpu-node stays up, not ready, and serves again within 2 s of Triton's return, without a restart", async ({
    task,
  }) => {
    const first = await spawnDouble(0);
    child = first.child;
    const node = await startGpuNode(tritonConfig(`127.0.0.1:${first.port}`));
    try {
      const deadlineMs = 2000;
      const run = load(node, 4, deadlineMs);
      await vi.waitUntil(() => run.outcomes.filter((o) => o.code === "ok").length >= 10, {
        timeout: 10_000,
      });
      child.kill("SIGKILL");
      await vi.waitUntil(async () => (await readyz(node)) === 503, { timeout: 2000, interval: 20 });
      // A caller has felt it (asserted below) before Triton returns.
      await vi.waitUntil(() => run.outcomes.some((o) => o.code !== "ok"), {
        timeout: 30_000,
        interval: 10,
      });
      child = (await spawnDouble(first.port)).child;
      const backAt = performance.now();
      await vi.waitUntil(async () => (await readyz(node)) === 200, { timeout: 3000, interval: 20 });
      expect(performance.now() - backAt).toBeLessThan(2000);
      // Serving again: for a while, and at least until a call asserted below is in.
      await Promise.all([
        sleep(300),
        vi.waitUntil(() => run.outcomes.some((o) => o.code === "ok" && o.t0 > backAt), {
          timeout: 30_000,
          interval: 10,
        }),
      ]);
      const outcomes = await run.stop();
      recordFigures(task, {
        section: "fault",
        title: "Triton (KServe double process) SIGKILLed mid-load and restarted",
        target: "gpu-node (triton backend), 4 callers",
        data: checkOutcomes(outcomes, deadlineMs),
      });
      expect(outcomes.some((o) => o.code !== "ok")).toBe(true);
      expect(outcomes.filter((o) => o.code === "ok" && o.t0 > backAt).length).toBeGreaterThan(0);
    } finally {
      await node.close();
    }
  });
});
