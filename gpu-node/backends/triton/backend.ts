/**
 * The Triton backend: sends each packed batch to NVIDIA Triton over KServe v2 gRPC (one
 * long-lived h2c session on localhost) as raw tensor bytes or through /dev/shm, splits batches
 * above the model's max_batch_size, and keeps its own readiness from Triton's health.
 */
import { existsSync } from "node:fs";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type InferParameter,
  InferParameterSchema,
} from "../../../proto/gen/inference/grpc_service_pb.js";
import type { ModelConfig } from "../../../proto/gen/inference/model_config_pb.js";
import type { Logger } from "../../logger.ts";
import type { Backend, BatchTensor, ModelDescription } from "../backend.ts";
import { connectTriton } from "./client.ts";
import { sentByServer, translateTritonError } from "./errors.ts";
import {
  bytesPerImage,
  describeTritonModel,
  dimsOf,
  incompatibility,
  inputShape,
  TritonModelError,
  type TritonModelSpec,
} from "./model.ts";
import { SHM_DIR, ShmPool, ShmRefusedError } from "./shm.ts";
import { readStats, type TritonStats } from "./stats.ts";

export type { TritonStats } from "./stats.ts";

export interface TritonBackendOptions {
  /** host:port of Triton's gRPC endpoint. */
  readonly url: string;
  readonly model: string;
  /** "" = Triton's version policy. */
  readonly modelVersion: string;
  /** Inputs through system shared memory (falls back to bytes if Triton refuses). */
  readonly shm: boolean;
  /** Batches the gpu-node keeps in flight (sizes the shared-memory pool). */
  readonly concurrency: number;
  /** The gpu-node's largest batch: split into requests of at most Triton's max_batch_size. */
  readonly maxBatchSize: number;
  /** Deadline of one inference request (sent on as gRPC deadline and Triton queue timeout). */
  readonly timeoutMs: number;
  readonly startTimeoutMs: number;
  readonly healthIntervalMs: number;
  /** 0 = no statistics polling. */
  readonly statsIntervalMs: number;
  readonly log: Logger;
}

/** How tensors travel right now, and what has crossed the socket. */
export interface TritonTransportInfo {
  readonly mode: "bytes" | "shm";
  readonly wireBytes: { readonly sent: number; readonly received: number };
  /** Names of the /dev/shm regions this backend owns. */
  readonly shmRegions: readonly string[];
}

export interface TritonBackend extends Backend {
  /** The latest ModelStatistics reading (polled every statsIntervalMs), if any yet. */
  stats(): TritonStats | undefined;
  /** Reads ModelStatistics now. */
  refreshStats(): Promise<TritonStats | undefined>;
  /** Why the backend is not ready ("" when it is). */
  notReadyReason(): string;
  transportInfo(): TritonTransportInfo;
}

/** Marks errors this module raised itself, so they are not taken for Triton's. */
const OWN_ERROR = Symbol("triton-backend");
/** Retries while Triton is down start fast and back off to this. */
const MAX_RETRY_MS = 500;
/** Health and registration calls on localhost answer in about a millisecond. */
const CHECK_TIMEOUT_MS = 2000;

const int64Param = (v: number): InferParameter =>
  create(InferParameterSchema, { parameterChoice: { case: "int64Param", value: BigInt(v) } });
const stringParam = (v: string): InferParameter =>
  create(InferParameterSchema, { parameterChoice: { case: "stringParam", value: v } });

/** A health check's "no" (not a failed call): Unavailable, with the reason. */
const notReady = (reason: string) =>
  new ConnectError(reason, Code.Unavailable, undefined, undefined, OWN_ERROR);

export function createTritonBackend(opts: TritonBackendOptions): TritonBackend {
  const { log } = opts;
  const where = { url: opts.url, model: opts.model };
  const conn = connectTriton({ url: opts.url, connectTimeoutMs: CHECK_TIMEOUT_MS });
  const { rpc } = conn;
  const checkTimeoutMs = Math.min(CHECK_TIMEOUT_MS, opts.timeoutMs);
  const modelRef = { name: opts.model, version: opts.modelVersion };
  const modelLabel = `'${opts.model}'${opts.modelVersion ? ` version ${opts.modelVersion}` : ""}`;

  let spec: TritonModelSpec | undefined;
  let description: ModelDescription | undefined;
  let mode: "bytes" | "shm" = opts.shm ? "shm" : "bytes";
  let pool: ShmPool | undefined;
  let slotImages = 0;
  let ready = false;
  let reason = "not started";
  let closed = false;
  let bringingUp: Promise<void> | undefined;
  let healthTimer: NodeJS.Timeout | undefined;
  let statsTimer: NodeJS.Timeout | undefined;
  let retryMs = 50;
  let seq = 0;
  let latestStats: TritonStats | undefined;

  /** Turns a failed health or setup call into the reason /readyz and callers see. */
  const reasonOf = (err: unknown): string => {
    if (err instanceof ConnectError && err.cause === OWN_ERROR) return err.rawMessage;
    if (err instanceof TritonModelError) return err.message;
    const t = translateTritonError(err, where);
    return "error" in t ? t.error.rawMessage : String(err);
  };

  function markDown(why: string): void {
    if (ready) {
      log.warn({ triton: opts.url, model: opts.model, reason: why }, "triton not ready");
      retryMs = 50;
      scheduleHealth(0);
    }
    ready = false;
    reason = why;
  }

  /** ServerReady, ModelReady, ModelMetadata, ModelConfig → what requests must look like. */
  async function inspect(): Promise<TritonModelSpec> {
    const t = { timeoutMs: checkTimeoutMs };
    const [server, model] = await Promise.all([
      rpc.serverReady({}, t),
      rpc.modelReady(modelRef, t),
    ]);
    if (!model.ready) throw notReady(`triton model ${modelLabel} is not ready at ${opts.url}`);
    if (!server.ready) throw notReady(`triton at ${opts.url} is not ready`);
    const metadata = await rpc.modelMetadata(modelRef, t);
    let config: ModelConfig | undefined;
    try {
      config = (await rpc.modelConfig(modelRef, t)).config;
    } catch (err) {
      // Plain KServe v2 servers have no ModelConfig: the metadata alone must do.
      const ce = ConnectError.from(err);
      if (!(sentByServer(ce) && ce.code === Code.Unimplemented)) throw err;
    }
    return describeTritonModel(opts.model, metadata, config, opts.maxBatchSize);
  }

  /** Requests never carry more images than Triton accepts, nor than a shm slot holds. */
  const chunkLimit = () =>
    Math.max(1, Math.min(spec!.maxImagesPerRequest, pool ? slotImages : Number.POSITIVE_INFINITY));

  function fallBackToBytes(why: string): void {
    if (mode === "bytes") return;
    mode = "bytes";
    log.warn(
      { triton: opts.url, reason: why },
      "triton shared memory unavailable: sending tensors as bytes from now on",
    );
    pool?.discard();
    pool = undefined;
  }

  async function setUpShm(): Promise<void> {
    if (mode !== "shm") return;
    try {
      if (pool) {
        await pool.reregister();
        return;
      }
      if (process.platform !== "linux" || !existsSync(SHM_DIR)) {
        throw new ShmRefusedError(`${SHM_DIR} does not exist on this host`);
      }
      slotImages = Math.min(spec!.maxImagesPerRequest, opts.maxBatchSize);
      const perBatch = Math.ceil(opts.maxBatchSize / slotImages);
      pool = new ShmPool({
        rpc,
        slotBytes: slotImages * bytesPerImage(spec!.layout),
        // Every in-flight batch's requests, plus a health probe.
        maxSlots: opts.concurrency * perBatch + 1,
        timeoutMs: checkTimeoutMs,
        log,
      });
      await pool.prepare(opts.concurrency);
    } catch (err) {
      if (err instanceof ShmRefusedError) fallBackToBytes(err.message);
      else throw err;
    }
  }

  /** Checks everything and proves the model answers with one probe image. */
  async function bringUp(): Promise<void> {
    const next = await inspect();
    if (spec) {
      const why = incompatibility(spec, next);
      if (why) {
        throw new TritonModelError(
          `triton model ${modelLabel} changed since the gpu-node started (${why}); restart the gpu-node`,
        );
      }
      spec = { ...spec, version: next.version, maxImagesPerRequest: next.maxImagesPerRequest };
    } else {
      spec = next;
    }
    await setUpShm();
    // Zeros are a valid image in both layouts (black, or the normalised mean).
    const probe = new Uint8Array(bytesPerImage(spec.layout));
    const row = await inferRequest(probe, 1, undefined);
    if (spec.dimension === 0) spec = { ...spec, dimension: row.byteLength / 4 };
    else if (row.byteLength !== spec.dimension * 4) {
      throw new TritonModelError(
        `triton model ${modelLabel} returned ${row.byteLength / 4} floats for one image, expected ${spec.dimension}`,
      );
    }
    ready = true;
    reason = "";
  }

  /** One bring-up at a time, shared by the health loop and callers that found Triton down. */
  function recover(): Promise<void> {
    bringingUp ??= bringUp().finally(() => {
      bringingUp = undefined;
    });
    return bringingUp;
  }

  function scheduleHealth(ms: number): void {
    if (closed || description === undefined) return;
    clearTimeout(healthTimer);
    healthTimer = setTimeout(() => void healthTick(), ms);
    healthTimer.unref();
  }

  async function healthTick(): Promise<void> {
    if (closed) return;
    if (ready) {
      try {
        const t = { timeoutMs: checkTimeoutMs };
        const [server, model] = await Promise.all([
          rpc.serverReady({}, t),
          rpc.modelReady(modelRef, t),
        ]);
        if (!model.ready) throw notReady(`triton model ${modelLabel} is not ready at ${opts.url}`);
        if (!server.ready) throw notReady(`triton at ${opts.url} is not ready`);
        scheduleHealth(opts.healthIntervalMs);
      } catch (err) {
        if (!closed) markDown(reasonOf(err));
      }
      return;
    }
    try {
      await recover();
      log.info({ triton: opts.url, model: opts.model, mode }, "triton ready");
      scheduleHealth(opts.healthIntervalMs);
    } catch (err) {
      if (closed) return;
      const why = reasonOf(err);
      if (why !== reason) log.warn({ triton: opts.url, reason: why }, "triton still not ready");
      reason = why;
      retryMs = Math.min(retryMs * 2, MAX_RETRY_MS, opts.healthIntervalMs);
      scheduleHealth(retryMs);
    }
  }

  async function pollStats(): Promise<TritonStats | undefined> {
    const res = await rpc.modelStatistics(modelRef, { timeoutMs: checkTimeoutMs });
    const entry =
      res.modelStats.find((s) => s.name === opts.model && s.version === spec?.version) ??
      res.modelStats.find((s) => s.name === opts.model);
    if (entry) latestStats = readStats(entry, Date.now(), latestStats);
    return latestStats;
  }

  function scheduleStats(): void {
    if (closed || opts.statsIntervalMs === 0) return;
    statsTimer = setTimeout(() => {
      const poll = ready ? pollStats() : Promise.resolve(undefined);
      poll
        .catch((err: unknown) => log.debug({ err }, "triton statistics poll failed"))
        .finally(scheduleStats);
    }, opts.statsIntervalMs);
    statsTimer.unref();
  }

  /**
   * One ModelInfer call for `count` images whose tensor bytes are `bytes`; returns the raw
   * little-endian output rows. Failures are translated here, once.
   */
  async function inferRequest(
    bytes: Uint8Array,
    count: number,
    signal: AbortSignal | undefined,
  ): Promise<Uint8Array> {
    const s = spec!;
    const id = String(++seq);
    const usedPool = pool;
    let slot: Awaited<ReturnType<ShmPool["acquire"]>> | undefined;
    try {
      if (usedPool) {
        try {
          slot = await usedPool.acquire(signal);
          usedPool.write(slot, bytes);
        } catch (err) {
          if (!(err instanceof ShmRefusedError)) throw err;
          fallBackToBytes(err.message);
          slot = undefined;
        }
      }
      const parameters: Record<string, InferParameter> = slot
        ? {
            shared_memory_region: stringParam(slot.name),
            shared_memory_byte_size: int64Param(bytes.byteLength),
            shared_memory_offset: int64Param(0),
          }
        : {};
      const res = await rpc.modelInfer(
        {
          modelName: opts.model,
          modelVersion: opts.modelVersion,
          id,
          // Triton drops a request that waited longer than this in its queue (when the
          // model's queue policy allows overriding the timeout; see config.pbtxt).
          parameters: { timeout: int64Param(opts.timeoutMs * 1000) },
          inputs: [
            { name: s.inputName, datatype: s.datatype, shape: inputShape(s, count), parameters },
          ],
          outputs: [{ name: s.outputName }],
          rawInputContents: slot ? [] : [bytes],
        },
        // Not the callers' signal: once sent, a request runs to its answer or to the Triton
        // timeout. Its shared-memory slot may be read by Triton until then, so freeing it early
        // could hand another batch's pixels to this request; and a stall must still show up
        // as a timeout (readiness) even when every caller has already given up.
        { timeoutMs: opts.timeoutMs },
      );
      return readOutput(res, id, count);
    } catch (err) {
      // Our own faults (a bad answer, a bug) are not Triton's: the RPC layer translates them.
      if (!(err instanceof ConnectError) || err.cause === OWN_ERROR) throw err;
      const t = translateTritonError(err, where, undefined);
      if ("callerAborted" in t) throw t.callerAborted;
      if (t.timedOut) markDown(`inference on triton took longer than ${opts.timeoutMs} ms`);
      else if (t.down) markDown(t.error.rawMessage);
      throw t.error;
    } finally {
      if (slot) usedPool?.release(slot);
    }
  }

  function readOutput(
    res: Awaited<ReturnType<typeof rpc.modelInfer>>,
    id: string,
    count: number,
  ): Uint8Array {
    const s = spec!;
    const fail = (what: string) =>
      new ConnectError(
        `triton answered badly: ${what}`,
        Code.Internal,
        undefined,
        undefined,
        OWN_ERROR,
      );
    // Never hand one request's rows to another: the id must come back as sent.
    if (res.id !== id) throw fail(`request ${id} came back with id ${JSON.stringify(res.id)}`);
    const i = res.outputs.findIndex((o) => o.name === s.outputName);
    const out = res.outputs[i];
    const raw = res.rawOutputContents[i];
    if (!out || !raw) throw fail(`no raw output '${s.outputName}'`);
    if (out.datatype !== "FP32") throw fail(`output '${out.name}' is ${out.datatype}, not FP32`);
    const shape = dimsOf(out.shape);
    const rows = s.batched ? shape[0] : 1;
    if (rows !== count || raw.byteLength % (4 * count) !== 0) {
      throw fail(
        `output shape [${shape.join(",")}] with ${raw.byteLength} bytes for ${count} images`,
      );
    }
    if (s.dimension !== 0 && raw.byteLength !== count * s.dimension * 4) {
      throw fail(`${raw.byteLength / 4 / count} floats per image, expected ${s.dimension}`);
    }
    return raw;
  }

  return {
    async start() {
      const deadline = performance.now() + opts.startTimeoutMs;
      let delay = 50;
      let lastReason = "";
      for (;;) {
        try {
          await recover();
          break;
        } catch (err) {
          if (err instanceof TritonModelError || closed) throw err;
          const why = reasonOf(err);
          if (performance.now() + delay > deadline) {
            throw new Error(
              `${why} (gave up after ${opts.startTimeoutMs} ms: check --triton-url and --triton-model)`,
            );
          }
          if (why !== lastReason) log.info({ triton: opts.url, reason: why }, "waiting for triton");
          lastReason = why;
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(delay * 2, MAX_RETRY_MS);
        }
      }
      const s = spec!;
      description = {
        name: opts.model,
        version: s.version === "" ? "triton" : s.version,
        dimension: s.dimension,
        layout: s.layout,
        maxBatchSize: opts.maxBatchSize,
        backend: "triton",
      };
      log.info(
        {
          triton: opts.url,
          model: opts.model,
          version: s.version,
          platform: s.platform,
          input: `${s.inputName} ${s.datatype} (${s.layout})`,
          tritonMaxBatch: s.maxImagesPerRequest,
          mode,
        },
        "triton model ready",
      );
      scheduleHealth(opts.healthIntervalMs);
      scheduleStats();
      return description;
    },

    async infer(batch: BatchTensor, signal?: AbortSignal) {
      if (closed || !description) throw notReady("triton backend is not running");
      signal?.throwIfAborted();
      if (!ready) {
        try {
          await recover();
        } catch (err) {
          throw notReady(reasonOf(err));
        }
      }
      const s = spec!;
      const perImage = bytesPerImage(s.layout);
      const data = batch.data;
      const bytes = new Uint8Array(data.buffer, data.byteOffset, batch.count * perImage);
      const limit = chunkLimit();
      const parts: Promise<Uint8Array>[] = [];
      for (let start = 0; start < batch.count; start += limit) {
        const n = Math.min(limit, batch.count - start);
        parts.push(
          inferRequest(bytes.subarray(start * perImage, (start + n) * perImage), n, signal),
        );
      }
      const rows = await Promise.all(parts);
      const out = new Float32Array(batch.count * s.dimension);
      const view = new Uint8Array(out.buffer);
      let at = 0;
      for (const r of rows) {
        view.set(r, at); // copies: a `bytes` field can be an unaligned view
        at += r.byteLength;
      }
      return out;
    },

    async ready() {
      return ready && !closed;
    },

    notReadyReason: () => (closed ? "closed" : reason),

    stats: () => latestStats,

    refreshStats: () => pollStats(),

    transportInfo: () => ({
      mode,
      wireBytes: conn.wireBytes(),
      shmRegions: pool?.names() ?? [],
    }),

    async close() {
      if (closed) return;
      closed = true;
      ready = false;
      reason = "closed";
      clearTimeout(healthTimer);
      clearTimeout(statsTimer);
      await bringingUp?.catch(() => undefined);
      await pool?.close();
      pool = undefined;
      conn.close();
    },
  };
}
