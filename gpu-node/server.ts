/** The gpu-node server: wires config, model, backend, batcher and the Connect routes onto one HTTP/1.1 + h2c port; listens only when run directly. */
import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import { endianness } from "node:os";
import {
  Code,
  ConnectError,
  createContextKey,
  createContextValues,
  type Interceptor,
} from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { EmbedderService } from "../proto/gen/embedder/v1/embedder_pb.js";
import type { Backend, ModelDescription } from "./backends/backend.ts";
import { createNoopBackend } from "./backends/noop.ts";
import { createBatchRunner } from "./batch-runner.ts";
import { type ImageBatcher, MicroBatcher } from "./batcher.ts";
import { type Config, ConfigError, helpText, parseConfig } from "./config.ts";
import { createEmbedService, type Decoder } from "./embed-service.ts";
import { toConnectError } from "./errors.ts";
import { releasePixels } from "./jpeg-fast-path.ts";
import { type DualListener, listenDual, type RequestHandler } from "./listener.ts";
import { createLogger, type Logger } from "./logger.ts";
import { createMetrics, type NodeMetrics, tritonStatsOf } from "./metrics.ts";
import { type MetricsServer, startMetricsServer } from "./metrics-server.ts";
import { decodeForClip, exact224FastPath } from "./preprocess.ts";
import { Semaphore } from "./semaphore.ts";

export interface GpuNode {
  readonly url: string;
  readonly port: number;
  /** Where /metrics and /dashboard are served; undefined when metrics are off or their port was taken. */
  readonly metricsUrl: string | undefined;
  readonly model: ModelDescription;
  /** Calls running now. */
  inFlight(): number;
  ready(): Promise<boolean>;
  /**
   * Graceful: stop accepting, let in-flight calls finish (up to drainTimeoutMs), release the
   * model. `onDraining` hears how many calls were in flight as draining began.
   */
  close(opts?: CloseOptions): Promise<void>;
}

export interface CloseOptions {
  readonly onDraining?: (inFlight: number) => void;
}

export interface GpuNodeOverrides {
  /** A backend to use instead of the one the config names (tests inject fakes). */
  readonly backend?: Backend;
  readonly decode?: Decoder;
  readonly log?: Logger;
}

const requestIdKey = createContextKey<string>("", { description: "request id" });
/** Set when the call's headers arrived before draining began: it is served, even if its body was still on its way. */
const arrivedBeforeDrainKey = createContextKey<boolean>(false, {
  description: "arrived before drain",
});
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Creates the backend the config asks for (the model is generated on first use). */
export async function createBackend(config: Config, log: Logger): Promise<Backend> {
  if (config.backend === "noop") return createNoopBackend(config.maxBatchSize);
  // Imported on demand: a cluster worker of an onnxruntime node never loads ONNX Runtime.
  if (config.backend === "triton") {
    const { createTritonBackend } = await import("./backends/triton.ts");
    return createTritonBackend({
      url: config.tritonUrl,
      model: config.tritonModel,
      modelVersion: config.tritonModelVersion,
      shm: config.tritonShm,
      concurrency: config.tritonConcurrency,
      maxBatchSize: config.maxBatchSize,
      timeoutMs: config.tritonTimeoutMs,
      startTimeoutMs: config.tritonStartTimeoutMs,
      healthIntervalMs: config.tritonHealthIntervalMs,
      statsIntervalMs: config.tritonStatsIntervalMs,
      log,
    });
  }
  const t0 = performance.now();
  // Loaded on demand: ONNX Runtime's native library is large, and the noop and triton backends
  // (e.g. a GPU host running Triton beside us) do not need it installed at all.
  const { ensureModel } = await import("./model/index.ts");
  const model = await ensureModel(config.model, config.cacheDir);
  log.info(
    { model: model.name, path: model.path, ms: Math.round(performance.now() - t0) },
    "model file ready",
  );
  const { createOnnxRuntimeBackend } = await import("./backends/onnxruntime.ts");
  return createOnnxRuntimeBackend({
    modelPath: model.path,
    name: model.name,
    version: model.sha256.slice(0, 12),
    threads: config.threads,
    maxBatchSize: config.maxBatchSize,
  });
}

/** Constant-time check of `Authorization: Bearer <token>` (hashing first makes lengths equal). */
function tokenMatches(header: string | null, token: string): boolean {
  const given = header?.startsWith("Bearer ") ? header.slice(7) : "";
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(token).digest();
  return timingSafeEqual(a, b) && given.length > 0;
}

interface CallState {
  draining: boolean;
  inFlight: number;
}

/** Per call: request id, auth, refusal while draining, one log line, error translation. */
function callInterceptor(config: Config, log: Logger, state: CallState): Interceptor {
  return (next) => async (req) => {
    const requestId = req.contextValues.get(requestIdKey);
    const started = performance.now();
    const method = req.method.name;
    const finish = (code: string, extra: Record<string, unknown> = {}) => {
      state.inFlight--;
      log.info(
        { requestId, method, code, ms: +(performance.now() - started).toFixed(2), ...extra },
        "call",
      );
    };
    const translate = (err: unknown) =>
      toConnectError(err, (e) => log.error({ requestId, method, err: e }, "internal error"));
    state.inFlight++;
    try {
      if (state.draining && !req.contextValues.get(arrivedBeforeDrainKey)) {
        throw new ConnectError("server is shutting down", Code.Unavailable);
      }
      if (config.token !== "" && !tokenMatches(req.header.get("authorization"), config.token)) {
        throw new ConnectError("missing or invalid credentials", Code.Unauthenticated);
      }
      const res = await next(req);
      res.header.set("x-request-id", requestId);
      if (!res.stream) {
        finish("ok");
        return res;
      }
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          let count = 0;
          let code = "ok";
          try {
            for await (const m of messages) {
              count++;
              yield m;
            }
          } catch (err) {
            const ce = translate(err);
            code = Code[ce.code];
            throw ce;
          } finally {
            finish(code, { messages: count });
          }
        })(),
      };
    } catch (err) {
      const ce = translate(err);
      finish(Code[ce.code]);
      throw ce;
    }
  };
}

/** A micro-batcher in front of `backend`, timed by `metrics`: the one batcher a model gets. */
export function createModelBatcher(
  config: Config,
  backend: Backend,
  model: ModelDescription,
  metrics: NodeMetrics,
): MicroBatcher {
  return new MicroBatcher({
    maxBatchSize: Math.min(config.maxBatchSize, model.maxBatchSize),
    maxWaitMs: config.maxBatchWaitMs,
    // An in-process CPU backend gains nothing from overlapping batches; Triton overlaps them
    // (dynamic batching, several instances, transfers while the GPU computes).
    maxConcurrentBatches: config.backend === "triton" ? config.tritonConcurrency : 1,
    run: metrics.timeBatches(createBatchRunner(backend, model)),
  });
}

/**
 * Loads the model and starts listening. Tests call this with port 0. With `processes` > 1 this
 * process becomes the primary of a cluster of workers sharing the port (cluster.ts).
 */
export async function startGpuNode(
  config: Config,
  overrides: GpuNodeOverrides = {},
): Promise<GpuNode> {
  if (endianness() !== "LE")
    throw new Error(
      "vectors are sent as little-endian float32: big-endian hosts are not supported",
    );
  if (config.processes > 1) {
    const { startCluster } = await import("./cluster.ts");
    return startCluster(config, overrides);
  }
  const log = overrides.log ?? createLogger(config.logLevel);
  const backend = overrides.backend ?? (await createBackend(config, log));
  const model = await backend.start();
  log.info({ ...model }, "model loaded");
  const metrics = createMetrics({ model, triton: tritonStatsOf(backend) });
  const node = await serveNode(config, {
    log,
    model,
    metrics,
    batcher: createModelBatcher(config, backend, model, metrics),
    decode: overrides.decode ?? decodeForClip,
    releasePixels,
    backendReady: () => backend.ready(),
    notReadyReason: () => backend.notReadyReason?.(),
    serveMetrics: config.metrics,
    release: () => backend.close(),
  });
  // Whether plain 224x224 JPEGs skip sharp (jpeg-fast-path.ts); off if it ever disagreed with it.
  const exact224 = overrides.decode ? undefined : await exact224FastPath();
  log.info(
    { url: node.url, metricsUrl: node.metricsUrl, ...summary(config), exact224FastPath: exact224 },
    "listening",
  );
  return node;
}

/** What serveNode puts behind the port: a model, a batcher in front of it, a decoder, metrics. */
export interface NodeParts {
  readonly log: Logger;
  readonly model: ModelDescription;
  readonly metrics: NodeMetrics;
  readonly batcher: ImageBatcher;
  readonly decode: Decoder;
  /** Recycles decoded pixels once the batcher settled them (in-process batchers only). */
  readonly releasePixels?: (pixels: Uint8Array) => void;
  /** Whether the backend answers now (/readyz), and why not. */
  backendReady(): Promise<boolean>;
  notReadyReason(): string | undefined;
  /** Serve /metrics and /dashboard on config.metricsPort (cluster workers leave it to the primary). */
  readonly serveMetrics: boolean;
  /** Runs once the calls have drained: releases the backend. */
  release(): Promise<void>;
}

/** Serves the Connect routes, /healthz and /readyz on config.host:port, with admission and drain. */
export async function serveNode(config: Config, parts: NodeParts): Promise<GpuNode> {
  const { log, model, metrics, batcher } = parts;
  const state: CallState = { draining: false, inFlight: 0 };
  const admission = new Semaphore(config.maxQueuedImages);
  metrics.watchQueue({
    queued: () => batcher.queued,
    runningBatches: () => batcher.running,
    admitted: () => admission.inUse,
    admittedLimit: admission.capacity,
  });
  const shutdown = new AbortController();

  const service = createEmbedService({
    config,
    model,
    batcher,
    admission,
    decodeSlots: new Semaphore(config.decodeConcurrency),
    decode: parts.decode,
    releasePixels: parts.releasePixels,
  });

  const isReady = async () => !state.draining && (await parts.backendReady().catch(() => false));
  const handler = connectNodeAdapter({
    routes: (router) => router.service(EmbedderService, service),
    readMaxBytes: config.maxMessageBytes,
    // Float vectors do not compress; gzip only cost CPU (and libuv threads sharp needs).
    acceptCompression: [],
    maxTimeoutMs: config.maxDeadlineMs,
    shutdownSignal: shutdown.signal,
    // Metrics outermost: they count the codes the call interceptor settled on.
    interceptors: [metrics.interceptor, callInterceptor(config, log, state)],
    // Runs on the headers, before the body is read. The token is checked here (and again in the
    // interceptor): a caller without it cannot make the node read and parse a message of up to
    // --max-message-bytes. A call arriving while draining is refused here; one whose headers came
    // before is served even if its body was still uploading when the drain began.
    requestGate: (ctx) => {
      const refuse = (code: Code, message: string) => {
        const requestId = ctx.values.get(requestIdKey);
        log.info({ requestId, method: ctx.method.name, code: Code[code], ms: 0 }, "call");
        throw new ConnectError(message, code);
      };
      if (state.draining) refuse(Code.Unavailable, "server is shutting down");
      ctx.values.set(arrivedBeforeDrainKey, true);
      if (
        config.token !== "" &&
        !tokenMatches(ctx.requestHeader.get("authorization"), config.token)
      ) {
        refuse(Code.Unauthenticated, "missing or invalid credentials");
      }
    },
    contextValues: (req) => {
      const given = req.headers["x-request-id"];
      const id = typeof given === "string" && REQUEST_ID.test(given) ? given : randomUUID();
      return createContextValues().set(requestIdKey, id);
    },
    fallback: (req, res) => {
      const path = (req.url ?? "").split("?")[0];
      const json = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
        res.end(JSON.stringify(body));
      };
      if (req.method !== "GET" && req.method !== "HEAD") return json(404, { error: "not found" });
      if (path === "/healthz") return json(200, { status: "ok" });
      if (path === "/readyz") {
        void isReady().then((ok) =>
          json(ok ? 200 : 503, {
            status: ok ? "ready" : state.draining ? "draining" : "not ready",
            ...(ok || state.draining ? {} : { reason: parts.notReadyReason() }),
            model: model.name,
            backend: model.backend,
          }),
        );
        return;
      }
      json(404, { error: "not found" });
    },
  });

  const listener: DualListener = await listenDual(handler as RequestHandler, {
    host: config.host,
    port: config.port,
  });
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  const url = `http://${host}:${listener.port}`;
  // Metrics are a side channel: a taken port is logged loudly, but the node still serves.
  let metricsServer: MetricsServer | undefined;
  if (parts.serveMetrics) {
    metricsServer = await startMetricsServer(metrics, {
      host: config.host,
      port: config.metricsPort,
    }).catch((err: unknown) => {
      log.error(
        { err, metricsPort: config.metricsPort },
        "metrics port unavailable: /metrics and /dashboard are off (set --metrics-port, 0 = any free port)",
      );
      return undefined;
    });
  }
  const metricsUrl = metricsServer?.url;

  let closing: Promise<void> | undefined;
  return {
    url,
    port: listener.port,
    metricsUrl,
    model,
    inFlight: () => state.inFlight,
    ready: isReady,
    close(opts = {}) {
      closing ??= (async () => {
        opts.onDraining?.(state.inFlight);
        state.draining = true;
        listener.stopAccepting();
        const deadline = performance.now() + config.drainTimeoutMs;
        while (state.inFlight > 0 && performance.now() < deadline) {
          await new Promise((r) => setTimeout(r, 10));
        }
        if (state.inFlight > 0) {
          log.warn({ inFlight: state.inFlight }, "drain timeout: cancelling remaining calls");
          shutdown.abort(new ConnectError("server shut down", Code.Unavailable));
        }
        // Handlers are done; let their responses reach the clients before closing sockets.
        await listener.drained(Math.max(deadline, performance.now() + 200));
        listener.destroyAll();
        await parts.release();
        await metricsServer?.close();
        log.info("stopped");
      })();
      return closing;
    },
  };
}

/** The limits worth seeing in the start-up log line (no secrets). */
export function summary(config: Config) {
  const { token: _token, ...rest } = config;
  return { ...rest, token: config.token === "" ? "off" : "set" };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(`${helpText()}\n`);
    return;
  }
  let config: Config;
  try {
    config = parseConfig(argv, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`gpu-node: ${err.message}\nRun with --help for the list of settings.\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  const node = await startGpuNode(config, { log });
  let signals = 0;
  const stop = (signal: string) => {
    if (++signals > 1) {
      log.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    const onDraining = (inFlight: number) => log.info({ signal, inFlight }, "draining");
    node.close({ onDraining }).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    process.stderr.write(
      `gpu-node: failed to start: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    process.exit(1);
  });
}
