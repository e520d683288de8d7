/** The RPC server: the Connect routes, /healthz and /readyz on one HTTP/1.1 + h2c port, with admission control and a graceful drain. */
import { Code, ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { EmbedderService } from "../../proto/gen/embedder/v1/embedder_pb.js";
import type { Backend, ModelDescription } from "../backends/backend.ts";
import type { ImageBatcher } from "../batching/batcher.ts";
import { type Config, nodeUrl } from "../config.ts";
import type { Logger } from "../logger.ts";
import type { NodeMetrics } from "../observability/metrics.ts";
import { type MetricsServer, startMetricsServerOrWarn } from "../observability/metrics-server.ts";
import { decodeInRounds } from "../preprocess/decode-rounds.ts";
import { Semaphore } from "./admission.ts";
import { createEmbedService, type Decoder } from "./embed-service.ts";
import {
  arrivedBeforeDrainKey,
  authenticatedKey,
  bearerCheck,
  type CallState,
  callInterceptor,
  requestContext,
  requestIdKey,
} from "./interceptors.ts";
import { type DualListener, listenDual, type RequestHandler } from "./listener.ts";
import { loadTlsFiles } from "./tls.ts";

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
  /**
   * Re-reads --tls-cert and --tls-key (SIGHUP): new connections get them, open ones keep theirs.
   * Rejects, keeping the certificate in use, when the files are unreadable or no pair.
   */
  reloadCertificate(): Promise<void>;
}

export interface GpuNodeOverrides {
  /** A backend to use instead of the one the config names (tests inject fakes). */
  readonly backend?: Backend;
  readonly decode?: Decoder;
  readonly log?: Logger;
}

export interface CloseOptions {
  readonly onDraining?: (inFlight: number) => void;
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
    // Each turn's decodes together, then its calls' JavaScript together (warm caches for both).
    decode: decodeInRounds(parts.decode),
    releasePixels: parts.releasePixels,
  });

  const isReady = async () => !state.draining && (await parts.backendReady().catch(() => false));
  const tokenOk = bearerCheck(config.token);
  const handler = connectNodeAdapter({
    routes: (router) => router.service(EmbedderService, service),
    readMaxBytes: config.maxMessageBytes,
    // Float vectors do not compress; gzip only cost CPU (and libuv threads sharp needs).
    acceptCompression: [],
    maxTimeoutMs: config.maxDeadlineMs,
    shutdownSignal: shutdown.signal,
    // Metrics outermost: they count the codes the call interceptor settled on.
    interceptors: [metrics.interceptor, callInterceptor(config, log, state, tokenOk)],
    // Runs on the headers, before the body is read. The token is checked here, so that a caller
    // without it cannot make the node read and parse a message of up to --max-message-bytes; the
    // interceptor checks it again only for a call the gate did not mark as checked. A call
    // arriving while draining is refused here; one whose headers came before is served even if
    // its body was still uploading when the drain began.
    requestGate: (ctx) => {
      const refuse = (code: Code, message: string) => {
        const requestId = ctx.values.get(requestIdKey);
        log.info({ requestId, method: ctx.method.name, code: Code[code], ms: 0 }, "call");
        throw new ConnectError(message, code);
      };
      if (state.draining) refuse(Code.Unavailable, "server is shutting down");
      ctx.values.set(arrivedBeforeDrainKey, true);
      if (config.token !== "") {
        if (!tokenOk(ctx.requestHeader.get("authorization"))) {
          refuse(Code.Unauthenticated, "missing or invalid credentials");
        }
        ctx.values.set(authenticatedKey, true);
      }
    },
    contextValues: (req) => requestContext(req.headers["x-request-id"]),
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
            ...(model.provider ? { provider: model.provider, device: model.device ?? "" } : {}),
          }),
        );
        return;
      }
      json(404, { error: "not found" });
    },
  });

  const tls = config.tlsCert === "" ? undefined : loadTlsFiles(config.tlsCert, config.tlsKey);
  const listener: DualListener = await listenDual(handler as RequestHandler, {
    host: config.host,
    port: config.port,
    tls,
    onTlsError: (err) => log.debug({ err: err.message }, "TLS handshake failed"),
  });
  const url = nodeUrl(config, listener.port);
  // Metrics are a side channel: a taken port is logged loudly, but the node still serves.
  let metricsServer: MetricsServer | undefined;
  if (parts.serveMetrics) {
    metricsServer = await startMetricsServerOrWarn(
      metrics,
      { host: config.host, port: config.metricsPort },
      log,
    );
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
    async reloadCertificate() {
      if (!tls) throw new Error("TLS is off: there is no certificate to reload");
      listener.setCertificate(loadTlsFiles(config.tlsCert, config.tlsKey));
      log.info({ cert: config.tlsCert }, "TLS certificate reloaded");
    },
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
