/**
 * gpu-node metrics: receives each call's outcome and stage timings (a Connect interceptor), each
 * backend batch (a batch-runner wrapper), the live queue state and Triton's statistics, and hands
 * them on as Prometheus metrics (prom-client, base units) and as the per-second history that
 * /dashboard draws.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { Backend, ModelDescription } from "../backends/backend.ts";
import type { TritonStats } from "../backends/triton/stats.ts";
import type { BatchRunner } from "../batching/batcher.ts";
import {
  type HistorySnapshot,
  RecentHistory,
  type SecondSummary,
  STAGES,
  type StageSeconds,
  type WindowSummary,
} from "./dashboard/recent.ts";

/**
 * Stage buckets, in seconds: 50 µs (packing a small batch) up to 10 s (a call stuck behind a
 * full queue of vit-b32 on CPU). Roughly ×2–2.5 apart, so p50/p95/p99 interpolate within a
 * factor of ~2 anywhere in that range.
 */
export const DURATION_BUCKETS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
  5, 10,
];
/** Batch sizes: powers of two up to the largest --max-batch-size people use. */
export const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];
/** The Triton phases ModelStatistics reports, as label values. */
export const TRITON_PHASES = ["queue", "compute_input", "compute_infer", "compute_output"] as const;
/** Seconds the dashboard's headline figures cover. */
export const SUMMARY_SECONDS = 60;

/** Live queue state, read at scrape time. */
export interface QueueState {
  /** Images waiting in the micro-batcher for a batch. */
  queued(): number;
  /** Backend batches running now. */
  runningBatches(): number;
  /** Images admitted (decoding, queued or in inference), and the limit (--max-queued-images). */
  admitted(): number;
  readonly admittedLimit: number;
}

/** A backend that reports Triton's ModelStatistics (the triton backend's `stats()`). */
export interface TritonStatsSource {
  stats(): TritonStats | undefined;
}

/** The triton backend's statistics, when `backend` has them; undefined for the others. */
export function tritonStatsOf(backend: Backend): TritonStatsSource | undefined {
  const b = backend as Backend & Partial<TritonStatsSource>;
  return typeof b.stats === "function" ? (b as TritonStatsSource) : undefined;
}

export interface MetricsOptions {
  readonly model: ModelDescription;
  /** Triton's statistics (absent for the other backends: no Triton series are exported). */
  readonly triton?: TritonStatsSource;
  /** Seconds of per-second history kept for /dashboard (default 300). */
  readonly historySeconds?: number;
  /** prom-client's process and Node.js runtime metrics (default on). */
  readonly processMetrics?: boolean;
  /** Wall clock, ms (tests). */
  readonly now?: () => number;
}

/** What /dashboard/data.json answers. Latencies in ms, rates per second. */
export interface DashboardData {
  readonly node: {
    readonly model: string;
    readonly modelVersion: string;
    readonly backend: string;
    readonly layout: string;
    readonly maxBatchSize: number;
    readonly startedAt: string;
    readonly uptimeSeconds: number;
  };
  readonly generatedAt: string;
  readonly stages: readonly string[];
  /** Since start: the same numbers as the Prometheus counters. */
  readonly totals: {
    readonly calls: number;
    readonly errors: number;
    readonly images: number;
    readonly failedImages: number;
    readonly batches: number;
  };
  /** The last SUMMARY_SECONDS completed seconds. */
  readonly summary: WindowSummary;
  /** One entry per completed second of the kept history, oldest first. */
  readonly series: readonly SecondSummary[];
  readonly gauges: {
    readonly inFlightCalls: number;
    readonly queuedImages: number;
    readonly admittedImages: number;
    readonly admittedImagesLimit: number;
    readonly runningBatches: number;
  };
  /** Triton's own view of the last statistics window (ms per inference request); null without Triton. */
  readonly triton: {
    readonly readAt: string | null;
    readonly windowSeconds: number | null;
    readonly requests: number | null;
    readonly perRequestMs: Readonly<
      Record<"queue" | "computeInput" | "computeInfer" | "computeOutput", number>
    > | null;
    readonly totals: { readonly success: number; readonly fail: number } | null;
  } | null;
}

/**
 * One process's share of a cluster's dashboard (crosses processes as JSON): cluster workers send
 * theirs to the primary, whose `dashboardData(snapshots)` merges them.
 */
export interface MetricsSnapshot {
  readonly totals: DashboardData["totals"];
  readonly gauges: DashboardData["gauges"];
  readonly history: HistorySnapshot;
  readonly triton: DashboardData["triton"];
}

/** What the metrics port serves from: one node's metrics, or a cluster's merged view. */
export interface MetricsSource {
  /** The Prometheus text exposition, and its content type. */
  exposition(): Promise<string>;
  readonly contentType: string;
  dashboardData(): DashboardData | Promise<DashboardData>;
}

export interface NodeMetrics extends MetricsSource {
  readonly registry: Registry;
  readonly history: RecentHistory;
  /**
   * Connect interceptor for every call: in-flight gauge, calls and errors by Connect code,
   * images by outcome, stage histograms from the response's timings. Put it first (outermost),
   * so that it sees the codes the inner interceptors settled on.
   */
  readonly interceptor: Interceptor;
  /** Wraps the batch runner: batch sizes and time in the backend. */
  timeBatches(run: BatchRunner): BatchRunner;
  /** Where the queue gauges read from (the server calls this once it has built them). */
  watchQueue(state: QueueState): void;
  /** This node's dashboard; with other processes' snapshots, their numbers merged in. */
  dashboardData(others?: readonly MetricsSnapshot[]): DashboardData;
  snapshot(): MetricsSnapshot;
}

/** `ResourceExhausted` → `resource_exhausted`: the Connect protocol's own spelling of a code. */
export function codeName(code: Code): string {
  return Code[code].replace(/[A-Z]/g, (c, i: number) => (i > 0 ? "_" : "") + c.toLowerCase());
}

const codeOfError = (err: unknown): string =>
  err instanceof ConnectError ? codeName(err.code) : "unknown";

interface TimingsLike {
  readonly decodeUs: number;
  readonly preprocessUs: number;
  readonly queueUs: number;
  readonly inferenceUs: number;
  readonly totalUs: number;
}

const stageSeconds = (t: TimingsLike): StageSeconds => ({
  decode: t.decodeUs / 1e6,
  preprocess: t.preprocessUs / 1e6,
  queue: t.queueUs / 1e6,
  inference: t.inferenceUs / 1e6,
  total: t.totalUs / 1e6,
});

/** Fields of the embedder messages this module reads (duck-typed: it sees every method). */
interface CallMessage {
  readonly images?: readonly unknown[];
  readonly embeddings?: readonly unknown[];
  readonly timings?: TimingsLike;
  readonly result?: { readonly case?: string; readonly value?: unknown };
}

export function createMetrics(opts: MetricsOptions): NodeMetrics {
  const now = opts.now ?? Date.now;
  const startedAt = now();
  const { model } = opts;
  const registry = new Registry();
  const history = new RecentHistory({ seconds: opts.historySeconds ?? 300, now });
  if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  let queue: QueueState | undefined;
  const totals = { calls: 0, errors: 0, images: 0, failedImages: 0, batches: 0 };
  let inFlightCalls = 0;

  new Gauge({
    name: "gpu_node_info",
    help: "The model this gpu-node serves (value 1)",
    labelNames: ["model", "model_version", "backend", "layout", "provider", "device"] as const,
    registers,
    // A cluster's processes all serve the same model: one series, not their sum.
    aggregator: "first",
  }).set(
    {
      model: model.name,
      model_version: model.version,
      backend: model.backend,
      layout: model.layout,
      provider: model.provider ?? "",
      device: model.device ?? "",
    },
    1,
  );
  const stageDuration = new Histogram({
    name: "gpu_node_stage_duration_seconds",
    help: "Per call (or EmbedStream item): time in each stage; an Embed of several images counts each stage's slowest image, total is the whole call",
    labelNames: ["stage"] as const,
    buckets: DURATION_BUCKETS,
    registers,
  });
  for (const stage of STAGES) stageDuration.zero({ stage });
  const batchSize = new Histogram({
    name: "gpu_node_batch_size",
    help: "Images in each backend batch the micro-batcher formed",
    buckets: BATCH_SIZE_BUCKETS,
    registers,
  });
  const batchInference = new Histogram({
    name: "gpu_node_batch_inference_seconds",
    help: "Time of each backend batch in the backend (ONNX Runtime run, or the round trip to Triton)",
    buckets: DURATION_BUCKETS,
    registers,
  });
  const inFlight = new Gauge({
    name: "gpu_node_in_flight_calls",
    help: "RPCs being served now",
    registers,
  });
  new Gauge({
    name: "gpu_node_queued_images",
    help: "Images decoded and waiting in the micro-batcher for a backend batch",
    registers,
    collect() {
      this.set(queue?.queued() ?? 0);
    },
  });
  new Gauge({
    name: "gpu_node_admitted_images",
    help: "Images admitted now (decoding, queued or in inference); at the limit, calls fail with resource_exhausted",
    registers,
    collect() {
      this.set(queue?.admitted() ?? 0);
    },
  });
  new Gauge({
    name: "gpu_node_admitted_images_limit",
    help: "Images that may be admitted at once (--max-queued-images)",
    registers,
    collect() {
      this.set(queue?.admittedLimit ?? 0);
    },
  });
  new Gauge({
    name: "gpu_node_running_batches",
    help: "Backend batches running now",
    registers,
    collect() {
      this.set(queue?.runningBatches() ?? 0);
    },
  });
  const calls = new Counter({
    name: "gpu_node_calls_total",
    help: "Finished RPCs by method and Connect code (ok for success)",
    labelNames: ["method", "code"] as const,
    registers,
  });
  const errors = new Counter({
    name: "gpu_node_errors_total",
    help: "RPCs that failed, by method and Connect code",
    labelNames: ["method", "code"] as const,
    registers,
  });
  const images = new Counter({
    name: "gpu_node_images_total",
    help: "Images by outcome: ok (embedded) or the Connect code that stopped them",
    labelNames: ["outcome"] as const,
    registers,
  });
  images.inc({ outcome: "ok" }, 0);

  if (opts.triton) defineTritonMetrics(opts.triton, registers);

  const observeCall = (timings: TimingsLike | undefined, n: number) => {
    totals.images += n;
    images.inc({ outcome: "ok" }, n);
    if (!timings) return;
    const s = stageSeconds(timings);
    for (const stage of STAGES) stageDuration.observe({ stage }, s[stage]);
    history.call(s, n);
  };
  const failImages = (outcome: string, n: number) => {
    if (n <= 0) return;
    totals.failedImages += n;
    images.inc({ outcome }, n);
    history.failedImages(n);
  };

  const interceptor: Interceptor = (next) => async (req) => {
    const method = req.method.name;
    const requested = req.stream ? 0 : ((req.message as CallMessage).images?.length ?? 0);
    inFlightCalls++;
    inFlight.inc();
    let done = false;
    const finish = (code: string) => {
      if (done) return;
      done = true;
      inFlightCalls--;
      inFlight.dec();
      totals.calls++;
      calls.inc({ method, code });
      if (code !== "ok") {
        totals.errors++;
        errors.inc({ method, code });
        history.error();
      }
    };
    try {
      const res = await next(req);
      if (!res.stream) {
        const m = res.message as CallMessage;
        if (m.embeddings) observeCall(m.timings, m.embeddings.length);
        finish("ok");
        return res;
      }
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          let code = "ok";
          try {
            for await (const m of messages) {
              const item = m as CallMessage;
              if (item.result?.case === "vector") observeCall(item.timings, 1);
              else if (item.result?.case === "error") {
                const value = item.result.value as { code?: string } | undefined;
                failImages(value?.code || "unknown", 1);
              }
              yield m;
            }
          } catch (err) {
            code = codeOfError(err);
            throw err;
          } finally {
            finish(code);
          }
        })(),
      };
    } catch (err) {
      const code = codeOfError(err);
      failImages(code, requested);
      finish(code);
      throw err;
    }
  };

  const timeBatches =
    (run: BatchRunner): BatchRunner =>
    async (batch, signal) => {
      const out = await run(batch, signal);
      totals.batches++;
      batchSize.observe(batch.length);
      batchInference.observe(out.inferUs / 1e6);
      history.batch(batch.length);
      return out;
    };

  const gauges = (): DashboardData["gauges"] => ({
    inFlightCalls,
    queuedImages: queue?.queued() ?? 0,
    admittedImages: queue?.admitted() ?? 0,
    admittedImagesLimit: queue?.admittedLimit ?? 0,
    runningBatches: queue?.runningBatches() ?? 0,
  });
  const ownTriton = () => (opts.triton ? tritonSummary(opts.triton.stats()) : null);

  const dashboardData = (others: readonly MetricsSnapshot[] = []): DashboardData => {
    const t = now();
    let view = history;
    const sum = { ...totals };
    const g = { ...gauges() };
    let triton = ownTriton();
    if (others.length > 0) {
      view = new RecentHistory({ seconds: history.seconds, now });
      view.merge(history.snapshot());
      for (const o of others) {
        view.merge(o.history);
        for (const k of Object.keys(sum) as (keyof typeof sum)[]) sum[k] += o.totals[k];
        for (const k of Object.keys(g) as (keyof typeof g)[]) g[k] += o.gauges[k];
        // Triton's statistics are the model's, the same whichever process read them.
        triton ??= o.triton;
      }
    }
    return {
      node: {
        model: model.name,
        modelVersion: model.version,
        backend: model.backend,
        layout: model.layout,
        maxBatchSize: model.maxBatchSize,
        startedAt: new Date(startedAt).toISOString(),
        uptimeSeconds: Math.floor((t - startedAt) / 1000),
      },
      generatedAt: new Date(t).toISOString(),
      stages: STAGES,
      totals: sum,
      summary: view.summary(SUMMARY_SECONDS, startedAt),
      series: view.series(startedAt),
      gauges: g,
      triton,
    };
  };

  return {
    registry,
    history,
    interceptor,
    timeBatches,
    watchQueue(state) {
      queue = state;
    },
    dashboardData,
    snapshot: () => ({
      totals: { ...totals },
      gauges: gauges(),
      history: history.snapshot(),
      triton: ownTriton(),
    }),
    exposition: () => registry.metrics(),
    contentType: registry.contentType,
  };
}

/**
 * Triton's cumulative ModelStatistics, re-exported as counters at scrape time (they reset when
 * Triton restarts, which `rate()` handles). Mean time per request in a phase is
 * rate(gpu_node_triton_duration_seconds_total) / rate(gpu_node_triton_requests_total{status="success"}).
 */
function defineTritonMetrics(source: TritonStatsSource, registers: Registry[]): void {
  const phaseKey = {
    queue: "queue",
    compute_input: "computeInput",
    compute_infer: "computeInfer",
    compute_output: "computeOutput",
  } as const;
  const duration: Counter<"phase"> = new Counter({
    name: "gpu_node_triton_duration_seconds_total",
    // Every cluster worker reads the same (model-wide) statistics: the max, never the sum.
    aggregator: "max",
    help: "Time Triton reports in each phase of this model's inference requests (cumulative, from ModelStatistics)",
    labelNames: ["phase"] as const,
    registers,
    collect() {
      const s = source.stats();
      duration.reset();
      for (const phase of TRITON_PHASES) {
        duration.inc({ phase }, (s?.total.us[phaseKey[phase]] ?? 0) / 1e6);
      }
    },
  });
  const requests: Counter<"status"> = new Counter({
    name: "gpu_node_triton_requests_total",
    // Every cluster worker reads the same (model-wide) statistics: the max, never the sum.
    aggregator: "max",
    help: "Inference requests Triton counted for this model, by status (cumulative, from ModelStatistics)",
    labelNames: ["status"] as const,
    registers,
    collect() {
      const s = source.stats();
      requests.reset();
      requests.inc({ status: "success" }, s?.total.success ?? 0);
      requests.inc({ status: "fail" }, s?.total.fail ?? 0);
    },
  });
  const inferences: Counter = new Counter({
    name: "gpu_node_triton_inferences_total",
    // Every cluster worker reads the same (model-wide) statistics: the max, never the sum.
    aggregator: "max",
    help: "Images (batch elements) Triton inferred for this model (cumulative)",
    registers,
    collect() {
      inferences.reset();
      inferences.inc(source.stats()?.total.inferences ?? 0);
    },
  });
  const executions: Counter = new Counter({
    name: "gpu_node_triton_executions_total",
    // Every cluster worker reads the same (model-wide) statistics: the max, never the sum.
    aggregator: "max",
    help: "Model executions Triton ran after its own dynamic batching (cumulative)",
    registers,
    collect() {
      executions.reset();
      executions.inc(source.stats()?.total.executions ?? 0);
    },
  });
}

function tritonSummary(s: TritonStats | undefined): DashboardData["triton"] {
  if (!s)
    return { readAt: null, windowSeconds: null, requests: null, perRequestMs: null, totals: null };
  const per = s.window?.perInferenceUs;
  return {
    readAt: new Date(s.at).toISOString(),
    windowSeconds: s.window ? s.window.ms / 1000 : null,
    requests: s.window?.requests ?? null,
    perRequestMs: per
      ? {
          queue: per.queue / 1000,
          computeInput: per.computeInput / 1000,
          computeInfer: per.computeInfer / 1000,
          computeOutput: per.computeOutput / 1000,
        }
      : null,
    totals: { success: s.total.success, fail: s.total.fail },
  };
}
