/**
 * gpu-node benchmark for this machine: raw sharp preprocessing, the service's sustained img/s
 * through gRPC (h2c) with vit-tiny, per-image server overhead, vit-b32 through the service vs
 * bare ONNX Runtime, and the service's peak RSS. Prints Markdown tables (targets PASS/MISS) and
 * writes the full results to .cache/bench/.
 *
 *   npm run bench:gpu-node              # ~3-4 min
 *   npm run bench:gpu-node -- --quick   # ~30 s smoke run
 *
 * The gpu-node runs as the CLI in a child process; bare ORT runs in another child process that
 * stays loaded and takes turns with the service (never both at once). The clients and the raw
 * sharp runs live in this process, taking turns with the vit-tiny service. This machine is shared:
 * every measured window also records how much CPU other processes used ("other load").
 */
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, loadavg } from "node:os";
import { resolve } from "node:path";
import { type Client, createClient } from "@connectrpc/connect";
import { ensureModel } from "../../gpu-node/model/index.ts";
import { decodeForClip } from "../../gpu-node/preprocess/decode.ts";
import { EmbedderService } from "../../proto/gen/embedder/v1/embedder_pb.js";
import { parseCli } from "../support/cli.ts";
import { transportFor } from "../support/gpu-node-client.ts";
import { BENCH_HEIGHT, BENCH_QUALITY, BENCH_WIDTH, benchPhotos } from "../support/images.ts";
import { runLoad, type WindowedLoadResult } from "../support/load.ts";
import { cpuSeconds, machineBusySeconds, memoryMiB, ownCpuSeconds } from "../support/proc.ts";
import { BENCH_GPU_NODE, type GpuNodeProcess, ROOT, spawnGpuNode } from "../support/processes.ts";
import { fmt, installedVersion, markdownTable, pct, verdict } from "../support/report.ts";
import { median, type Summary, summarize } from "../support/stats.ts";
import type { OrtStep, OrtStepResult } from "./ort-child.ts";
import { startOrtWorker } from "./ort-worker.ts";

const TARGETS = {
  serviceVsSharp: 0.75,
  overheadP50Ms: 4,
  serviceVsOrt: 0.9,
  peakRssMiB: 2.5 * 1024,
} as const;

interface Plan {
  readonly images: number;
  readonly reps: number;
  readonly sharpInFlight: readonly number[];
  readonly sharpWarmupMs: number;
  readonly sharpMs: number;
  readonly concurrency: readonly number[];
  readonly rpcWarmupMs: number;
  readonly rpcMs: number;
  /**
   * vit-b32 calls per measured chunk (counted from the first call; warmupCalls unused). Bare ORT,
   * the service with sequential calls and with 2 in flight take turns, b32Rounds times.
   */
  readonly b32: readonly OrtStep[];
  readonly b32Rounds: number;
  /** Run the "no split batches" diagnostic (a vit-b32 child per batch size > 1). */
  readonly b32WaitAll: boolean;
}

const FULL: Plan = {
  images: 64,
  reps: 3,
  sharpInFlight: [1, 4, 8],
  sharpWarmupMs: 300,
  sharpMs: 1500,
  concurrency: [1, 8, 32],
  rpcWarmupMs: 500,
  rpcMs: 2500,
  b32: [
    { batch: 1, warmupCalls: 0, calls: 15 },
    { batch: 8, warmupCalls: 0, calls: 4 },
    { batch: 32, warmupCalls: 0, calls: 2 },
  ],
  b32Rounds: 4,
  b32WaitAll: true,
};

const QUICK: Plan = {
  images: 64,
  reps: 1,
  sharpInFlight: [1, 4, 8],
  sharpWarmupMs: 150,
  sharpMs: 700,
  concurrency: [1, 8, 32],
  rpcWarmupMs: 200,
  rpcMs: 1200,
  b32: [
    { batch: 1, warmupCalls: 0, calls: 8 },
    { batch: 8, warmupCalls: 0, calls: 2 },
    { batch: 32, warmupCalls: 0, calls: 1 },
  ],
  b32Rounds: 1,
  b32WaitAll: false,
};

const THREADS = 2;
const LIMITS = { maxPixels: 100_000_000, maxBytes: 20 * 1024 * 1024 } as const;
const IMAGE_BYTES = 224 * 224 * 3;

/** Progress goes to stderr; stdout carries only the report. */
function progress(message: string): void {
  process.stderr.write(`[bench ${(performance.now() / 1000).toFixed(1)}s] ${message}\n`);
}

// ---------------------------------------------------------------------------------------------
// 1. Raw sharp

interface ThroughputRun {
  readonly imagesPerSecond: number;
  readonly images: number;
  readonly elapsedMs: number;
  /** CPU ms per image: this process (raw sharp; the RPC client) and the service child. */
  readonly clientCpuMsPerImage: number;
  readonly serverCpuMsPerImage?: number;
  /** Cores' worth of CPU other processes used meanwhile (noise: this machine is shared). */
  readonly otherCores: number;
}

/** CPU counters over a load run's measured window. */
function cpuWindow(pid?: number) {
  let own = 0;
  let server = 0;
  let machine = 0;
  return {
    onWindow(edge: "start" | "end") {
      const m = machineBusySeconds();
      const o = ownCpuSeconds();
      const s = pid === undefined ? 0 : cpuSeconds(pid);
      machine = edge === "start" ? m : m - machine;
      own = edge === "start" ? o : o - own;
      server = edge === "start" ? s : s - server;
    },
    result<T>(r: WindowedLoadResult<T>): ThroughputRun {
      return {
        imagesPerSecond: r.imagesPerSecond,
        images: r.images,
        elapsedMs: r.elapsedMs,
        clientCpuMsPerImage: (own * 1000) / r.images,
        ...(pid === undefined ? {} : { serverCpuMsPerImage: (server * 1000) / r.images }),
        otherCores: Math.max(0, machine - own - server) / (r.elapsedMs / 1000),
      };
    },
  };
}

/** One round of raw sharp runs (1, 4, 8 in flight), appended to `runs`. */
async function sharpRound(
  plan: Plan,
  photos: readonly Buffer[],
  runs: Map<number, ThroughputRun[]>,
) {
  for (const inFlight of plan.sharpInFlight) {
    const cpu = cpuWindow();
    const r = await runLoad({
      concurrency: inFlight,
      imagesPerCall: 1,
      warmupMs: plan.sharpWarmupMs,
      ms: plan.sharpMs,
      onWindow: cpu.onWindow,
      call: (seq) => decodeForClip(photos[seq % photos.length]!, LIMITS),
    });
    runs.get(inFlight)!.push(cpu.result(r));
    progress(`sharp ${inFlight} in flight: ${r.imagesPerSecond.toFixed(0)} img/s`);
  }
}

/** Medians over repeated runs of the same setting. */
function medians(rs: readonly ThroughputRun[]) {
  return {
    imagesPerSecond: median(rs.map((r) => r.imagesPerSecond)),
    clientCpuMsPerImage: median(rs.map((r) => r.clientCpuMsPerImage)),
    serverCpuMsPerImage: median(rs.map((r) => r.serverCpuMsPerImage ?? Number.NaN)),
    otherCores: median(rs.map((r) => r.otherCores)),
  };
}

// ---------------------------------------------------------------------------------------------
// Service calls

type Embedder = Client<typeof EmbedderService>;

interface CallTimings {
  readonly decodeMs: number;
  readonly packMs: number;
  readonly queueMs: number;
  readonly inferenceMs: number;
  readonly totalMs: number;
}

function client(url: string): Embedder {
  // connect-node's gRPC transport: HTTP/2 with prior knowledge (h2c), one session per transport.
  return createClient(EmbedderService, transportFor(url, "grpc"));
}

/** A call of exactly `n` images (rotating through `photos`); returns the server's timings. */
function embedCall(embedder: Embedder, photos: readonly Buffer[], n: number) {
  return async (seq: number): Promise<CallTimings> => {
    const images = Array.from({ length: n }, (_, i) => ({
      id: String(i),
      data: photos[(seq * n + i) % photos.length]!,
    }));
    const res = await embedder.embed({ images }, { timeoutMs: 120_000 });
    if (res.embeddings.length !== n || res.dimension <= 0) {
      throw new Error(`expected ${n} embeddings, got ${res.embeddings.length}`);
    }
    const t = res.timings!;
    return {
      decodeMs: t.decodeUs / 1000,
      packMs: t.preprocessUs / 1000,
      queueMs: t.queueUs / 1000,
      inferenceMs: t.inferenceUs / 1000,
      totalMs: t.totalUs / 1000,
    };
  };
}

interface StageSummary {
  readonly calls: number;
  readonly rtt: Summary;
  readonly total: Summary;
  /** total − inference: what the server adds to the model's time. */
  readonly overhead: Summary;
  readonly decode: Summary;
  readonly queue: Summary;
  readonly pack: Summary;
  readonly inference: Summary;
  /** rtt − total: client, protocol and transport. */
  readonly outsideServer: Summary;
}

function stages(rttMs: readonly number[], values: readonly CallTimings[]): StageSummary {
  return {
    calls: values.length,
    rtt: summarize(rttMs),
    total: summarize(values.map((v) => v.totalMs)),
    overhead: summarize(values.map((v) => v.totalMs - v.inferenceMs)),
    decode: summarize(values.map((v) => v.decodeMs)),
    queue: summarize(values.map((v) => v.queueMs)),
    pack: summarize(values.map((v) => v.packMs)),
    inference: summarize(values.map((v) => v.inferenceMs)),
    outsideServer: summarize(rttMs.map((r, i) => r - values[i]!.totalMs)),
  };
}

async function withGpuNode<T>(
  args: readonly string[],
  fn: (node: GpuNodeProcess) => Promise<T>,
): Promise<T> {
  // One process: this benchmark compares the service with raw sharp and bare ORT in one process
  // each, and reads the server's CPU from its pid. `npm run bench:gpu-host` measures processes.
  const node = await spawnGpuNode(["--processes", "1", ...args], BENCH_GPU_NODE);
  progress(`gpu-node ${args.join(" ")} listening at ${node.url} (${node.startMs.toFixed(0)} ms)`);
  try {
    return await fn(node);
  } catch (error) {
    process.stderr.write(`gpu-node output tail:\n${node.output()}\n`);
    throw error;
  } finally {
    await node.stop();
  }
}

/** One-image calls at `concurrency` for plan.rpcMs after warm-up, with CPU counters. */
async function oneImageRun(plan: Plan, node: GpuNodeProcess, photos: readonly Buffer[], c: number) {
  const cpu = cpuWindow(node.pid);
  const r = await runLoad({
    concurrency: c,
    imagesPerCall: 1,
    warmupMs: plan.rpcWarmupMs,
    ms: plan.rpcMs,
    onWindow: cpu.onWindow,
    call: embedCall(client(node.url), photos, 1),
  });
  return { run: cpu.result(r), rttMs: r.rttMs, values: r.values };
}

// ---------------------------------------------------------------------------------------------
// 2 + 3. vit-tiny through the service

/**
 * Raw sharp and the vit-tiny service take turns, round by round (the service child stays loaded
 * and idle while sharp runs here), so that both see the same background load.
 */
async function benchSharpAndTiny(plan: Plan, photos: readonly Buffer[], cacheDir: string) {
  const args = ["--model", "vit-tiny", "--cache-dir", cacheDir];
  const sharpRuns = new Map<number, ThroughputRun[]>(plan.sharpInFlight.map((n) => [n, []]));
  const main = await withGpuNode(args, async (node) => {
    const runs = new Map<number, ThroughputRun[]>(plan.concurrency.map((c) => [c, []]));
    const c1: { rtt: number[]; values: CallTimings[] } = { rtt: [], values: [] };
    for (let rep = 0; rep < plan.reps; rep++) {
      await sharpRound(plan, photos, sharpRuns);
      for (const concurrency of plan.concurrency) {
        const r = await oneImageRun(plan, node, photos, concurrency);
        runs.get(concurrency)!.push(r.run);
        if (concurrency === 1) {
          c1.rtt.push(...r.rttMs);
          c1.values.push(...r.values);
        }
        progress(`vit-tiny c=${concurrency}: ${r.run.imagesPerSecond.toFixed(0)} img/s`);
      }
    }
    return {
      startMs: node.startMs,
      concurrency: [...runs].map(([concurrency, rs]) => ({
        concurrency,
        ...medians(rs),
        runs: rs,
      })),
      c1: stages(c1.rtt, c1.values),
    };
  });
  const sharp = [...sharpRuns].map(([inFlight, rs]) => ({ inFlight, ...medians(rs), runs: rs }));

  // Diagnostics, one run each: where the service's time goes.
  const peak = Math.max(...plan.concurrency);
  const variant = async (label: string, extra: readonly string[], c: number, base = args) =>
    withGpuNode([...base, ...extra], async (node) => {
      const r = await oneImageRun(plan, node, photos, c);
      progress(`${label}: ${r.run.imagesPerSecond.toFixed(0)} img/s`);
      return {
        label,
        args: [...base, ...extra],
        concurrency: c,
        ...r.run,
        ...stages(r.rttMs, r.values),
      };
    });
  const noWait = await variant(
    "vit-tiny c=1, --max-batch-wait-ms 0",
    ["--max-batch-wait-ms", "0"],
    1,
  );
  const oneThread = await variant(`vit-tiny c=${peak}, --threads 1`, ["--threads", "1"], peak);
  const noop = await variant(`noop backend c=${peak}`, ["--backend", "noop"], peak, [
    "--cache-dir",
    cacheDir,
  ]);
  return { sharp, tiny: { ...main, noWait, oneThread, noop } };
}

// ---------------------------------------------------------------------------------------------
// 4 + 5. vit-b32: service vs bare ORT, peak RSS

/** One measured chunk of vit-b32 calls through the service. */
interface B32Chunk {
  readonly images: number;
  readonly elapsedMs: number;
  readonly rttMs: readonly number[];
  readonly values: readonly CallTimings[];
  readonly serverCpuMs: number;
  readonly otherCores: number;
}

interface B32ServiceStep {
  readonly label: string;
  readonly batch: number;
  readonly inFlight: number;
  readonly calls: number;
  /** Pooled over the rounds: all images over all measured time. */
  readonly imagesPerSecond: number;
  readonly perRound: readonly number[];
  readonly stages: StageSummary;
  readonly serverCpuMsPerImage: number;
  readonly otherCores: number;
}

interface B32ComparedStep extends B32ServiceStep {
  /** Median over rounds of (service img/s ÷ bare ORT img/s in the same round). */
  readonly ratioToBare: number;
  readonly ratioPerRound: readonly number[];
}

async function b32Chunk(
  node: GpuNodeProcess,
  photos: readonly Buffer[],
  step: OrtStep,
  inFlight: number,
): Promise<B32Chunk> {
  const cpu = cpuWindow(node.pid);
  const r = await runLoad({
    concurrency: inFlight,
    imagesPerCall: step.batch,
    warmupCalls: step.warmupCalls,
    calls: step.calls,
    countFromStart: step.countFromStart ?? false,
    onWindow: cpu.onWindow,
    call: embedCall(client(node.url), photos, step.batch),
  });
  const run = cpu.result(r);
  return {
    images: r.images,
    elapsedMs: r.elapsedMs,
    rttMs: r.rttMs,
    values: r.values,
    serverCpuMs: run.serverCpuMsPerImage! * r.images,
    otherCores: run.otherCores,
  };
}

function poolChunks(label: string, batch: number, inFlight: number, chunks: readonly B32Chunk[]) {
  const images = chunks.reduce((s, c) => s + c.images, 0);
  const ms = chunks.reduce((s, c) => s + c.elapsedMs, 0);
  return {
    label,
    batch,
    inFlight,
    calls: images / batch,
    imagesPerSecond: (images * 1000) / ms,
    perRound: chunks.map((c) => (c.images * 1000) / c.elapsedMs),
    stages: stages(
      chunks.flatMap((c) => c.rttMs),
      chunks.flatMap((c) => c.values),
    ),
    serverCpuMsPerImage: chunks.reduce((s, c) => s + c.serverCpuMs, 0) / images,
    otherCores: Math.max(...chunks.map((c) => c.otherCores)),
  } satisfies B32ServiceStep;
}

/**
 * vit-b32 through the service (sequential calls, then 2 in flight) against bare ORT in its own
 * process. Both processes stay loaded and take turns, batch size by batch size and round by
 * round, so that they never compete and see the same background load.
 */
async function benchB32(plan: Plan, photos: readonly Buffer[], cacheDir: string, outDir: string) {
  const t0 = performance.now();
  const model = await ensureModel("vit-b32", cacheDir);
  progress(`vit-b32 model ready in ${(performance.now() - t0).toFixed(0)} ms: ${model.path}`);

  // Bare ORT gets the same images, already decoded and packed (the service decodes them itself).
  const largest = Math.max(...plan.b32.map((s) => s.batch));
  const packed = new Uint8Array(largest * IMAGE_BYTES);
  for (let i = 0; i < largest; i++) {
    const { pixels } = await decodeForClip(photos[i % photos.length]!, LIMITS);
    packed.set(pixels, i * IMAGE_BYTES);
  }
  const pixelsPath = resolve(outDir, `pixels-${largest}.u8`);
  await writeFile(pixelsPath, packed);

  const ortWorker = await startOrtWorker({ modelPath: model.path, pixelsPath, threads: THREADS });
  progress(`bare ORT loaded in ${ortWorker.loadMs.toFixed(0)} ms`);
  try {
    const args = ["--model", "vit-b32", "--threads", String(THREADS), "--cache-dir", cacheDir];
    const main = await withGpuNode(args, async (node) => {
      const ort: {
        batch: number;
        imagesPerSecond: number;
        perRound: number[];
        runMsP50: number;
        otherCores: number;
      }[] = [];
      const steps: B32ComparedStep[] = [];
      for (const step of plan.b32) {
        // One uncounted call on each side, then the turns.
        const counted = { ...step, warmupCalls: 0, countFromStart: true };
        await ortWorker.run({ ...counted, calls: 1 });
        await b32Chunk(node, photos, { ...counted, calls: 1 }, 1);
        const bare: OrtStepResult[] = [];
        const seq: B32Chunk[] = [];
        const piped: B32Chunk[] = [];
        const rate = (c: B32Chunk) => (c.images * 1000) / c.elapsedMs;
        for (let round = 0; round < plan.b32Rounds; round++) {
          bare.push(await ortWorker.run(counted));
          seq.push(await b32Chunk(node, photos, counted, 1));
          // Two in flight: discard two completions so the pipeline is full when counting starts.
          piped.push(await b32Chunk(node, photos, { ...step, warmupCalls: 2 }, 2));
          progress(
            `vit-b32 batch ${step.batch} round ${round + 1}: bare ORT ${bare.at(-1)!.imagesPerSecond.toFixed(1)}, ` +
              `service ${rate(seq.at(-1)!).toFixed(1)}, 2 in flight ${rate(piped.at(-1)!).toFixed(1)} img/s`,
          );
        }
        const images = bare.reduce((n, b) => n + b.calls * step.batch, 0);
        const ms = bare.reduce((n, b) => n + b.elapsedMs, 0);
        ort.push({
          batch: step.batch,
          imagesPerSecond: (images * 1000) / ms,
          perRound: bare.map((b) => b.imagesPerSecond),
          runMsP50: median(bare.map((b) => b.runMs.p50)),
          otherCores: Math.max(...bare.map((b) => b.otherCores)),
        });
        // The verdict uses the median over rounds of each round's ratio to the bare ORT run
        // beside it: a burst of background load then spoils one round, not the result.
        const ratios = (chunks: readonly B32Chunk[]) =>
          chunks.map((c, i) => rate(c) / bare[i]!.imagesPerSecond);
        for (const [inFlight, chunks] of [
          [1, seq],
          [2, piped],
        ] as const) {
          const label = `vit-b32 batch ${step.batch}, ${inFlight} in flight`;
          const rs = ratios(chunks);
          steps.push({
            ...poolChunks(label, step.batch, inFlight, chunks),
            ratioToBare: median(rs),
            ratioPerRound: rs,
          });
        }
      }
      return { startMs: node.startMs, ort, steps, memory: memoryMiB(node.pid) };
    });

    // Diagnostic: multi-image calls of N when the micro-batcher waits for all of a call's images
    // (--max-batch-size N, so that a full call dispatches at once; no split batches), each paired
    // with a fresh bare ORT chunk of the same batch size.
    const waitAll: { step: B32ServiceStep; bare: number }[] = [];
    for (const step of plan.b32WaitAll ? plan.b32.filter((s) => s.batch > 1) : []) {
      const extra = ["--max-batch-size", String(step.batch), "--max-batch-wait-ms", "1000"];
      const label = `vit-b32 batch ${step.batch}, ${extra.join(" ")}`;
      waitAll.push(
        await withGpuNode([...args, ...extra], async (node) => {
          const short = { ...step, warmupCalls: 0, countFromStart: true };
          await b32Chunk(node, photos, { ...short, calls: 1 }, 1);
          const bare = await ortWorker.run(short);
          const pooled = poolChunks(label, step.batch, 1, [await b32Chunk(node, photos, short, 1)]);
          progress(
            `${label}: ${pooled.imagesPerSecond.toFixed(1)} img/s, bare ORT ${bare.imagesPerSecond.toFixed(1)}`,
          );
          return {
            step: { ...pooled, otherCores: Math.max(pooled.otherCores, bare.otherCores) },
            bare: bare.imagesPerSecond,
          };
        }),
      );
    }
    const ortPeakRssMiB = await ortWorker.finish();
    return {
      model: { path: model.path, sha256: model.sha256 },
      ort: main.ort,
      ortPeakRssMiB,
      service: { startMs: main.startMs, steps: main.steps, memory: main.memory },
      waitAll,
    };
  } finally {
    await ortWorker.kill();
  }
}

// ---------------------------------------------------------------------------------------------
// Report

type SharpAndTiny = Awaited<ReturnType<typeof benchSharpAndTiny>>;
type SharpResult = SharpAndTiny["sharp"];
type TinyResult = SharpAndTiny["tiny"];
type B32Result = Awaited<ReturnType<typeof benchB32>>;

function report(sharpRuns: SharpResult, tiny: TinyResult, b32: B32Result, photoKiB: number) {
  const out: string[] = [];
  const sharpPeak = Math.max(...sharpRuns.map((s) => s.imagesPerSecond));
  const sharpPeakRow = sharpRuns.find((s) => s.imagesPerSecond === sharpPeak)!;
  const servicePeak = Math.max(...tiny.concurrency.map((c) => c.imagesPerSecond));
  const c1 = tiny.c1;
  const ortBy = new Map(b32.ort.map((s) => [s.batch, s]));
  const peakRss = b32.service.memory.peakRss;
  const cpu = (server: number, client: number) =>
    `server ${fmt(server, 2)} + client ${fmt(client, 2)} CPU ms/img`;
  const rounds = (xs: readonly number[]) => xs.map((x) => fmt(x, 1)).join(" / ");

  // # | measure | result | target | verdict | other load (cores used by other processes)
  const rows: string[][] = [];
  for (const s of sharpRuns) {
    rows.push([
      "1",
      `raw sharp decodeForClip, ${s.inFlight} in flight`,
      `${fmt(s.imagesPerSecond, 0)} img/s (${fmt(s.clientCpuMsPerImage, 2)} CPU ms/img)`,
      "",
      "",
      fmt(s.otherCores, 2),
    ]);
  }
  for (const c of tiny.concurrency) {
    const ratio = c.imagesPerSecond / sharpPeak;
    const isPeak = c.imagesPerSecond === servicePeak;
    rows.push([
      "2",
      `service vit-tiny, gRPC h2c, 1 img/call, concurrency ${c.concurrency}`,
      `${fmt(c.imagesPerSecond, 0)} img/s = ${pct(ratio)} of sharp peak (${cpu(c.serverCpuMsPerImage, c.clientCpuMsPerImage)})`,
      isPeak ? `best ≥ ${pct(TARGETS.serviceVsSharp)} of sharp peak` : "",
      isPeak ? verdict(ratio >= TARGETS.serviceVsSharp) : "",
      fmt(c.otherCores, 2),
    ]);
  }
  for (const d of [tiny.oneThread, tiny.noop]) {
    rows.push([
      "2",
      `diagnostic: ${d.label}`,
      `${fmt(d.imagesPerSecond, 0)} img/s = ${pct(d.imagesPerSecond / sharpPeak)} of sharp peak (${cpu(d.serverCpuMsPerImage!, d.clientCpuMsPerImage)})`,
      "",
      "",
      fmt(d.otherCores, 2),
    ]);
  }
  const c1Other = median(
    tiny.concurrency.find((c) => c.concurrency === 1)?.runs.map((r) => r.otherCores) ?? [],
  );
  rows.push([
    "3",
    "server overhead (total − inference), vit-tiny, 1 img/call, c=1",
    `p50 ${fmt(c1.overhead.p50, 2)} ms, p95 ${fmt(c1.overhead.p95, 2)} ms`,
    `p50 ≤ ${TARGETS.overheadP50Ms} ms`,
    verdict(c1.overhead.p50 <= TARGETS.overheadP50Ms),
    fmt(c1Other, 2),
  ]);
  rows.push([
    "3",
    "client round trip, vit-tiny, 1 img/call, c=1",
    `p50 ${fmt(c1.rtt.p50, 2)} ms, p95 ${fmt(c1.rtt.p95, 2)} ms`,
    "",
    "",
    fmt(c1Other, 2),
  ]);
  const nw = tiny.noWait;
  rows.push([
    "3",
    `diagnostic: ${nw.label}`,
    `overhead p50 ${fmt(nw.overhead.p50, 2)} ms, p95 ${fmt(nw.overhead.p95, 2)} ms; round trip p50 ${fmt(nw.rtt.p50, 2)} ms, p95 ${fmt(nw.rtt.p95, 2)} ms`,
    "",
    "",
    fmt(nw.otherCores, 2),
  ]);
  for (const s of b32.service.steps) {
    const o = ortBy.get(s.batch)!;
    const sequential = s.inFlight === 1;
    rows.push([
      "4",
      `vit-b32 batch ${s.batch}: service ${sequential ? "(sequential calls)" : "(2 calls in flight)"} vs bare ORT`,
      `${fmt(s.imagesPerSecond, 1)} vs ${fmt(o.imagesPerSecond, 1)} img/s; per-round ratio median ${pct(s.ratioToBare)} (${s.ratioPerRound.map(pct).join(" ")})`,
      sequential ? `≥ ${pct(TARGETS.serviceVsOrt)}` : `(≥ ${pct(TARGETS.serviceVsOrt)})`,
      verdict(s.ratioToBare >= TARGETS.serviceVsOrt),
      fmt(Math.max(s.otherCores, o.otherCores), 2),
    ]);
  }
  for (const { step: wa, bare } of b32.waitAll) {
    rows.push([
      "4",
      `diagnostic: ${wa.label}, sequential, vs bare ORT run beside it`,
      `${fmt(wa.imagesPerSecond, 1)} vs ${fmt(bare, 1)} img/s = ${pct(wa.imagesPerSecond / bare)}`,
      "",
      "",
      fmt(wa.otherCores, 2),
    ]);
  }
  rows.push([
    "5",
    "service peak RSS (VmHWM), vit-b32, after the load above",
    `${fmt(peakRss, 0)} MiB (bare ORT process: ${fmt(b32.ortPeakRssMiB, 0)} MiB)`,
    `≤ ${fmt(TARGETS.peakRssMiB, 0)} MiB`,
    verdict(peakRss <= TARGETS.peakRssMiB),
    "",
  ]);
  out.push(markdownTable(["#", "measure", "result", "target", "verdict", "other load"], rows));

  const seqBy = new Map(b32.service.steps.filter((s) => s.inFlight === 1).map((s) => [s.batch, s]));
  out.push(
    `Sharp peak used for ratios: ${fmt(sharpPeak, 0)} img/s (${sharpPeakRow.inFlight} in flight). ` +
      `Photos: ${BENCH_WIDTH}x${BENCH_HEIGHT} q${BENCH_QUALITY} JPEGs, mean ${fmt(photoKiB, 1)} KiB. ` +
      `vit-b32 per round, img/s (bare ORT | service sequential): ` +
      `${b32.ort.map((o) => `batch ${o.batch} ${rounds(o.perRound)} | ${rounds(seqBy.get(o.batch)?.perRound ?? [])}`).join("; ")}. ` +
      `"other load" = cores' worth of CPU used by other processes during the measured window ` +
      `(max over the compared runs; of 2 cores: above ~0.2 the numbers are noisy).\n`,
  );

  const stageRow = (label: string, s: StageSummary, bare?: number) => [
    label,
    String(s.calls),
    fmt(s.rtt.p50, 2),
    fmt(s.rtt.p95, 2),
    fmt(s.total.p50, 2),
    fmt(s.decode.p50, 2),
    fmt(s.queue.p50, 2),
    fmt(s.pack.p50, 2),
    fmt(s.inference.p50, 2),
    fmt(s.overhead.p50, 2),
    fmt(s.overhead.p95, 2),
    fmt(s.outsideServer.p50, 2),
    bare === undefined ? "" : fmt(bare, 2),
  ];
  out.push(
    "Per-call stages, ms (p50 unless noted). decode, queue and inference are the call's slowest image " +
      "or batch; overhead = total − inference; outside server = round trip − total; bare ORT run = " +
      "one session.run of the same batch size:\n",
  );
  out.push(
    markdownTable(
      [
        "calls",
        "n",
        "rtt",
        "rtt p95",
        "total",
        "decode",
        "queue",
        "pack",
        "inference",
        "overhead",
        "ovh p95",
        "outside server",
        "bare ORT run",
      ],
      [
        stageRow("vit-tiny 1 img, c=1", c1),
        stageRow("vit-tiny 1 img, c=1, wait 0", nw),
        ...b32.service.steps.map((s) => stageRow(s.label, s.stages, ortBy.get(s.batch)?.runMsP50)),
        ...b32.waitAll.map(({ step }) =>
          stageRow(step.label, step.stages, ortBy.get(step.batch)?.runMsP50),
        ),
      ],
    ),
  );
  return out.join("\n");
}

async function versions() {
  const pkg = installedVersion;
  return {
    node: process.version,
    sharp: await pkg("sharp"),
    onnxruntimeNode: await pkg("onnxruntime-node"),
    connectNode: await pkg("@connectrpc/connect-node"),
  };
}

const USAGE = `usage: npm run bench:gpu-node -- [--quick] [--cache-dir DIR]

The gpu-node benchmark for this machine (~3-4 min; --quick ~30 s): raw sharp preprocessing, the
service's img/s through gRPC with vit-tiny, per-image overhead, vit-b32 against bare ONNX Runtime
and peak RSS. Prints Markdown tables and writes the full results to .cache/bench/.`;

async function main(): Promise<void> {
  const { values } = parseCli(USAGE, {
    options: {
      quick: { type: "boolean", default: false },
      "cache-dir": { type: "string", default: resolve(ROOT, ".cache") },
    },
  });
  // Ctrl-C or a kill: exit through process.exit so that the children are killed too (test/support/processes.ts).
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      progress(`${signal}: stopping`);
      process.exit(130);
    });
  }
  const plan = values.quick ? QUICK : FULL;
  const cacheDir = resolve(values["cache-dir"]);
  const outDir = resolve(cacheDir, "bench");
  await mkdir(outDir, { recursive: true });
  const started = new Date();
  const env = {
    ...(await versions()),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "",
    loadavgAtStart: loadavg(),
    mode: values.quick ? "quick" : "full",
    date: started.toISOString(),
  };
  progress(`${env.mode} run on ${env.cpus} CPUs (${env.cpuModel}), load ${env.loadavgAtStart}`);

  const photos = await benchPhotos(plan.images);
  const photoKiB = photos.reduce((s, p) => s + p.length, 0) / photos.length / 1024;
  progress(`${photos.length} photos, mean ${photoKiB.toFixed(1)} KiB`);

  const { sharp: sharpRuns, tiny } = await benchSharpAndTiny(plan, photos, cacheDir);
  const b32 = await benchB32(plan, photos, cacheDir, outDir);

  const wallS = performance.now() / 1000;
  const text = report(sharpRuns, tiny, b32, photoKiB);
  const avg = (xs: readonly number[]) => xs.map((x) => x.toFixed(2)).join(" ");
  const header =
    `## gpu-node benchmark (${env.mode}), ${env.date}\n\n` +
    `Node ${env.node}, sharp ${env.sharp}, onnxruntime-node ${env.onnxruntimeNode}, ` +
    `${env.cpus} CPUs (${env.cpuModel}); load average ${avg(env.loadavgAtStart)} at start, ` +
    `${avg(loadavg())} at end; vit-b32 with --threads ${THREADS}; other settings default; ` +
    `medians of ${plan.reps} run(s) where repeated; wall ${wallS.toFixed(0)} s.\n`;
  process.stdout.write(`${header}\n${text}`);

  const json = {
    env: { ...env, loadavgAtEnd: loadavg(), wallS },
    plan,
    targets: TARGETS,
    photos: { count: photos.length, width: BENCH_WIDTH, height: BENCH_HEIGHT, meanKiB: photoKiB },
    sharp: sharpRuns,
    vitTiny: tiny,
    vitB32: b32,
  };
  const stamp = started.toISOString().replace(/[:.]/g, "-");
  const file = resolve(outDir, `gpu-node-${env.mode}-${stamp}.json`);
  const body = `${JSON.stringify(json, null, 2)}\n`;
  await writeFile(file, body);
  await writeFile(resolve(outDir, `gpu-node-${env.mode}-latest.json`), body);
  process.stdout.write(`\nResults: ${file}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`,
  );
  process.exitCode = 1;
});
