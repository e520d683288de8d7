/**
 * A KServe v2 / Triton test double: a real gRPC server (h2c, our inference proto subset) that
 * runs real ONNX models with ONNX Runtime and behaves like Triton where the gpu-node depends on
 * it — health, metadata and config for both input layouts, raw and shared-memory inputs, the
 * rejections Triton makes, statistics — and can be told to fail, stall, refuse or restart.
 *
 * In-process: `startKServeDouble(...)`. As its own process (to be killed for real, or to keep a
 * benchmark's server work off the client's event loop):
 *   node test/support/kserve-double.ts --port 8001 --model name=m,path=x.onnx,layout=uint8-nhwc,max-batch=32
 * prints one JSON line {"port": N} once listening.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { createServer, type Http2Server, type ServerHttp2Session } from "node:http2";
import type { Socket } from "node:net";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as ort from "onnxruntime-node";
import type { InputLayout } from "../../gpu-node/backends/backend.ts";
import { toFloat32NchwInput } from "../../gpu-node/model/float32-input.ts";
import { cachedModelPath, ensureModel, writeFileAtomic } from "../../gpu-node/model/index.ts";
import {
  GRPCInferenceService,
  type InferParameter,
  type ModelInferRequest,
  type ModelInferResponse,
  ModelInferResponseSchema,
  type ModelStatistics,
  ModelStatisticsSchema,
} from "../../proto/gen/inference/grpc_service_pb.js";
import { DataType, ModelInput_Format } from "../../proto/gen/inference/model_config_pb.js";
import { parseCli } from "./cli.ts";

const SIZE = 224;

export interface DoubleModelSpec {
  readonly name: string;
  /** ONNX file: UINT8 [N,224,224,3] or FP32 [N,3,224,224] in, FP32 [N,D] out. */
  readonly path: string;
  readonly layout: InputLayout;
  /** Triton's max_batch_size (0 = no batch dimension: one image of [3,224,224] or [224,224,3]). */
  readonly maxBatchSize: number;
  readonly version?: string;
  readonly inputName?: string;
  readonly outputName?: string;
}

/** What one ModelInfer request looked like, for assertions. */
export interface InferRecord {
  readonly model: string;
  readonly id: string;
  readonly images: number;
  readonly viaShm: boolean;
  readonly outcome: "ok" | "error" | "cancelled";
}

export interface Faults {
  /** ServerReady answers false. */
  serverNotReady: boolean;
  /** These models answer ModelReady false and refuse inference as "unavailable". */
  readonly unloaded: Set<string>;
  /** ModelInfer hangs until `releaseStall()` or the client gives up. */
  stall: boolean;
  /** ModelInfer fails with this status and message (what Triton sends on an internal error). */
  reject: { readonly code: Code; readonly message: string } | undefined;
  /** SystemSharedMemoryRegister fails (Triton ≥ 2.69 without --allow-client-shm=true). */
  refuseShm: boolean;
  /** Extra time per ModelInfer, in ms. */
  delayMs: number;
}

export interface KServeDouble {
  /** host:port, what --triton-url takes. */
  readonly url: string;
  readonly port: number;
  readonly faults: Faults;
  readonly requests: InferRecord[];
  /** Regions registered now: name → key. */
  regions(): Map<string, string>;
  /** Bytes read from clients' sockets (everything on the wire) since start. */
  bytesReceived(): number;
  /** Lets stalled requests go on. */
  releaseStall(): void;
  /** Dies like a crashed process: connections dropped, nothing listening, registrations and statistics gone. */
  kill(): Promise<void>;
  /** Listens again on the same port (after kill), like a restarted Triton. */
  revive(): Promise<void>;
  /** kill, wait, revive. */
  restart(downMs?: number): Promise<void>;
  close(): Promise<void>;
}

interface LoadedModel {
  readonly spec: Required<DoubleModelSpec>;
  readonly session: ort.InferenceSession;
  readonly dimension: number;
  /** One model instance: requests run one at a time, the rest wait in its queue. */
  busy: Promise<void>;
}

interface Counters {
  success: [bigint, bigint];
  fail: [bigint, bigint];
  queue: [bigint, bigint];
  computeInput: [bigint, bigint];
  computeInfer: [bigint, bigint];
  computeOutput: [bigint, bigint];
  inferences: bigint;
  executions: bigint;
  last: bigint;
}

interface Region {
  readonly key: string;
  readonly fd: number;
  readonly offset: number;
  readonly byteSize: number;
}

const newCounters = (): Counters => ({
  success: [0n, 0n],
  fail: [0n, 0n],
  queue: [0n, 0n],
  computeInput: [0n, 0n],
  computeInfer: [0n, 0n],
  computeOutput: [0n, 0n],
  inferences: 0n,
  executions: 0n,
  last: 0n,
});

const perImageDims = (layout: InputLayout) =>
  layout === "uint8-nhwc" ? [SIZE, SIZE, 3] : [3, SIZE, SIZE];
const datatypeOf = (layout: InputLayout) => (layout === "uint8-nhwc" ? "UINT8" : "FP32");
const elementBytes = (layout: InputLayout) => (layout === "uint8-nhwc" ? 1 : 4);

function paramValue(p: InferParameter | undefined): string | number | undefined {
  const c = p?.parameterChoice;
  if (!c || c.case === undefined) return undefined;
  if (c.case === "int64Param" || c.case === "uint64Param") return Number(c.value);
  if (c.case === "stringParam" || c.case === "doubleParam") return c.value;
  return undefined;
}

const invalid = (message: string) => new ConnectError(message, Code.InvalidArgument);

export async function startKServeDouble(opts: {
  readonly models: readonly DoubleModelSpec[];
  readonly port?: number;
  readonly host?: string;
  /** ONNX Runtime threads per model. */
  readonly threads?: number;
}): Promise<KServeDouble> {
  const host = opts.host ?? "127.0.0.1";
  const models = new Map<string, LoadedModel>();
  for (const m of opts.models) {
    const spec: Required<DoubleModelSpec> = {
      version: "1",
      inputName: "image",
      outputName: "embedding",
      ...m,
    };
    const session = await ort.InferenceSession.create(spec.path, {
      intraOpNumThreads: opts.threads ?? 1,
      interOpNumThreads: 1,
      graphOptimizationLevel: "all",
    });
    const probe =
      spec.layout === "uint8-nhwc"
        ? new ort.Tensor("uint8", new Uint8Array(SIZE * SIZE * 3), [1, SIZE, SIZE, 3])
        : new ort.Tensor("float32", new Float32Array(SIZE * SIZE * 3), [1, 3, SIZE, SIZE]);
    const out = await session.run({ [session.inputNames[0]!]: probe });
    const dimension = (out[session.outputNames[0]!]!.data as Float32Array).length;
    models.set(spec.name, { spec, session, dimension, busy: Promise.resolve() });
  }

  const faults: Faults = {
    serverNotReady: false,
    unloaded: new Set(),
    stall: false,
    reject: undefined,
    refuseShm: false,
    delayMs: 0,
  };
  const requests: InferRecord[] = [];
  const regions = new Map<string, Region>();
  const counters = new Map<string, Counters>();
  let stallWaiters: Array<() => void> = [];
  const sessions = new Set<ServerHttp2Session>();
  const sockets = new Set<Socket>();
  let closedBytes = 0;

  const stats = (name: string) => {
    const c = counters.get(name) ?? newCounters();
    counters.set(name, c);
    return c;
  };

  /** Triton's answer for a model it does not serve, or does not serve now. */
  function modelFor(name: string, version: string): LoadedModel {
    const m = models.get(name);
    if (!m || (version !== "" && version !== m.spec.version)) {
      throw new ConnectError(
        `Request for unknown model: '${name}'${version ? ` version ${version}` : ""} is not found`,
        Code.NotFound,
      );
    }
    if (faults.unloaded.has(name)) {
      throw new ConnectError(
        `Request for unknown model: '${name}' has no available versions`,
        Code.Unavailable,
      );
    }
    return m;
  }

  const batchDims = (m: LoadedModel) =>
    m.spec.maxBatchSize > 0 ? [-1, ...perImageDims(m.spec.layout)] : perImageDims(m.spec.layout);

  /** Checks a request as Triton does and returns its input tensor's bytes. */
  function readInput(
    m: LoadedModel,
    req: ModelInferRequest,
  ): { bytes: Uint8Array; n: number; shm: boolean } {
    const { spec } = m;
    if (req.inputs.length !== 1) {
      throw invalid(
        `expected 1 inputs but got ${req.inputs.length} inputs for model '${spec.name}'`,
      );
    }
    const input = req.inputs[0]!;
    if (input.name !== spec.inputName) {
      throw invalid(`unexpected inference input '${input.name}' for model '${spec.name}'`);
    }
    const want = datatypeOf(spec.layout);
    if (input.datatype !== want) {
      throw invalid(
        `inference input '${input.name}' data-type is '${input.datatype}', but model '${spec.name}' expects '${want}'`,
      );
    }
    const shape = input.shape.map(Number);
    const image = perImageDims(spec.layout);
    const batched = spec.maxBatchSize > 0;
    const rest = batched ? shape.slice(1) : shape;
    const n = batched ? (shape[0] ?? 0) : 1;
    if (rest.length !== 3 || rest.some((d, i) => d !== image[i]) || n < 1) {
      throw invalid(
        `unexpected shape for input '${input.name}' for model '${spec.name}'. Expected [${batchDims(m).join(",")}], got [${shape.join(",")}]`,
      );
    }
    if (batched && n > spec.maxBatchSize) {
      throw invalid(
        `inference request batch-size must be <= ${spec.maxBatchSize} for '${spec.name}'`,
      );
    }
    for (const o of req.outputs) {
      if (o.name !== spec.outputName) {
        throw invalid(`unexpected inference output '${o.name}' for model '${spec.name}'`);
      }
    }
    const expected = n * SIZE * SIZE * 3 * elementBytes(spec.layout);
    const region = paramValue(input.parameters.shared_memory_region);
    if (region !== undefined) {
      const r = regions.get(String(region));
      if (!r) throw invalid(`Unable to find shared memory region: '${region}'`);
      if (req.rawInputContents.length > 0) {
        throw invalid(
          `input '${input.name}' is in shared memory, but raw_input_contents were also given`,
        );
      }
      const size = Number(paramValue(input.parameters.shared_memory_byte_size) ?? -1);
      const offset = Number(paramValue(input.parameters.shared_memory_offset) ?? 0);
      if (size !== expected) {
        throw invalid(
          `unexpected total byte size ${size} for input '${input.name}', expecting ${expected}`,
        );
      }
      if (offset + size > r.byteSize) {
        throw invalid(
          `shared memory region '${region}' of ${r.byteSize} bytes is too small for offset ${offset} and ${size} bytes`,
        );
      }
      const bytes = new Uint8Array(size);
      let done = 0;
      while (done < size) {
        const got = readSync(r.fd, bytes, done, size - done, r.offset + offset + done);
        if (got === 0) throw invalid(`shared memory region '${region}' ended early`);
        done += got;
      }
      return { bytes, n, shm: true };
    }
    if (req.rawInputContents.length !== 1) {
      throw invalid(
        `expected 1 raw input contents but got ${req.rawInputContents.length} for model '${spec.name}'`,
      );
    }
    const raw = req.rawInputContents[0]!;
    if (raw.byteLength !== expected) {
      throw invalid(
        `unexpected total byte size ${raw.byteLength} for input '${input.name}', expecting ${expected}`,
      );
    }
    return { bytes: raw, n, shm: false };
  }

  async function infer(req: ModelInferRequest, ctx: HandlerContext): Promise<ModelInferResponse> {
    const received = process.hrtime.bigint();
    const m = modelFor(req.modelName, req.modelVersion);
    const c = stats(m.spec.name);
    let record: Omit<InferRecord, "outcome"> = {
      model: m.spec.name,
      id: req.id,
      images: 0,
      viaShm: false,
    };
    const fail = (err: unknown, outcome: InferRecord["outcome"]) => {
      const t = process.hrtime.bigint() - received;
      c.fail[0]++;
      c.fail[1] += t;
      requests.push({ ...record, outcome });
      return err;
    };
    let release: () => void = () => {};
    try {
      const input = readInput(m, req);
      record = { ...record, images: input.n, viaShm: input.shm };
      if (faults.reject) throw new ConnectError(faults.reject.message, faults.reject.code);
      // Wait for the model instance: the queue time.
      const previous = m.busy;
      m.busy = new Promise<void>((r) => {
        release = r;
      });
      await previous;
      const started = process.hrtime.bigint();
      const timeoutUs = paramValue(req.parameters.timeout);
      if (
        typeof timeoutUs === "number" &&
        timeoutUs > 0 &&
        Number(started - received) / 1000 > timeoutUs
      ) {
        throw new ConnectError("Request timeout expired", Code.Unavailable);
      }
      if (faults.stall) {
        await new Promise<void>((resolve, reject) => {
          const go = () => resolve();
          stallWaiters.push(go);
          ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true });
        });
      }
      if (faults.delayMs > 0) await new Promise((r) => setTimeout(r, faults.delayMs));
      ctx.signal.throwIfAborted();
      const dims = [input.n, ...perImageDims(m.spec.layout)];
      const tensor =
        m.spec.layout === "uint8-nhwc"
          ? new ort.Tensor("uint8", input.bytes, dims)
          : new ort.Tensor(
              "float32",
              // Raw contents may be an unaligned view: copy into an aligned buffer.
              new Float32Array(new Uint8Array(input.bytes).buffer),
              dims,
            );
      const inputDone = process.hrtime.bigint();
      const out = await m.session.run({ [m.session.inputNames[0]!]: tensor });
      const inferDone = process.hrtime.bigint();
      const data = out[m.session.outputNames[0]!]!.data as Float32Array;
      const res = create(ModelInferResponseSchema, {
        modelName: m.spec.name,
        modelVersion: m.spec.version,
        id: req.id,
        outputs: [
          {
            name: m.spec.outputName,
            datatype: "FP32",
            shape: (m.spec.maxBatchSize > 0 ? [input.n, m.dimension] : [m.dimension]).map(BigInt),
          },
        ],
        rawOutputContents: [new Uint8Array(data.buffer, data.byteOffset, data.byteLength)],
      });
      const done = process.hrtime.bigint();
      const add = (
        k: "queue" | "computeInput" | "computeInfer" | "computeOutput" | "success",
        ns: bigint,
      ) => {
        c[k][0]++;
        c[k][1] += ns;
      };
      add("queue", started - received);
      add("computeInput", inputDone - started);
      add("computeInfer", inferDone - inputDone);
      add("computeOutput", done - inferDone);
      add("success", done - received);
      c.inferences += BigInt(input.n);
      c.executions++;
      c.last = BigInt(Date.now());
      requests.push({ ...record, outcome: "ok" });
      return res;
    } catch (err) {
      throw fail(err, ctx.signal.aborted ? "cancelled" : "error");
    } finally {
      release();
    }
  }

  const routes = connectNodeAdapter({
    readMaxBytes: 1 << 30,
    routes: (router) =>
      router.service(GRPCInferenceService, {
        serverLive: () => ({ live: true }),
        serverReady: () => ({ ready: !faults.serverNotReady }),
        modelReady: (req) => {
          const m = models.get(req.name);
          const ok =
            m !== undefined &&
            (req.version === "" || req.version === m.spec.version) &&
            !faults.unloaded.has(req.name);
          return { ready: ok };
        },
        modelMetadata: (req) => {
          const m = modelFor(req.name, req.version);
          return {
            name: m.spec.name,
            versions: [m.spec.version],
            platform: "onnxruntime_onnx",
            inputs: [
              {
                name: m.spec.inputName,
                datatype: datatypeOf(m.spec.layout),
                shape: batchDims(m).map(BigInt),
              },
            ],
            outputs: [
              {
                name: m.spec.outputName,
                datatype: "FP32",
                shape: (m.spec.maxBatchSize > 0 ? [-1, m.dimension] : [m.dimension]).map(BigInt),
              },
            ],
          };
        },
        modelConfig: (req) => {
          const m = modelFor(req.name, req.version);
          const uint8 = m.spec.layout === "uint8-nhwc";
          return {
            config: {
              name: m.spec.name,
              platform: "onnxruntime_onnx",
              backend: "onnxruntime",
              maxBatchSize: m.spec.maxBatchSize,
              input: [
                {
                  name: m.spec.inputName,
                  dataType: uint8 ? DataType.TYPE_UINT8 : DataType.TYPE_FP32,
                  format: uint8 ? ModelInput_Format.NHWC : ModelInput_Format.NCHW,
                  dims: perImageDims(m.spec.layout).map(BigInt),
                },
              ],
              output: [
                {
                  name: m.spec.outputName,
                  dataType: DataType.TYPE_FP32,
                  dims: [BigInt(m.dimension)],
                },
              ],
            },
          };
        },
        modelInfer: infer,
        modelStatistics: (req) => {
          const names =
            req.name === "" ? [...models.keys()] : [modelFor(req.name, req.version).spec.name];
          return {
            modelStats: names.map((name): ModelStatistics => {
              const c = stats(name);
              const d = ([count, ns]: [bigint, bigint]) => ({ count, ns });
              return create(ModelStatisticsSchema, {
                name,
                version: models.get(name)!.spec.version,
                lastInference: c.last,
                inferenceCount: c.inferences,
                executionCount: c.executions,
                inferenceStats: {
                  success: d(c.success),
                  fail: d(c.fail),
                  queue: d(c.queue),
                  computeInput: d(c.computeInput),
                  computeInfer: d(c.computeInfer),
                  computeOutput: d(c.computeOutput),
                },
              });
            }),
          };
        },
        systemSharedMemoryStatus: (req) => {
          if (req.name !== "" && !regions.has(req.name)) {
            throw new ConnectError(
              `Unable to find system shared memory region: '${req.name}'`,
              Code.NotFound,
            );
          }
          const entries = [...regions].filter(([name]) => req.name === "" || name === req.name);
          return {
            regions: Object.fromEntries(
              entries.map(([name, r]) => [
                name,
                { name, key: r.key, offset: BigInt(r.offset), byteSize: BigInt(r.byteSize) },
              ]),
            ),
          };
        },
        systemSharedMemoryRegister: (req) => {
          if (faults.refuseShm) {
            throw new ConnectError(
              "failed to register shared memory region: client shared memory is not allowed (start the server with --allow-client-shm=true)",
              Code.PermissionDenied,
            );
          }
          if (regions.has(req.name)) {
            throw new ConnectError(
              `shared memory region '${req.name}' already in manager`,
              Code.AlreadyExists,
            );
          }
          if (!req.key.startsWith("/") || req.key.slice(1).includes("/")) {
            throw invalid(`invalid shared memory key '${req.key}'`);
          }
          let fd: number;
          try {
            fd = openSync(`/dev/shm${req.key}`, "r");
          } catch {
            throw invalid(`Unable to open shared memory region: '${req.key}'`);
          }
          const size = fstatSync(fd).size;
          const offset = Number(req.offset);
          const byteSize = Number(req.byteSize);
          if (offset + byteSize > size) {
            closeSync(fd);
            throw invalid(
              `shared memory region '${req.name}' is ${size} bytes, smaller than offset ${offset} + ${byteSize}`,
            );
          }
          regions.set(req.name, { key: req.key, fd, offset, byteSize });
          return {};
        },
        systemSharedMemoryUnregister: (req) => {
          for (const [name, r] of [...regions]) {
            if (req.name === "" || req.name === name) {
              closeSync(r.fd);
              regions.delete(name);
            }
          }
          return {};
        },
      }),
  });

  let server: Http2Server | undefined;
  let port = opts.port ?? 0;

  async function listen(): Promise<void> {
    // Like Triton's gRPC server, accept large messages (a batch of 32 FP32 images is 19 MB);
    // node's default session memory (10 MB) would answer ENHANCE_YOUR_CALM.
    const s = createServer(
      { settings: { initialWindowSize: 16 * 1024 * 1024 }, maxSessionMemory: 1024 },
      routes,
    );
    s.on("session", (session) => {
      sessions.add(session);
      session.once("close", () => sessions.delete(session));
    });
    s.on("connection", (socket: Socket) => {
      sockets.add(socket);
      socket.once("close", () => {
        closedBytes += socket.bytesRead;
        sockets.delete(socket);
      });
    });
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen(port, host, () => {
        s.off("error", reject);
        resolve();
      });
    });
    port = (s.address() as { port: number }).port;
    server = s;
  }

  function dropState(): void {
    for (const r of regions.values()) closeSync(r.fd);
    regions.clear();
    counters.clear();
  }

  async function kill(): Promise<void> {
    const s = server;
    server = undefined;
    if (!s) return;
    const closed = new Promise<void>((r) => s.close(() => r()));
    for (const session of sessions) session.destroy();
    for (const socket of sockets) socket.destroy();
    releaseStall();
    await closed;
    dropState();
  }

  function releaseStall(): void {
    const waiters = stallWaiters;
    stallWaiters = [];
    for (const go of waiters) go();
  }

  await listen();
  return {
    get url() {
      return `${host}:${port}`;
    },
    get port() {
      return port;
    },
    faults,
    requests,
    regions: () => new Map([...regions].map(([name, r]) => [name, r.key])),
    bytesReceived: () => {
      let n = closedBytes;
      for (const s of sockets) n += s.bytesRead;
      return n;
    },
    releaseStall,
    kill,
    revive: listen,
    async restart(downMs = 0) {
      await kill();
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
      await listen();
    },
    async close() {
      await kill();
      for (const m of models.values()) await m.session.release();
    },
  };
}

/** `name=m,path=x.onnx,layout=uint8-nhwc,max-batch=32` */
export function parseModelArg(text: string): DoubleModelSpec {
  const kv = Object.fromEntries(text.split(",").map((p) => p.split("=") as [string, string]));
  const layout = kv.layout ?? "uint8-nhwc";
  if (!kv.name || !kv.path || (layout !== "uint8-nhwc" && layout !== "float32-nchw")) {
    throw new Error(
      `bad --model ${text}: want name=…,path=…[,layout=uint8-nhwc|float32-nchw][,max-batch=N]`,
    );
  }
  return { name: kv.name, path: kv.path, layout, maxBatchSize: Number(kv["max-batch"] ?? 32) };
}

const USAGE = `usage: node test/support/kserve-double.ts [--port 0] [--host 127.0.0.1] [--threads 1]
         --model name=NAME,path=MODEL.onnx[,layout=uint8-nhwc|float32-nchw][,max-batch=N] ...

The KServe v2 test double (Triton's gRPC API over HTTP/2, ONNX Runtime inside) as a process of its
own; prints {"port": N} once listening, stops on SIGTERM.`;

/**
 * The double's command line: starts it from `args`, prints {"port": N, ...announce} once it
 * listens, and closes it on SIGTERM or SIGINT.
 */
export async function runKServeDoubleCli(
  args: readonly string[] = process.argv.slice(2),
  announce: Record<string, unknown> = {},
): Promise<void> {
  const { values } = parseCli(USAGE, {
    args: [...args],
    options: {
      port: { type: "string", default: "0" },
      host: { type: "string", default: "127.0.0.1" },
      model: { type: "string", multiple: true, default: [] },
      threads: { type: "string", default: "1" },
    },
  });
  const double = await startKServeDouble({
    models: values.model.map(parseModelArg),
    port: Number(values.port),
    host: values.host,
    threads: Number(values.threads),
  });
  process.stdout.write(`${JSON.stringify({ port: double.port, ...announce })}\n`);
  const stop = () => void double.close().then(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

if (import.meta.main) {
  runKServeDoubleCli().catch((err: unknown) => {
    process.stderr.write(`kserve-double: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}

/** The generated model `model` (the gpu-node's weights) taking the seed's FP32 [N,3,224,224] input, cached beside it. */
export async function float32ModelFile(model: string, cacheDir: string): Promise<string> {
  const uint8 = (await ensureModel(model, cacheDir)).path;
  const float32 = cachedModelPath(cacheDir, `${model}-fp32`);
  const fresh = await stat(float32).then(
    async (f) => f.mtimeMs >= (await stat(uint8)).mtimeMs,
    () => false,
  );
  if (!fresh) await writeFileAtomic(float32, toFloat32NchwInput(await readFile(uint8)));
  return float32;
}

/** The generated vit-tiny in both layouts: the UINT8 model the gpu-node generates, and the FP32 one. */
export async function tinyModelFiles(
  cacheDir: string,
): Promise<{ readonly uint8: string; readonly float32: string }> {
  const uint8 = (await ensureModel("vit-tiny", cacheDir)).path;
  return { uint8, float32: await float32ModelFile("vit-tiny", cacheDir) };
}
