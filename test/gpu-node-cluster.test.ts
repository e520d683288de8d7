// The multi-process gpu-node (node:cluster) as the CLI runs it, with more processes than this
// machine has cores: no embedding ever reaches another image under 64 concurrent calls, a worker
// killed with SIGKILL fails only its own calls (cleanly) and is replaced, SIGTERM drains every
// process, and the primary's /metrics adds up the workers'.
import { once } from "node:events";
import { readdirSync } from "node:fs";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Backend } from "../gpu-node/backends/backend.ts";
import { createNoopBackend } from "../gpu-node/backends/noop.ts";
import { SHM_PREFIX } from "../gpu-node/backends/triton/shm.ts";
import { testConfig } from "../gpu-node/config.ts";
import { type GpuNode, startGpuNode } from "../gpu-node/node.ts";
import {
  cosine,
  embedderClient,
  maxAbsDiff,
  metricValue,
  type Protocol,
  toFloats,
} from "./support/gpu-node-client.ts";
import { photo } from "./support/images.ts";
import { startKServeDouble, tinyModelFiles } from "./support/kserve-double.ts";
import { type GpuNodeProcess, type LogLine, spawnGpuNode } from "./support/processes.ts";
import { until } from "./support/wait.ts";

const PROTOCOLS: Protocol[] = ["grpc", "connect-h1", "connect-h2", "grpc-web"];

type Log = LogLine;

interface Cli extends GpuNodeProcess {
  readonly metricsUrl: string;
  /** Pid of each worker slot now, from the "worker listening" lines. */
  workers(): Map<number, number>;
}

const started: GpuNodeProcess[] = [];

/** The CLI with its metrics on a free port (the primary's merged /metrics is read below). */
async function startCli(args: string[]): Promise<Cli> {
  const node = await spawnGpuNode(["--metrics-port", "0", ...args], { metrics: true });
  started.push(node);
  return {
    ...node,
    metricsUrl: node.ready.metricsUrl as string,
    workers() {
      const pids = new Map<number, number>();
      for (const l of node.logs)
        if (l.msg === "worker listening") pids.set(l.worker as number, l.pid as number);
      return pids;
    },
  };
}

afterAll(() => {
  for (const node of started) if (node.alive()) node.child.kill("SIGKILL");
});

/** One call per connection (a fresh client each time), so that calls spread over the workers. */
async function embed(url: string, data: Buffer[], k: number): Promise<Float32Array[]> {
  const res = await embedderClient(url, PROTOCOLS[k % PROTOCOLS.length]).embed(
    { images: data.map((d, i) => ({ id: `c${k}-${i}`, data: d })) },
    { timeoutMs: 60_000 },
  );
  expect(res.embeddings.map((e) => e.id)).toEqual(data.map((_, i) => `c${k}-${i}`));
  return res.embeddings.map((e) => toFloats(e.vector));
}

/** Reference vectors from a single-process node, one image per call. */
async function referenceVectors(node: GpuNode, images: Buffer[]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const img of images) out.push((await embed(node.url, [img], 0))[0]!);
  return out;
}

/** Each vector is its own image's reference, and no other image's is closer. */
function expectOwn(v: Float32Array, i: number, refs: Float32Array[]) {
  expect(maxAbsDiff(v, refs[i]!)).toBeLessThanOrEqual(1e-5);
  let best = 0;
  for (let j = 1; j < refs.length; j++) if (cosine(v, refs[j]!) > cosine(v, refs[best]!)) best = j;
  expect(best).toBe(i);
}

/** 64 concurrent calls over their own connections; every fourth carries three images. */
async function noCrossTalk(url: string, images: Buffer[], refs: Float32Array[]) {
  const n = images.length;
  await Promise.all(
    Array.from({ length: 64 }, async (_, k) => {
      const which = k % 4 === 3 ? [k % n, (k + 1) % n, (k + 2) % n] : [k % n];
      const vectors = await embed(
        url,
        which.map((i) => images[i]!),
        k,
      );
      for (const [j, v] of vectors.entries()) expectOwn(v, which[j]!, refs);
    }),
  );
}

/**
 * Waits until all `n` calls have reached the workers: in flight now (the primary's /metrics) or
 * already answered (`done()`). On a loaded machine the first ones may finish before the last
 * start, and a worker too busy to answer the primary's metrics request in time is left out of
 * that reading: so this polls until the count adds up, with no deadline of its own (a call that
 * never arrives fails by its own deadline, or the test by vitest's timeout).
 */
async function allInFlight(node: Cli, n: number, done: () => number = () => 0): Promise<void> {
  await until(async () => {
    const inFlight = await metricValue(node.metricsUrl, "gpu_node_in_flight_calls");
    return (Number.isNaN(inFlight) ? 0 : inFlight) + done() >= n;
  });
}

/** The "worker listening" line of the process that replaced worker `pid` (killed). */
async function replacementOf(node: Cli, pid: number): Promise<Log> {
  const exit = await node.waitFor(
    (l) => l.msg === "worker exited: starting a replacement" && l.pid === pid,
  );
  const after = node.logs.indexOf(exit);
  return node.waitFor(
    (l) => l.msg === "worker listening" && l.worker === exit.worker && node.logs.indexOf(l) > after,
  );
}

/**
 * The workers that logged a "call", once at least `n` have: the log lines come through a pipe,
 * apart from the answers, so they may arrive after the calls returned.
 */
async function servedBy(node: Cli, n: number): Promise<Set<unknown>> {
  const served = () => new Set(node.logs.filter((l) => l.msg === "call").map((l) => l.worker));
  await node.waitFor(() => served().size >= n);
  return served();
}

describe("multi-process gpu-node, onnxruntime: the model and its batcher in the primary", () => {
  let node: Cli;
  let single: GpuNode;
  let images: Buffer[];
  let refs: Float32Array[];

  beforeAll(async () => {
    [node, single, images] = await Promise.all([
      startCli(["--processes", "3", "--model", "vit-tiny", "--threads", "1"]),
      startGpuNode(testConfig({ port: 0, model: "vit-tiny", threads: 1 })),
      Promise.all(Array.from({ length: 64 }, (_, i) => photo(200 + i, 180 + (i % 7) * 9, 500 + i))),
    ]);
    refs = await referenceVectors(single, images);
  });
  afterAll(() => single?.close());

  it("never returns an embedding for another image: 64 concurrent calls over 3 processes", async () => {
    const before = await metricValue(
      node.metricsUrl,
      'gpu_node_calls_total{method="Embed",code="ok"}',
    );
    await noCrossTalk(node.url, images, refs);
    expect((await servedBy(node, 2)).size).toBeGreaterThanOrEqual(2);
    // The primary's /metrics is the sum over the workers (and the batches it ran itself).
    const after = await metricValue(
      node.metricsUrl,
      'gpu_node_calls_total{method="Embed",code="ok"}',
    );
    expect(after - (Number.isNaN(before) ? 0 : before)).toBe(64);
    expect(await metricValue(node.metricsUrl, "gpu_node_batch_size_sum")).toBeGreaterThanOrEqual(
      64 + 16 * 2,
    );
    const dashboard = (await (await fetch(`${node.metricsUrl}/dashboard/data.json`)).json()) as {
      totals: { calls: number };
    };
    expect(dashboard.totals.calls).toBe(after);
  });

  it("a worker killed with SIGKILL fails its own calls cleanly, is replaced, and the node serves again", async () => {
    const big = await Promise.all(
      Array.from({ length: 8 }, (_, i) => photo(2000, 1500, 40 + i, "jpeg", 60)),
    );
    const bigRefs = await referenceVectors(single, big);
    // Which worker gets which connection, and how fast each call goes, is up to the scheduler: on
    // a loaded machine a worker may get none of a round's calls or finish its own before the last
    // one arrives. A round whose kill hit no call in flight proves nothing, so it is repeated
    // (with the replacement as the next victim) until one does.
    let victim = node.workers().get(0)!;
    let results: string[] = [];
    for (let round = 0; !results.some((r) => r !== "ok"); round++) {
      if (round > 0) victim = (await replacementOf(node, victim)).pid as number;
      let answered = 0;
      const outcomes = Array.from({ length: 12 }, (_, k) =>
        embed(node.url, big, k)
          .then(
            (vs) => {
              for (const [j, v] of vs.entries()) {
                expect(maxAbsDiff(v, bigRefs[j]!)).toBeLessThanOrEqual(1e-5);
              }
              return "ok";
            },
            (e: unknown) => {
              const ce = ConnectError.from(e);
              return `${Code[ce.code]}: ${ce.rawMessage}`;
            },
          )
          .finally(() => answered++),
      );
      await allInFlight(node, 12, () => answered); // every call has reached a worker
      process.kill(victim, "SIGKILL");
      // A hang fails by the calls' own deadline (DeadlineExceeded matches none of the codes below).
      results = await Promise.all(outcomes);
    }
    const failed = results.filter((r) => r !== "ok");
    expect(failed.length).toBeGreaterThan(0);
    // A process killed with SIGKILL answers nothing: its clients see their connection drop, in
    // connect-node's words "socket hang up" (HTTP/1.1, Aborted) or an HTTP/2 stream reset
    // (Canceled); fetch-based clients such as the edge see a network error (Unknown) and fail
    // over. Never a server-made answer, a wrong vector or a hang.
    for (const outcome of failed) {
      expect(outcome).toMatch(
        /^(Aborted: socket hang up|Canceled: http\/2 stream closed with error code CANCEL \(0x8\)|Unavailable: .*|Internal: .*(socket|stream|session|connection).*)$/,
      );
    }
    expect(results.filter((r) => r === "ok").length).toBeGreaterThan(0);

    const replaced = await replacementOf(node, victim);
    // Serves again, the replacement included: rounds of calls (spread over connections) until
    // its log shows one answered. Its log line and our answer travel apart (a pipe and a socket),
    // so this waits for the line rather than reading the log right after each round.
    let servedByReplacement = false;
    void node
      .waitFor((l) => l.msg === "call" && l.pid === replaced.pid && l.code === "ok")
      .then(
        () => {
          servedByReplacement = true;
        },
        () => {}, // keeps calling until vitest's timeout says what is missing
      );
    while (!servedByReplacement) {
      await Promise.all(
        Array.from({ length: 12 }, async (_, k) =>
          expectOwn((await embed(node.url, [images[k]!], k))[0]!, k, refs),
        ),
      );
    }
    // Nothing of the dead worker's stayed queued in the primary's batcher.
    expect(await metricValue(node.metricsUrl, "gpu_node_queued_images")).toBe(0);
    const ready = await fetch(`${node.url}/readyz`);
    expect(ready.status).toBe(200);
  });
});

describe("multi-process gpu-node, noop backend: a backend per worker", () => {
  it("never returns an embedding for another image: 64 concurrent calls over 2 processes", async () => {
    const [node, single, images] = await Promise.all([
      startCli(["--processes", "2", "--backend", "noop"]),
      startGpuNode(testConfig({ port: 0, backend: "noop" })),
      Promise.all(Array.from({ length: 64 }, (_, i) => photo(260 + i, 240, 900 + i))),
    ]);
    try {
      const refs = await referenceVectors(single, images);
      await noCrossTalk(node.url, images, refs);
      expect((await servedBy(node, 2)).size).toBe(2);
    } finally {
      await single.close();
      node.child.kill("SIGKILL");
    }
  });

  it("drains every process on SIGTERM: calls in flight complete, then all exit 0", async () => {
    const node = await startCli(["--processes", "2", "--backend", "noop"]);
    const workers = [...node.workers().values()];
    expect(workers).toHaveLength(2);
    const big = await Promise.all(
      Array.from({ length: 16 }, (_, i) => photo(2000, 1500, 70 + i, "jpeg", 60)),
    );
    let answered = 0;
    const calls = Array.from({ length: 8 }, (_, k) =>
      embed(node.url, big, k).then((r) => {
        answered++;
        return r;
      }),
    );
    // Calls that arrive after SIGTERM are refused (Unavailable): signal once all are in.
    await allInFlight(node, 8, () => answered);
    const exited = once(node.child, "exit");
    node.child.kill("SIGTERM");
    const results = await Promise.all(calls);
    expect(results.every((r) => r.length === 16)).toBe(true);
    const [code] = await exited;
    expect(code).toBe(0);
    const draining = node.logs.find((l) => l.msg === "draining")!;
    const perWorker = node.logs.filter((l) => l.msg === "worker draining");
    expect(perWorker).toHaveLength(2);
    expect(draining.inFlight).toBe(perWorker.reduce((n, l) => n + (l.inFlight as number), 0));
    expect(draining.inFlight).toBeGreaterThan(0);
    expect(node.logs.filter((l) => l.msg === "stopped")).toHaveLength(3);
    for (const pid of workers) expect(() => process.kill(pid, 0)).toThrow(/ESRCH/);
    await expect(fetch(`${node.url}/healthz`)).rejects.toThrow();
  });
});

describe("multi-process gpu-node, triton backend: a Triton client per worker", () => {
  it("gives ONNX Runtime's vectors from every worker; a killed worker's /dev/shm files are removed", async () => {
    const files = await tinyModelFiles(testConfig().cacheDir);
    const double = await startKServeDouble({
      models: [
        {
          name: "openclip_vit_b32_uint8",
          path: files.uint8,
          layout: "uint8-nhwc",
          maxBatchSize: 32,
        },
      ],
    });
    const [node, single, images] = await Promise.all([
      startCli([
        "--processes",
        "2",
        "--backend",
        "triton",
        "--triton-url",
        double.url,
        "--triton-shm",
        "--triton-stats-interval-ms",
        "0",
        "--drain-timeout-ms",
        "500",
      ]),
      startGpuNode(testConfig({ port: 0, model: files.uint8, threads: 1 })),
      Promise.all(Array.from({ length: 16 }, (_, i) => photo(250 + i, 230, 300 + i))),
    ]);
    const shmOf = (pid: number) =>
      readdirSync("/dev/shm").filter((f) => f.startsWith(`${SHM_PREFIX}-${pid}-`));
    try {
      const refs = await referenceVectors(single, images);
      await Promise.all(
        Array.from({ length: 32 }, async (_, k) => {
          const [v] = await embed(node.url, [images[k % 16]!], k);
          expect(maxAbsDiff(v!, refs[k % 16]!)).toBeLessThanOrEqual(1e-5);
        }),
      );
      expect((await servedBy(node, 2)).size).toBe(2);
      const pids = [...node.workers().values()];
      for (const pid of pids) expect(shmOf(pid).length).toBeGreaterThan(0);
      process.kill(pids[0]!, "SIGKILL");
      await node.waitFor((l) => l.msg === "worker exited: starting a replacement");
      expect(shmOf(pids[0]!)).toEqual([]);
      const exited = once(node.child, "exit");
      node.child.kill("SIGTERM");
      expect((await exited)[0]).toBe(0);
      expect(
        readdirSync("/dev/shm").filter(
          (f) => f.startsWith(`${SHM_PREFIX}-`) && pids.some((p) => f.includes(`-${p}-`)),
        ),
      ).toEqual([]);
    } finally {
      node.child.kill("SIGKILL");
      await single.close();
      await double.close();
    }
  });
});

describe("multi-process gpu-node started in-process (startGpuNode, processes 2)", () => {
  it("keeps an injected backend in this process; a deadline takes the call's images out of its queue", async () => {
    let batches = 0;
    // The backend holds its first batch until the test lets it go: "busy" is a state the test
    // controls, not a duration that a loaded machine might outlast.
    let busy!: () => void;
    const entered = new Promise<void>((r) => {
      busy = r;
    });
    let release!: () => void;
    const released = new Promise<void>((r) => {
      release = r;
    });
    const inner = createNoopBackend(32);
    const slow: Backend = {
      start: () => inner.start(),
      ready: () => inner.ready(),
      close: () => inner.close(),
      async infer(batch) {
        batches++;
        busy();
        await released;
        return inner.infer(batch);
      },
    };
    const node = await startGpuNode(
      testConfig({ port: 0, processes: 2, maxBatchSize: 1, maxBatchWaitMs: 0 }),
      { backend: slow },
    );
    try {
      const img = await photo(64, 64, 2);
      const first = embed(node.url, [img], 0);
      await entered;
      expect(batches).toBe(1); // the backend is now busy until released
      const late = embedderClient(node.url, "grpc").embed(
        {
          images: [
            { id: "", data: img },
            { id: "", data: img },
          ],
        },
        { timeoutMs: 150 },
      );
      await expect(late).rejects.toMatchObject({ code: Code.DeadlineExceeded });
      // Our deadline fired here; the server's fires on its own clock: let the backend go only
      // once the worker has let go of the late call's images and the primary queues none.
      const metricsUrl = node.metricsUrl!;
      await until(
        async () =>
          (await metricValue(metricsUrl, "gpu_node_admitted_images")) <= 1 &&
          (await metricValue(metricsUrl, "gpu_node_queued_images")) === 0,
      );
      release();
      await first;
      // The batcher is first in, first out: had the timed-out images stayed queued, they would
      // reach the backend before this call's image.
      await embed(node.url, [img], 1);
      expect(batches).toBe(2); // the timed-out images never reached the backend
      expect(await node.ready()).toBe(true);
    } finally {
      release();
      await node.close();
    }
  });
});
