/**
 * The multi-process gpu-node's primary: forks `processes` workers (worker.ts) that share
 * the port through node:cluster, hands each its settings, replaces a worker that dies, drains
 * them all on close and serves the cluster's merged /metrics and /dashboard. With the
 * onnxruntime backend it also owns the model and the one micro-batcher in front of it, fed with
 * the workers' decoded pixels (channel.ts); triton and noop workers have backends of
 * their own (Triton's dynamic batcher merges their batches).
 */
import cluster, { type Worker } from "node:cluster";
import { readdirSync, unlinkSync } from "node:fs";
import type { Socket } from "node:net";
import { resolve } from "node:path";
import { AggregatorRegistry } from "prom-client";
import type { Backend, ModelDescription } from "../backends/backend.ts";
import { createBackend } from "../backends/create.ts";
import { SHM_DIR, SHM_PREFIX } from "../backends/triton/shm.ts";
import type { MicroBatcher } from "../batching/batcher.ts";
import { createModelBatcher } from "../batching/model-batcher.ts";
import type { Config } from "../config.ts";
import { nodeUrl, summary } from "../config.ts";
import { createLogger } from "../logger.ts";
import {
  createMetrics,
  type MetricsSource,
  type NodeMetrics,
  tritonStatsOf,
} from "../observability/metrics.ts";
import { type MetricsServer, startMetricsServerOrWarn } from "../observability/metrics-server.ts";
import type { CloseOptions, GpuNode, GpuNodeOverrides } from "../rpc/server.ts";
import { loadTlsFiles } from "../rpc/tls.ts";
import { type HostedChannel, hostChannel } from "./channel.ts";
import type { FromWorker, ToWorker } from "./protocol.ts";

const WORKER_ENTRY = resolve(import.meta.dirname, "worker.ts");
/** A worker that dies sooner than this after its start counts as a crash loop: back off. */
const QUICK_DEATH_MS = 5000;
const MAX_BACKOFF_MS = 5000;
/** How long the primary waits for a worker's answer to a metrics or drain request. */
const REPLY_TIMEOUT_MS = 1000;

export interface ClusterNode extends GpuNode {
  /** Process ids of the workers running now, by slot. */
  workerPids(): number[];
}

interface Slot {
  readonly index: number;
  worker?: Worker;
  channel?: HostedChannel;
  listening: boolean;
  inFlight: number;
  startedAt: number;
  quickDeaths: number;
  timer?: NodeJS.Timeout;
  onDraining?: (inFlight: number) => void;
}

/** Each worker's share of a node-wide limit, never below what one call may need. */
function share(total: number, processes: number, atLeast: number): number {
  return Math.max(atLeast, Math.ceil(total / processes));
}

/** Starts the primary and its workers; resolves once every worker listens. */
export async function startCluster(
  config: Config,
  overrides: GpuNodeOverrides = {},
): Promise<ClusterNode> {
  if (!cluster.isPrimary) throw new Error("a cluster worker cannot start a cluster of its own");
  if (overrides.decode) {
    throw new Error("a decoder override cannot cross into worker processes: use processes 1");
  }
  const log = overrides.log ?? createLogger(config.logLevel);
  // An in-process backend holds the model: it gets loaded once, here, behind one batcher.
  const central = overrides.backend !== undefined || config.backend === "onnxruntime";
  let backend: Backend | undefined;
  let model: ModelDescription | undefined;
  let metrics: NodeMetrics | undefined;
  let batcher: MicroBatcher | undefined;
  if (central) {
    backend = overrides.backend ?? (await createBackend(config, log));
    model = await backend.start();
    log.info({ ...model }, "model loaded");
    metrics = createMetrics({ model, triton: tritonStatsOf(backend) });
    batcher = createModelBatcher(config, backend, model, metrics);
    const b = batcher;
    // Admission happens in the workers; the queue and the batches live here.
    metrics.watchQueue({
      queued: () => b.queued,
      runningBatches: () => b.running,
      admitted: () => 0,
      admittedLimit: 0,
    });
  }

  const workerConfig: Config = {
    ...config,
    processes: 1,
    maxQueuedImages: share(config.maxQueuedImages, config.processes, config.maxImagesPerRequest),
    decodeConcurrency: share(config.decodeConcurrency, config.processes, 1),
    // The primary serves the whole cluster's metrics on the metrics port.
    metrics: false,
  };
  // The port the workers share. Every worker, replacements included, listens with the configured
  // value: the primary keys the shared handle by it (a replacement asking for the bound port
  // instead of 0 would get EADDRINUSE). With port 0 the number holds while any worker lives.
  let port = config.port;
  let started = false;
  let closing: Promise<void> | undefined;
  let startFailure: ((err: Error) => void) | undefined;
  let onListening: (() => void) | undefined;
  const slots: Slot[] = Array.from({ length: config.processes }, (_, index) => ({
    index,
    listening: false,
    inFlight: 0,
    startedAt: 0,
    quickDeaths: 0,
  }));
  let nextRequest = 1;
  const metricRequests = new Map<number, (m: Extract<FromWorker, { t: "metrics" }>) => void>();

  const send = (worker: Worker, message: ToWorker) => {
    if (worker.isConnected()) worker.send(message, undefined, () => {});
  };

  const onMessage = (slot: Slot, worker: Worker, m: FromWorker) => {
    if (slot.worker !== worker) return;
    switch (m.t) {
      case "listening":
        slot.listening = true;
        if (port === 0) port = m.port;
        else if (m.port !== port) {
          log.warn({ worker: slot.index, port: m.port, was: port }, "the shared port changed");
        }
        model ??= m.model;
        log.info(
          {
            worker: slot.index,
            pid: worker.process.pid,
            port: m.port,
            jpegFastPath: m.jpegFastPath,
          },
          "worker listening",
        );
        onListening?.();
        return;
      case "failed":
        log.error(
          { worker: slot.index, pid: worker.process.pid, error: m.message },
          "worker failed to start",
        );
        if (!started) startFailure?.(new Error(m.message));
        return;
      case "load":
        slot.inFlight = m.inFlight;
        return;
      case "draining":
        slot.inFlight = m.inFlight;
        slot.onDraining?.(m.inFlight);
        return;
      case "metrics":
        metricRequests.get(m.id)?.(m);
        return;
    }
  };

  const spawn = (slot: Slot) => {
    slot.timer = undefined;
    if (closing) return;
    cluster.setupPrimary({
      exec: WORKER_ENTRY,
      args: [],
      // Debugger flags would make every worker fight for the same inspector port.
      execArgv: process.execArgv.filter((a) => !/^--(inspect|debug)/.test(a)),
      // fd 4: the pixel channel to this process's batcher (a socketpair).
      stdio: central
        ? ["ignore", "inherit", "inherit", "ipc", "pipe"]
        : ["ignore", "inherit", "inherit", "ipc"],
    });
    const worker = cluster.fork();
    slot.worker = worker;
    slot.listening = false;
    slot.inFlight = 0;
    slot.startedAt = performance.now();
    if (central) {
      slot.channel = hostChannel(worker.process.stdio![4] as Socket, {
        batcher: batcher!,
        ready: async () => ({
          ready: await backend!.ready().catch(() => false),
          reason: backend!.notReadyReason?.(),
        }),
        onInternalError: (err) => log.error({ err, worker: slot.index }, "internal error"),
      });
    }
    worker.on("message", (m: FromWorker) => onMessage(slot, worker, m));
    worker.on("error", (err) => log.warn({ err, worker: slot.index }, "worker channel error"));
    worker.once("exit", (code, signal) => onExit(slot, worker, code, signal));
    send(worker, {
      t: "start",
      config: workerConfig,
      index: slot.index,
      central,
      model,
    });
  };

  const onExit = (slot: Slot, worker: Worker, code: number | null, signal: string | null) => {
    if (slot.worker !== worker) return;
    slot.channel?.detach();
    slot.channel = undefined;
    slot.worker = undefined;
    slot.listening = false;
    slot.onDraining?.(0);
    const pid = worker.process.pid;
    if (config.backend === "triton" && config.tritonShm && code !== 0) removeShmFiles(pid);
    if (closing) return;
    if (!started) {
      startFailure?.(new Error(`worker ${slot.index} exited during start-up (${code ?? signal})`));
      return;
    }
    // Its connections died with it: their clients saw the connection close, never a hang.
    const quick = performance.now() - slot.startedAt < QUICK_DEATH_MS;
    slot.quickDeaths = quick ? slot.quickDeaths + 1 : 0;
    const delay =
      slot.quickDeaths === 0 ? 0 : Math.min(MAX_BACKOFF_MS, 100 * 2 ** (slot.quickDeaths - 1));
    log.error(
      { worker: slot.index, pid, code, signal, inFlight: slot.inFlight, restartInMs: delay },
      "worker exited: starting a replacement",
    );
    slot.inFlight = 0;
    slot.timer = setTimeout(() => spawn(slot), delay);
  };

  const killAll = () => {
    for (const s of slots) {
      clearTimeout(s.timer);
      s.worker?.process.kill("SIGKILL");
    }
  };

  try {
    await new Promise<void>((resolveStart, rejectStart) => {
      startFailure = rejectStart;
      onListening = () => {
        if (slots.every((s) => s.listening)) resolveStart();
      };
      for (const slot of slots) spawn(slot);
    });
  } catch (err) {
    closing = Promise.resolve();
    killAll();
    await backend?.close().catch(() => {});
    throw err;
  }
  started = true;
  startFailure = undefined;
  onListening = undefined;

  const clusterModel = model!;
  const local = metrics ?? createMetrics({ model: clusterModel });

  /** Every listening worker's metrics; a worker that does not answer in time is left out. */
  const gather = async (): Promise<Extract<FromWorker, { t: "metrics" }>[]> => {
    const live = slots.filter((s) => s.worker && s.listening);
    const replies = await Promise.all(
      live.map(
        (s) =>
          new Promise<Extract<FromWorker, { t: "metrics" }> | undefined>((done) => {
            const id = nextRequest++;
            const timer = setTimeout(() => {
              metricRequests.delete(id);
              done(undefined);
            }, REPLY_TIMEOUT_MS);
            metricRequests.set(id, (m) => {
              clearTimeout(timer);
              metricRequests.delete(id);
              done(m);
            });
            send(s.worker!, { t: "metrics", id });
          }),
      ),
    );
    return replies.filter((r) => r !== undefined);
  };
  const source: MetricsSource = {
    contentType: local.contentType,
    async exposition() {
      const [own, workers] = await Promise.all([local.registry.getMetricsAsJSON(), gather()]);
      return AggregatorRegistry.aggregate([own, ...workers.map((w) => w.json)]).metrics();
    },
    async dashboardData() {
      const workers = await gather();
      return local.dashboardData(workers.map((w) => w.snapshot));
    },
  };

  let metricsServer: MetricsServer | undefined;
  if (config.metrics) {
    metricsServer = await startMetricsServerOrWarn(
      source,
      { host: config.host, port: config.metricsPort },
      log,
    );
  }
  const url = nodeUrl(config, port);
  const metricsUrl = metricsServer?.url;
  log.info(
    { url, metricsUrl, ...summary(config), workerLimits: workerLimits(workerConfig) },
    "listening",
  );

  const exited = (w: Worker) =>
    w.isDead() ? Promise.resolve() : new Promise<void>((r) => w.once("exit", () => r()));

  return {
    url,
    port,
    metricsUrl,
    model: clusterModel,
    inFlight: () => slots.reduce((n, s) => n + s.inFlight, 0),
    async reloadCertificate() {
      if (config.tlsCert === "") throw new Error("TLS is off: there is no certificate to reload");
      // Checked here first: a bad pair is refused once, and every worker keeps its certificate.
      loadTlsFiles(config.tlsCert, config.tlsKey);
      for (const s of slots) if (s.worker) send(s.worker, { t: "reload-tls" });
      log.info({ cert: config.tlsCert }, "TLS certificate reload sent to the workers");
    },
    workerPids: () => slots.flatMap((s) => (s.worker?.process.pid ? [s.worker.process.pid] : [])),
    async ready() {
      if (closing || !slots.some((s) => s.listening)) return false;
      return backend ? backend.ready().catch(() => false) : true;
    },
    close(opts: CloseOptions = {}) {
      closing ??= (async () => {
        for (const s of slots) clearTimeout(s.timer);
        const live = slots.filter((s) => s.worker !== undefined);
        // Taken now: a worker that exits while draining clears its slot (onExit).
        const workers = live.map((s) => s.worker!);
        // Each worker stops accepting, finishes its calls and exits; their counts make the log line.
        const counts = live.map(
          (s) =>
            new Promise<number>((done) => {
              const timer = setTimeout(() => done(s.inFlight), REPLY_TIMEOUT_MS);
              s.onDraining = (n) => {
                clearTimeout(timer);
                done(n);
              };
            }),
        );
        for (const w of workers) send(w, { t: "drain" });
        const inFlight = (await Promise.all(counts)).reduce((a, b) => a + b, 0);
        opts.onDraining?.(inFlight);
        const deadline = new Promise((r) => setTimeout(r, config.drainTimeoutMs + 5000).unref());
        await Promise.race([Promise.all(workers.map(exited)), deadline]);
        const stuck = workers.filter((w) => !w.isDead());
        if (stuck.length > 0) {
          log.warn({ pids: stuck.map((w) => w.process.pid) }, "workers did not stop: killing them");
          for (const w of stuck) w.process.kill("SIGKILL");
          await Promise.all(stuck.map(exited));
        }
        await backend?.close();
        await metricsServer?.close();
        log.info("stopped");
      })();
      return closing;
    },
  };
}

/**
 * A worker that was killed could not remove its Triton shared-memory files (named with its pid):
 * the primary does. Triton keeps its own mapping until it unregisters the region.
 */
function removeShmFiles(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    for (const name of readdirSync(SHM_DIR)) {
      if (name.startsWith(`${SHM_PREFIX}-${pid}-`)) unlinkSync(`${SHM_DIR}/${name}`);
    }
  } catch {
    // no /dev/shm, or already gone
  }
}

/** What each worker was given of the node-wide limits (for the start-up log line). */
function workerLimits(c: Config) {
  return { maxQueuedImages: c.maxQueuedImages, decodeConcurrency: c.decodeConcurrency };
}
