// Overload with a real load generator (autocannon) against the real path: edge Worker (workerd,
// local Images binding) → gpu-node CLI (vit-tiny, admission limit 16 images). Below capacity:
// zero errors. Beyond it: the gpu-node refuses at once with ResourceExhausted, the edge answers
// 503 with Retry-After (and, for GPU_NODE_SHED_MS after a refusal, before resizing), the accepted requests' p99 stays bounded, the processes' memory stays
// bounded — and every embedding returned under load is the one for its image.
import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStandIn } from "../edge/testing/gpu-stand-in.ts";
import { recordFigures } from "./reliability/figures.ts";
import { type EdgeWorker, startEdge } from "./support/edge-worker.ts";
import { maxAbsDiff, metricValue } from "./support/gpu-node-client.ts";
import { photo } from "./support/images.ts";
import { type HttpLoadResult, type LoadBody, runHttpLoad } from "./support/load.ts";
import { MiB, workerdRss } from "./support/proc.ts";
import { type GpuNodeProcess, spawnGpuNode } from "./support/processes.ts";
import { type StandInServer, serveStandIn } from "./support/stand-in-server.ts";
import { percentile } from "./support/stats.ts";
import { until } from "./support/wait.ts";

const KEY = "overload-key-0b2c";
const TOKEN = "overload-token-81de";
/** The gpu-node's admission limit: images decoding, queued or in inference at once. */
const ADMISSION = 16;

let gpu: GpuNodeProcess;
let edge: EdgeWorker;
let bodies: LoadBody[];
let references: Float32Array[];

beforeAll(async () => {
  const images = await Promise.all(Array.from({ length: 8 }, (_, i) => photo(320, 240, 90 + i)));
  bodies = images.map((body) => ({ body, contentType: "image/jpeg" }));
  gpu = await spawnGpuNode(
    [
      "--model",
      "vit-tiny",
      "--threads",
      "1",
      "--max-queued-images",
      String(ADMISSION),
      "--max-images-per-request",
      "4",
      // Metrics on a free port: recovery is waited for on the admission gauge.
      "--metrics-port",
      "0",
    ],
    { env: { GPU_NODE_TOKEN: TOKEN }, metrics: true },
  );
  edge = await startEdge(
    {
      GPU_NODE_URLS: gpu.url,
      GPU_NODE_TOKEN: TOKEN,
      API_KEY_HASHES: createHash("sha256").update(KEY).digest("hex"),
    },
    { logLevel: "none" },
  ); // it would log every 503 it answers
  // The reference embedding of each image, one request at a time, before any load.
  references = [];
  for (const b of bodies) {
    const res = await fetch(`${edge.url}/v1/embeddings`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY}`, "content-type": b.contentType },
      body: b.body,
    });
    expect(res.status).toBe(200);
    references.push(Float32Array.from(((await res.json()) as Embedded).data[0]!.embedding));
  }
}, 120_000);

afterAll(async () => {
  await edge?.dispose();
  await gpu?.stop("SIGKILL");
});

type Embedded = { data: { embedding: number[] }[] };

/** Every answer checked: a 200 must carry its own image's embedding, a 503 a Retry-After. */
function checker() {
  const tally = { verified: 0, misrouted: 0, unreadable: 0, shedWithoutRetryAfter: 0 };
  /** The edge's own time (its Server-Timing total) for each 503: with and without a resize. */
  const shedMs = { beforeResize: [] as number[], afterCall: [] as number[] };
  const check = (i: number, status: number, body: string, headers: Record<string, string>) => {
    if (status === 503) {
      if (!headers["retry-after"]) tally.shedWithoutRetryAfter++;
      const timing = headers["server-timing"] ?? "";
      const total = Number(/(?:^|,\s*)total;[^,]*dur=([\d.]+)/.exec(timing)?.[1] ?? Number.NaN);
      (timing.includes("resize") ? shedMs.afterCall : shedMs.beforeResize).push(total);
      return;
    }
    if (status !== 200) return;
    let v: Float32Array;
    try {
      v = Float32Array.from((JSON.parse(body) as Embedded).data[0]!.embedding);
    } catch {
      tally.unreadable++;
      return;
    }
    if (maxAbsDiff(v, references[i]!) <= 1e-5) tally.verified++;
    else tally.misrouted++;
  };
  return { tally, shedMs, check };
}

/** Samples the gpu-node's and workerd's RSS every 200 ms while `work` runs; the maxima. */
async function watchingMemory<T>(
  work: () => Promise<T>,
): Promise<[T, { gpu: number; workerd: number }]> {
  const peak = { gpu: gpu.rss(), workerd: workerdRss() };
  const timer = setInterval(() => {
    peak.gpu = Math.max(peak.gpu, gpu.rss());
    peak.workerd = Math.max(peak.workerd, workerdRss());
  }, 200);
  try {
    return [await work(), peak];
  } finally {
    clearInterval(timer);
  }
}

/** The gpu-node's own "call" log lines for Embed since index `from`: code and ms. */
function gpuCalls(from: number) {
  return gpu.logs
    .slice(from)
    .filter((l) => l.msg === "call" && l.method === "Embed")
    .map((l) => ({ code: String(l.code), ms: Number(l.ms) }));
}

const load = (connections: number, durationSeconds: number, overallRate?: number) => {
  const { tally, shedMs, check } = checker();
  return runHttpLoad({
    url: edge.url,
    path: "/v1/embeddings",
    apiKey: KEY,
    bodies,
    connections,
    durationSeconds,
    ...(overallRate !== undefined ? { overallRate } : {}),
    check,
  }).then((r) => ({ ...r, tally, shedMs }));
};

const summary = (r: HttpLoadResult) => ({
  requests: r.requests,
  rps: +r.rps.toFixed(1),
  statuses: r.statuses,
  p50Ms: +percentile(r.latencies["200"] ?? [], 0.5).toFixed(1),
  p99Ms: +percentile(r.latencies["200"] ?? [], 0.99).toFixed(1),
});

describe("overload: edge → gpu-node under a real load generator", () => {
  it("holds load below capacity with zero errors, sheds beyond it fast with 503 + Retry-After, and recovers", async ({
    task,
  }) => {
    await load(2, 1); // warm-up
    const rssBaseline = { gpu: gpu.rss(), workerd: workerdRss() };

    // Capacity, closed loop with a few connections: what this machine sustains without queueing.
    const capacity = await load(4, 3);
    expect(capacity.statuses).toEqual({ "200": capacity.requests });
    expect(capacity.tally.misrouted).toBe(0);

    // Below capacity: an open-loop rate at half of it, over more connections. Zero errors.
    const rate = Math.max(5, Math.floor(capacity.rps / 2));
    const below = await load(8, 3, rate);
    expect(below.errors + below.timeouts).toBe(0);
    expect(below.statuses).toEqual({ "200": below.requests });
    expect(below.tally).toMatchObject({ misrouted: 0, unreadable: 0 });
    expect(below.tally.verified).toBe(below.requests);
    expect(below.rps).toBeGreaterThan(rate * 0.7);

    // Beyond capacity: 64 connections, closed loop, as fast as answers come.
    const logFrom = gpu.logs.length;
    const [beyond, peak] = await watchingMemory(() => load(64, 5));
    const calls = gpuCalls(logFrom);
    const refused = calls.filter((c) => c.code === "ResourceExhausted");
    const served = calls.filter((c) => c.code === "ok");
    expect(beyond.errors + beyond.timeouts).toBe(0);
    expect(Object.keys(beyond.statuses).sort()).toEqual(["200", "503"]);
    expect(beyond.tally).toMatchObject({ misrouted: 0, unreadable: 0, shedWithoutRetryAfter: 0 });
    expect(beyond.tally.verified).toBe(beyond.statuses["200"]);
    // The gpu-node refuses at once instead of queueing: its refusals take milliseconds, and what it
    // accepts waits behind at most ADMISSION images.
    // (Calls still in flight when the generator stops are refused or answered with nobody left to
    // read it: the gpu-node may count a few more than the edge delivered.)
    // The edge answers some 503s itself, before resizing, for GPU_NODE_SHED_MS after a refusal.
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.length).toBeLessThanOrEqual(beyond.statuses["503"]! + 64);
    const refusalP99 = percentile(
      refused.map((c) => c.ms),
      0.99,
    );
    const servedP99 = percentile(
      served.map((c) => c.ms),
      0.99,
    );
    // Refusals do not queue: typically ~1 ms, never behind the served calls. (A p99 under 50 ms
    // held on a quiet machine; with the edge now shedding most overload itself, the gpu-node
    // refuses only ~100 calls, and one scheduling stall on a busy 2-core machine set their p99.)
    expect(
      percentile(
        refused.map((c) => c.ms),
        0.5,
      ),
    ).toBeLessThan(50);
    expect(refusalP99).toBeLessThan(servedP99);
    expect(servedP99).toBeLessThan(2_000);
    // At the edge: accepted requests' p99 bounded (the edge's own CPU shares these 2 cores), and
    // accepted work still flows (how much depends on what else the machine runs: recorded only).
    const acceptedP99 = percentile(beyond.latencies["200"]!, 0.99);
    expect(acceptedP99).toBeLessThan(5_000);
    const goodput = beyond.statuses["200"]! / beyond.durationSeconds;
    expect(beyond.statuses["200"]).toBeGreaterThan(20);
    expect(peak.gpu - rssBaseline.gpu).toBeLessThan(256 * MiB);
    // workerd's heap (isolates and the local Images binding's traffic) grows and is collected in
    // large steps (measured 350 → 710 → 473 MB over repeated phases): a loose bound only.
    expect(peak.workerd - rssBaseline.workerd).toBeLessThan(512 * MiB);

    // Recovery: the calls the generator abandoned leave admission within ~200 ms; then below
    // capacity again, zero errors.
    // Wait for that on the gpu-node's admission gauge, not for a guessed time.
    const metricsUrl = gpu.ready.metricsUrl as string;
    await Promise.all([
      sleep(500),
      until(async () => (await metricValue(metricsUrl, "gpu_node_admitted_images")) === 0),
    ]);
    const after = await load(4, 2);
    expect(after.statuses).toEqual({ "200": after.requests });
    expect((await fetch(`${edge.url}/readyz`)).status).toBe(200);
    expect(gpu.alive()).toBe(true);

    recordFigures(task, {
      section: "load",
      title: "load held below capacity",
      target: "edge Worker (workerd) → gpu-node (vit-tiny, admission 16 images), autocannon",
      data: {
        capacity: { connections: 4, seconds: 3, ...summary(capacity) },
        below: { connections: 8, seconds: 3, targetRps: rate, ...summary(below), errors: 0 },
        recovery: { connections: 4, ...summary(after), errors: 0 },
        embeddingsVerified: capacity.tally.verified + below.tally.verified + after.tally.verified,
        misrouted: 0,
      },
    });
    recordFigures(task, {
      section: "shed",
      title: "load shed beyond capacity (64 connections, closed loop)",
      target: "edge Worker (workerd) → gpu-node (vit-tiny, admission 16 images), autocannon",
      data: {
        connections: 64,
        seconds: beyond.durationSeconds,
        ...summary(beyond),
        goodputRps: +goodput.toFixed(1),
        goodputOfCapacity: +(goodput / capacity.rps).toFixed(2),
        shedShare: +(beyond.statuses["503"]! / beyond.requests).toFixed(3),
        edge503P50Ms: +percentile(beyond.latencies["503"]!, 0.5).toFixed(1),
        gpuNodeRefusals: refused.length,
        edgeShedBeforeResize: beyond.shedMs.beforeResize.length,
        // The edge's own time (Server-Timing total) to a 503; the rest of edge503P50Ms is
        // waiting for the edge's CPU (workerd and wrangler's proxy share the 2 cores).
        edgeOwn503P50Ms: {
          beforeResize: +percentile(beyond.shedMs.beforeResize, 0.5).toFixed(1),
          afterGpuNodeCall: +percentile(beyond.shedMs.afterCall, 0.5).toFixed(1),
        },
        gpuNodeRefusalP99Ms: +refusalP99.toFixed(2),
        gpuNodeServedP99Ms: +servedP99.toFixed(1),
        retryAfterOnEvery503: true,
        embeddingsVerified: beyond.tally.verified,
        misrouted: 0,
        peakRssMiB: {
          gpuNode: +(peak.gpu / MiB).toFixed(0),
          workerd: +(peak.workerd / MiB).toFixed(0),
        },
        baselineRssMiB: {
          gpuNode: +(rssBaseline.gpu / MiB).toFixed(0),
          workerd: +(rssBaseline.workerd / MiB).toFixed(0),
        },
      },
    });
  });
});

describe("every gpu-node full: the edge answers 503 itself", () => {
  /** Two gpu-nodes that refuse every call as full, as a saturated cluster does. */
  let nodes: StandInServer[];
  let full: EdgeWorker;
  let calls = 0;

  beforeAll(async () => {
    const refusing = () =>
      createStandIn({
        async embed() {
          calls++;
          throw new ConnectError("queue full", Code.ResourceExhausted);
        },
      });
    nodes = await Promise.all([serveStandIn(refusing()), serveStandIn(refusing())]);
    full = await startEdge(
      {
        GPU_NODE_URLS: nodes.map((n) => n.url).join(","),
        GPU_NODE_TOKEN: TOKEN,
        API_KEY_HASHES: createHash("sha256").update(KEY).digest("hex"),
      },
      { logLevel: "none" },
    );
  }, 120_000);

  afterAll(async () => {
    await full?.dispose();
    await Promise.all((nodes ?? []).map((n) => n.close()));
  });

  it("answers every upload 503 + Retry-After, asking each gpu-node about once per GPU_NODE_SHED_MS", async ({
    task,
  }) => {
    const CONNECTIONS = 8;
    const SECONDS = 3;
    const SHED_MS = 50; // GPU_NODE_SHED_MS's default (docs/configuration.md)
    const { tally, shedMs, check } = checker();
    const r = await runHttpLoad({
      url: full.url,
      path: "/v1/embeddings",
      apiKey: KEY,
      bodies,
      connections: CONNECTIONS,
      durationSeconds: SECONDS,
      check,
    });
    expect(r.errors + r.timeouts).toBe(0);
    expect(r.statuses).toEqual({ "503": r.requests });
    expect(tally.shedWithoutRetryAfter).toBe(0);
    // Both nodes are asked at once, with no pause between them, and then left alone for
    // SHED_MS: a request in flight when the hold ends may ask again (one per connection).
    const allowed = nodes.length * (Math.ceil((SECONDS * 1000) / SHED_MS) + CONNECTIONS);
    expect(calls).toBeGreaterThan(0);
    expect(calls).toBeLessThanOrEqual(allowed);
    expect(shedMs.beforeResize.length).toBeGreaterThan(r.requests / 2);
    recordFigures(task, {
      section: "shed",
      title: "every gpu-node full (two refusing every call with ResourceExhausted)",
      target: `edge Worker (workerd) → two gpu-node stand-ins, autocannon, ${CONNECTIONS} connections`,
      data: {
        connections: CONNECTIONS,
        seconds: r.durationSeconds,
        requests: r.requests,
        rps: +r.rps.toFixed(1),
        statuses: r.statuses,
        edge503P50Ms: +percentile(r.latencies["503"]!, 0.5).toFixed(1),
        edge503P99Ms: +percentile(r.latencies["503"]!, 0.99).toFixed(1),
        edgeOwn503P50Ms: +percentile([...shedMs.beforeResize, ...shedMs.afterCall], 0.5).toFixed(1),
        answeredBeforeResize: shedMs.beforeResize.length,
        gpuNodeCalls: calls,
        retryAfterOnEvery503: true,
      },
    });
  });
});
