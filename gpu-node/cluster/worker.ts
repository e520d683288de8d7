/**
 * A cluster worker (forked by cluster.ts): receives its settings from the primary, serves the
 * port it shares with the other workers, decodes images, and batches them for a backend of its
 * own (triton, noop) or sends the pixels to the primary's batcher (onnxruntime). Answers the
 * primary's metrics requests; drains on the primary's word, or on SIGTERM/SIGINT.
 */
import cluster from "node:cluster";
import { Socket } from "node:net";
import { createBackend } from "../backends/create.ts";
import { createModelBatcher } from "../batching/model-batcher.ts";
import { createLogger, type Logger } from "../logger.ts";
import { createMetrics, type NodeMetrics, tritonStatsOf } from "../observability/metrics.ts";
import { chooseJpegDecoder, decodeForClip, jpegFastPath } from "../preprocess/decode.ts";
import { releasePixels } from "../preprocess/jpeg-fast-path.ts";
import { type GpuNode, type NodeParts, serveNode } from "../rpc/server.ts";
import { createRemoteBatcher } from "./channel.ts";
import type { FromWorker, ToWorker } from "./protocol.ts";

/** How often the worker tells the primary its in-flight calls (only when the count changed). */
const LOAD_REPORT_MS = 200;

if (!cluster.isWorker) {
  process.stderr.write("gpu-node: cluster/worker.ts is started by the gpu-node, not by hand\n");
  process.exit(2);
}

// The IPC channel fails only once the primary is gone (cluster then ends this worker too).
cluster.worker!.on("error", () => process.exit(1));

let node: GpuNode | undefined;
let metrics: NodeMetrics | undefined;
let log: Logger | undefined;
let draining = false;

const tell = (m: FromWorker, then?: () => void) => {
  if (process.connected) process.send!(m, undefined, {}, () => then?.());
  else then?.();
};

async function start(m: Extract<ToWorker, { t: "start" }>): Promise<void> {
  const { config } = m;
  const wlog = createLogger(config.logLevel).child({ worker: m.index, pid: process.pid });
  log = wlog;
  chooseJpegDecoder(config.jpegDecoder);
  let parts: NodeParts;
  if (m.central) {
    const model = m.model!;
    const remote = createRemoteBatcher(new Socket({ fd: 4, readable: true, writable: true }));
    let reason: string | undefined;
    metrics = createMetrics({ model });
    parts = {
      log: wlog,
      model,
      metrics,
      batcher: remote,
      decode: decodeForClip,
      async backendReady() {
        const r = await remote.ready();
        reason = r.reason;
        return r.ready;
      },
      notReadyReason: () => reason,
      serveMetrics: false,
      release: async () => remote.close(),
    };
  } else {
    const backend = await createBackend(config, wlog);
    const model = await backend.start();
    metrics = createMetrics({ model, triton: tritonStatsOf(backend) });
    parts = {
      log: wlog,
      model,
      metrics,
      batcher: createModelBatcher(config, backend, model, metrics),
      decode: decodeForClip,
      // Pixels stay in this process: the batcher copies them, so their buffers can be reused.
      releasePixels,
      backendReady: () => backend.ready(),
      notReadyReason: () => backend.notReadyReason?.(),
      serveMetrics: false,
      release: () => backend.close(),
    };
  }
  const served = await serveNode(config, parts);
  node = served;
  if (draining) {
    // The primary asked us to stop while we were starting.
    await served.close();
    process.exit(0);
  }
  tell({
    t: "listening",
    port: served.port,
    model: parts.model,
    jpegFastPath: await jpegFastPath(),
  });
  let reported = 0;
  setInterval(() => {
    const n = served.inFlight();
    if (n !== reported) {
      reported = n;
      tell({ t: "load", inFlight: n });
    }
  }, LOAD_REPORT_MS).unref();
}

async function drain(): Promise<void> {
  if (draining) return;
  draining = true;
  if (!node) {
    tell({ t: "draining", inFlight: 0 });
    return; // start() closes once it has a node; before that there is nothing in flight
  }
  try {
    await node.close({
      onDraining: (inFlight) => {
        log?.info({ inFlight }, "worker draining");
        tell({ t: "draining", inFlight });
      },
    });
    process.exit(0);
  } catch (err) {
    log?.error({ err }, "worker shutdown failed");
    process.exit(1);
  }
}

process.on("message", (m: ToWorker) => {
  switch (m.t) {
    case "start":
      start(m).catch((err: unknown) => {
        const message = err instanceof Error ? err.message : String(err);
        log?.error({ err }, "worker failed to start");
        tell({ t: "failed", message }, () => process.exit(1));
      });
      return;
    case "reload-tls":
      node?.reloadCertificate().catch((err: unknown) => log?.error({ err }, "TLS reload failed"));
      return;
    case "drain":
      void drain();
      return;
    case "metrics":
      if (!metrics) return;
      void metrics.registry
        .getMetricsAsJSON()
        .then((json) => tell({ t: "metrics", id: m.id, json, snapshot: metrics!.snapshot() }));
      return;
  }
});

// A signal to the whole process group (Ctrl-C, systemd) reaches the workers too: drain like the
// primary does; a second one ends the worker at once.
let signals = 0;
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    if (++signals > 1) process.exit(1);
    void drain();
  });
}
