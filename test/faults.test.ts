// Faults under load on the real path, client → edge Worker (workerd) → gpu-node(s) → backend:
//  1. the Triton stand-in (KServe v2 double, its own process) SIGKILLed mid-load and restarted;
//  2. the same backend stalled (SIGSTOP: connections open, no answers) — deadlines fire, the edge
//     answers 504 quickly, the stalled calls leave the gpu-node, and all resumes after SIGCONT;
//  3. one of two gpu-node processes SIGKILLed mid-load — the edge fails over, no client request fails;
//  4. a gpu-node SIGTERMed mid-load — it drains what is in flight, refuses new work, exits 0;
//  5. no gpu-node reachable — a clean 503 with Retry-After and /readyz false, ready again < 2 s
//     after one returns.
// Under every fault, every embedding returned is checked against the reference for its image.
import { createHash } from "node:crypto";
import { createServer } from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testConfig } from "../gpu-node/config.ts";
import { type GpuNode, startGpuNode } from "../gpu-node/node.ts";
import { recordFigures } from "./reliability/figures.ts";
import { type EdgeWorker, startEdge } from "./support/edge-worker.ts";
import { embedderClient, metricValue } from "./support/gpu-node-client.ts";
import { photo } from "./support/images.ts";
import { tinyModelFiles } from "./support/kserve-double.ts";
import { type EdgeOutcome, startEdgeLoad, type Verified, verifyOutcomes } from "./support/load.ts";
import {
  type GpuNodeProcess,
  type KServeDoubleProcess,
  spawnGpuNode,
  spawnKServeDouble,
} from "./support/processes.ts";
import { statusOf, until } from "./support/wait.ts";

const KEY = "faults-key-4e21";
const TOKEN = "faults-token-aa93";
const MODEL = "openclip_vit_b32_uint8";
const keyHash = createHash("sha256").update(KEY).digest("hex");
/** The Worker logs every 5xx these faults provoke: kept out of the test output. */
const QUIET = { logLevel: "none" } as const;

let images: Buffer[];
beforeAll(async () => {
  images = await Promise.all(Array.from({ length: 6 }, (_, i) => photo(320, 240, 200 + i)));
});

/** The reference embedding of each image through `edge`, one at a time, before any fault. */
async function referencesVia(edge: EdgeWorker): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const body of images) {
    const res = await fetch(`${edge.url}/v1/embeddings`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY}`, "content-type": "image/jpeg" },
      body,
    });
    expect(res.status).toBe(200);
    const json = (await res.json()) as { data: { embedding: number[] }[] };
    out.push(Float32Array.from(json.data[0]!.embedding));
  }
  return out;
}

/** The edge Worker in front of `urls`, with this file's key and token, quiet. */
const edgeBefore = (urls: string[], deadlineMs: number) =>
  startEdge(
    {
      GPU_NODE_URLS: urls.join(","),
      GPU_NODE_TOKEN: TOKEN,
      GPU_NODE_TIMEOUT_MS: String(deadlineMs),
      API_KEY_HASHES: keyHash,
    },
    QUIET,
  );

/** Polls `${baseUrl}/readyz` every 20 ms until it answers `status`: the ms that took. */
const readyzAnswers = (baseUrl: string, status: number, timeoutMs: number) =>
  until(async () => (await statusOf(`${baseUrl}/readyz`)) === status, { timeoutMs, everyMs: 20 });

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every 200 is its own image's embedding; every failure is one of `allowed`, answered in time. */
function expectClean(
  outcomes: readonly EdgeOutcome[],
  references: readonly Float32Array[],
  allowed: readonly number[],
  deadlineMs: number,
): Verified {
  const v = verifyOutcomes(outcomes, references);
  expect(v.misrouted, JSON.stringify(v)).toBe(0);
  expect(v.verified).toBe(v.byStatus["200"] ?? 0);
  for (const o of outcomes) {
    if (o.status === 200) continue;
    expect(allowed, `image ${o.i}: ${o.status} ${o.errorCode}`).toContain(o.status);
    expect(o.ms, `a ${o.status} after ${o.ms} ms`).toBeLessThan(deadlineMs);
    if (o.status === 503) expect(o.retryAfter).toMatch(/^\d+$/);
  }
  return v;
}

describe("backend faults behind the edge (gpu-node --backend triton, KServe double as a process)", () => {
  const DEADLINE_MS = 1500;
  const TRITON_TIMEOUT_MS = 1000;
  let files: { uint8: string };
  let double: KServeDoubleProcess;
  let gpu: GpuNode;
  let edge: EdgeWorker;
  let references: Float32Array[];

  beforeAll(async () => {
    files = await tinyModelFiles(testConfig().cacheDir);
    double = await spawnKServeDouble({ name: MODEL, path: files.uint8 });
    gpu = await startGpuNode(
      testConfig({
        port: 0,
        backend: "triton",
        tritonUrl: `127.0.0.1:${double.port}`,
        tritonModel: MODEL,
        tritonTimeoutMs: TRITON_TIMEOUT_MS,
        tritonHealthIntervalMs: 200,
        tritonStatsIntervalMs: 0,
        token: TOKEN,
        drainTimeoutMs: 500,
      }),
    );
    edge = await edgeBefore([gpu.url], DEADLINE_MS);
    references = await referencesVia(edge);
  }, 120_000);

  afterAll(async () => {
    double?.child.kill("SIGCONT");
    double?.child.kill("SIGKILL");
    await edge?.dispose();
    await gpu?.close();
  });

  it("the backend SIGKILLed mid-load and restarted: 200s are right, failures are clean 503s, ready again within 2 s", async ({
    task,
  }) => {
    const load = startEdgeLoad({ url: edge.url, apiKey: KEY, images, workers: 4 });
    await until(() => load.ok() >= 15, { timeoutMs: 15_000 });
    double.child.kill("SIGKILL");
    await double.exited;
    const downMs = await readyzAnswers(gpu.url, 503, 2000);
    const edgeDownMs = await readyzAnswers(edge.url, 503, 3000);
    // Down for a while, and at least until a client has felt it (asserted below).
    await Promise.all([
      sleep(300),
      until(() => load.outcomes.some((o) => o.status === 503), { timeoutMs: 30_000 }),
    ]);
    double = await spawnKServeDouble({ name: MODEL, path: files.uint8 }, { port: double.port });
    const backMs = await readyzAnswers(gpu.url, 200, 2000);
    const edgeBackMs = await readyzAnswers(edge.url, 200, 2000);
    const okBefore = load.ok();
    await until(() => load.ok() >= okBefore + 10, { timeoutMs: 10_000 });
    const outcomes = await load.stop();
    const v = expectClean(outcomes, references, [503], DEADLINE_MS + 500);
    expect(v.byStatus["503"] ?? 0).toBeGreaterThan(0); // the fault was felt
    recordFigures(task, {
      section: "fault",
      title: "Triton (KServe double process) SIGKILLed mid-load, restarted on its port",
      target: "edge Worker → gpu-node (triton backend) → double",
      data: {
        ...v,
        gpuNodeNotReadyAfterMs: Math.round(downMs),
        edgeNotReadyAfterMs: Math.round(edgeDownMs),
        gpuNodeReadyAfterRestartMs: Math.round(backMs),
        edgeReadyAfterRestartMs: Math.round(edgeBackMs),
      },
    });
  });

  it("the backend stalled (SIGSTOP): 504 at the deadline, the stalled calls leave the gpu-node, all resumes after SIGCONT", async ({
    task,
  }) => {
    const load = startEdgeLoad({ url: edge.url, apiKey: KEY, images, workers: 4 });
    await until(() => load.ok() >= 10, { timeoutMs: 15_000 });
    double.child.kill("SIGSTOP");
    const stalledAt = performance.now();
    // Stalled for a while, and at least until a deadline has fired (asserted below).
    await Promise.all([
      sleep(2.5 * DEADLINE_MS),
      until(() => load.outcomes.some((o) => o.status === 504), { timeoutMs: 60_000 }),
    ]);
    const outcomes = await load.stop();
    // Whatever was waiting on the frozen backend has left the gpu-node by now.
    const stoppedAt = performance.now();
    await until(() => gpu.inFlight() === 0, { timeoutMs: DEADLINE_MS });
    const drainedMs = performance.now() - stoppedAt;
    const stalledForMs = performance.now() - stalledAt;
    double.child.kill("SIGCONT");
    const backMs = await readyzAnswers(gpu.url, 200, 2000);
    const edgeBackMs = await readyzAnswers(edge.url, 200, 2000);
    const v = expectClean(outcomes, references, [503, 504], DEADLINE_MS + 700);
    const timedOut = outcomes.filter((o) => o.status === 504);
    expect(timedOut.length).toBeGreaterThan(0);
    // A deadline fired: the gpu-node's own to Triton (1000 ms) or the edge's (1500 ms), not sooner.
    for (const o of timedOut) expect(o.ms).toBeGreaterThan(TRITON_TIMEOUT_MS * 0.9);
    const after = startEdgeLoad({ url: edge.url, apiKey: KEY, images, workers: 2 });
    await until(() => after.ok() >= 6, { timeoutMs: 10_000 });
    const resumed = expectClean(await after.stop(), references, [], DEADLINE_MS);
    recordFigures(task, {
      section: "fault",
      title: "Triton stalled (SIGSTOP) under load, then resumed (SIGCONT)",
      target: "edge Worker (GPU_NODE_TIMEOUT_MS 1500) → gpu-node (triton backend) → double",
      data: {
        ...v,
        slowest504Ms: Math.round(Math.max(...timedOut.map((o) => o.ms))),
        stalledForMs: Math.round(stalledForMs),
        gpuNodeCallsLeftAfterLoadStopMs: Math.round(drainedMs),
        gpuNodeReadyAfterResumeMs: Math.round(backMs),
        edgeReadyAfterResumeMs: Math.round(edgeBackMs),
        afterResume: resumed,
      },
    });
  });
});

/** A port nothing listens on (bound, read, closed). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe("gpu-node faults behind the edge (two gpu-node processes, vit-tiny)", () => {
  const DEADLINE_MS = 5000;
  const args = ["--model", "vit-tiny", "--threads", "1"];
  const env = { GPU_NODE_TOKEN: TOKEN };
  let a: GpuNodeProcess;
  let b: GpuNodeProcess;
  let edge: EdgeWorker;
  let references: Float32Array[];

  beforeAll(async () => {
    // b's metrics on a free port: the SIGTERM test waits for its big call on the admission gauge.
    [a, b] = await Promise.all([
      spawnGpuNode(args, { env }),
      spawnGpuNode([...args, "--metrics-port", "0"], { env, metrics: true }),
    ]);
    edge = await edgeBefore([a.url, b.url], DEADLINE_MS);
    references = await referencesVia(edge);
  }, 120_000);

  afterAll(async () => {
    await edge?.dispose();
    await Promise.all([a?.stop("SIGKILL"), b?.stop("SIGKILL")]);
  });

  it("one of two gpu-nodes SIGKILLed mid-load: the edge fails over and no client request fails", async ({
    task,
  }) => {
    const load = startEdgeLoad({ url: edge.url, apiKey: KEY, images, workers: 6 });
    await until(() => load.ok() >= 20, { timeoutMs: 15_000 });
    await a.stop("SIGKILL");
    const killedAt = performance.now();
    await until(() => load.outcomes.filter((o) => o.t0 > killedAt).length >= 30, {
      timeoutMs: 15_000,
    });
    const outcomes = await load.stop();
    const v = expectClean(outcomes, references, [], DEADLINE_MS);
    expect(v.byStatus).toEqual({ "200": outcomes.length });
    expect((await fetch(`${edge.url}/readyz`)).status).toBe(200);
    // It comes back on its port; the edge uses it again without a restart.
    const port = a.port;
    a = await spawnGpuNode(args, { env, port });
    const servedBefore = a.logs.filter((l) => l.msg === "call" && l.code === "ok").length;
    const again = startEdgeLoad({ url: edge.url, apiKey: KEY, images, workers: 4 });
    await until(() => again.ok() >= 12, { timeoutMs: 15_000 });
    const rejoined = expectClean(await again.stop(), references, [], DEADLINE_MS);
    expect(a.logs.filter((l) => l.msg === "call" && l.code === "ok").length).toBeGreaterThan(
      servedBefore,
    );
    recordFigures(task, {
      section: "fault",
      title: "one of two gpu-nodes SIGKILLed mid-load, then restarted on its port",
      target: "edge Worker (two GPU_NODE_URLS) → two gpu-node processes",
      data: {
        ...v,
        failedClientRequests: 0,
        requestsAfterKill: outcomes.filter((o) => o.t0 > killedAt).length,
        afterRestart: rejoined,
      },
    });
  });

  it("a gpu-node SIGTERMed mid-load: drains its calls, refuses new work, exits 0; no client request fails", async ({
    task,
  }) => {
    const load = startEdgeLoad({ url: edge.url, apiKey: KEY, images, workers: 6 });
    await until(() => load.ok() >= 20, { timeoutMs: 15_000 });
    // A big call straight to b, so that work is surely in flight when the signal lands.
    const big = await Promise.all([photo(2400, 1800, 301), photo(2400, 1800, 302)]);
    let settled = false;
    const inFlightCall = embedderClient(b.url, "grpc", TOKEN)
      .embed({
        images: Array.from({ length: 24 }, (_, k) => ({ id: String(k), data: big[k % 2]! })),
      })
      .finally(() => {
        settled = true;
      });
    // Signal once b has admitted it (24 image slots: the edge's calls hold one each, six at the
    // most), not after a guessed 150 ms: on a loaded machine the upload may take longer.
    const metricsUrl = b.ready.metricsUrl as string;
    await until(
      async () => settled || (await metricValue(metricsUrl, "gpu_node_admitted_images")) >= 24,
    );
    const logFrom = b.logs.length;
    b.child.kill("SIGTERM");
    const signalledAt = performance.now();
    await until(() => b.logs.slice(logFrom).some((l) => l.msg === "draining"), { timeoutMs: 5000 });
    // Draining: a new call is refused (Unavailable, or the port is already closed).
    const probe = await embedderClient(b.url, "connect-h1", TOKEN)
      .embed({ images: [{ id: "late", data: images[0]! }] }, { timeoutMs: 3000 })
      .then(
        () => "accepted",
        (e: unknown) => Code[ConnectError.from(e).code],
      );
    expect(["Unavailable", "Unknown"]).toContain(probe);
    const drained = await inFlightCall;
    expect(drained.embeddings.map((e) => e.id)).toEqual(
      Array.from({ length: 24 }, (_, k) => String(k)),
    );
    const exit = await b.exited;
    const exitMs = performance.now() - signalledAt;
    const outcomes = await load.stop();
    expect(exit).toEqual({ code: 0, signal: null });
    // The node's "draining" line counts the calls being worked on (a call still uploading its
    // body is not among them, yet is served): at least the big call finished after it.
    const drainLine = b.logs.slice(logFrom).find((l) => l.msg === "draining")!;
    const inFlight = Number(drainLine.inFlight ?? 0);
    const okAfter = b.logs
      .slice(b.logs.indexOf(drainLine))
      .filter((l) => l.msg === "call" && l.code === "ok").length;
    expect(okAfter).toBeGreaterThanOrEqual(1);
    const v = expectClean(outcomes, references, [], DEADLINE_MS);
    expect(v.byStatus).toEqual({ "200": outcomes.length });
    recordFigures(task, {
      section: "fault",
      title: "a gpu-node SIGTERMed mid-load (graceful drain)",
      target: "edge Worker (two GPU_NODE_URLS) → two gpu-node processes",
      data: {
        ...v,
        failedClientRequests: 0,
        inFlightAtSignal: inFlight,
        okCallsLoggedAfterDrainStart: okAfter,
        drainedCallImages: drained.embeddings.length,
        exitAfterSignalMs: Math.round(exitMs),
        newCallWhileDraining: probe,
        exitCode: exit.code,
      },
    });
  });

  it("no gpu-node reachable: a clean 503 with Retry-After and /readyz false; ready within 2 s of one returning", async ({
    task,
  }) => {
    await a.stop("SIGKILL"); // b exited in the previous test
    const t0 = performance.now();
    const res = await fetch(`${edge.url}/v1/embeddings`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY}`, "content-type": "image/jpeg" },
      body: images[0],
    });
    const ms = performance.now() - t0;
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(await res.json()).toMatchObject({ error: { code: "unavailable" } });
    expect(ms).toBeLessThan(2000);
    expect(await statusOf(`${edge.url}/readyz`)).toBe(503);
    expect(await statusOf(`${edge.url}/healthz`)).toBe(200);
    const port = a.port;
    a = await spawnGpuNode(args, { env, port });
    const readyMs = await readyzAnswers(edge.url, 200, 2000);
    const load = startEdgeLoad({ url: edge.url, apiKey: KEY, images, workers: 2 });
    await until(() => load.ok() >= 6, { timeoutMs: 10_000 });
    const v = expectClean(await load.stop(), references, [], DEADLINE_MS);
    expect(v.byStatus).toEqual({ "200": v.requests });
    // An edge configured with a port nothing ever listened on: the same clean answer.
    const nowhere = await startEdge(
      {
        GPU_NODE_URLS: `http://127.0.0.1:${await freePort()}`,
        GPU_NODE_TOKEN: TOKEN,
        API_KEY_HASHES: keyHash,
      },
      QUIET,
    );
    try {
      const r = await fetch(`${nowhere.url}/v1/embeddings`, {
        method: "POST",
        headers: { authorization: `Bearer ${KEY}`, "content-type": "image/jpeg" },
        body: images[1],
      });
      expect(r.status).toBe(503);
      expect(r.headers.get("retry-after")).toMatch(/^\d+$/);
      expect(await statusOf(`${nowhere.url}/readyz`)).toBe(503);
    } finally {
      await nowhere.dispose();
    }
    recordFigures(task, {
      section: "fault",
      title: "no gpu-node reachable, then one returns",
      target: "edge Worker → (nothing listening), then a gpu-node process on the same port",
      data: {
        unreachable503Ms: Math.round(ms),
        readyAfterReturnMs: Math.round(readyMs),
        afterReturn: v,
      },
    });
  });
});
