/** The gpu-node's settings: parsed once from flags and environment, validated, frozen. */
import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";

export type BackendKind = "onnxruntime" | "triton" | "noop";
const BACKENDS: readonly BackendKind[] = ["onnxruntime", "triton", "noop"];
export type OrtProvider = "auto" | "cpu" | "webgpu" | "cuda";
const ORT_PROVIDERS: readonly OrtProvider[] = ["auto", "cpu", "webgpu", "cuda"];
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";
export type JpegDecoder = "auto" | "native" | "wasm";
const JPEG_DECODERS: readonly JpegDecoder[] = ["auto", "native", "wasm"];
const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error", "silent"];

const MiB = 1024 * 1024;

/**
 * The Node flags every gpu-node process runs with: `npm run gpu-node`, the Dockerfile's
 * ENTRYPOINT, the systemd unit and `npm start` pass them (test/deploy.test.ts checks that they
 * agree), and the cluster's workers inherit them. Every call leaves ArrayBuffers that only a GC
 * frees (the request as read, the decoded pixels, the batch's tensors), and V8 counts them toward
 * the limit at which it starts a full GC, which costs the call it lands on 10–15 ms on a 2-core
 * machine. Started from a 64 MB old-generation budget, from which V8 sets that limit, the
 * primary ran 8–9 full GCs in 1,000 seed calls instead of 18–22, and its two workers 7 instead of
 * 16, for ~20 MB more RSS in all (`npm run bench:seed-tails -- --compare`; docs/benchmarks.md).
 */
export const NODE_FLAGS = ["--initial-old-space-size=64"] as const;

const REPO_ROOT = resolve(import.meta.dirname, "..");

export interface Config {
  readonly host: string;
  readonly port: number;
  readonly backend: BackendKind;
  /** "vit-b32", "vit-tiny", either with "-fp16", or a path to an ONNX file. */
  readonly model: string;
  /** Where generated models are cached. */
  readonly cacheDir: string;
  /** ONNX Runtime intra-op threads. */
  readonly threads: number;
  /** Where ONNX Runtime runs the model; auto = cuda, else a hardware WebGPU adapter, else cpu. */
  readonly ortProvider: OrtProvider;
  /** Which libjpeg-turbo build decodes plain JPEGs: auto = native where it loads, else WASM. */
  readonly jpegDecoder: JpegDecoder;
  /** A GPU batch slower than this counts as a lost device: not ready, session recreated. */
  readonly ortRunTimeoutMs: number;
  /**
   * Processes that serve RPCs and decode images (1 = all in this process). More than 1: a
   * primary supervises that many workers sharing the port (cluster.ts).
   */
  readonly processes: number;
  /** auto: the backend's own (32 on CPU, 256 on a GPU provider, Triton's max_batch_size). */
  readonly maxBatchSize: number | "auto";
  /** auto: 100 ms for ONNX Runtime on the CPU, whose inference would starve decodes; else 2. */
  readonly maxBatchWaitMs: number | "auto";
  /** Images admitted at once (decoding, queued, or in inference); beyond it calls fail fast. */
  readonly maxQueuedImages: number;
  readonly maxImagesPerRequest: number;
  readonly maxImageBytes: number;
  readonly maxImagePixels: number;
  /** Largest protobuf message the server reads (Connect's readMaxBytes). */
  readonly maxMessageBytes: number;
  /** Images decoded at once (bounds decode memory; sharp has its own thread pool). */
  readonly decodeConcurrency: number;
  /** Images of one EmbedStream worked on at once before the server stops reading. */
  readonly maxStreamInFlight: number;
  /** Deadline applied when a client sends none, and the largest one accepted. */
  readonly defaultDeadlineMs: number;
  readonly maxDeadlineMs: number;
  /** How long SIGTERM waits for in-flight calls before cancelling them. */
  readonly drainTimeoutMs: number;
  /** Shared secret the edge must send as `Authorization: Bearer …`; empty = no check. */
  readonly token: string;
  /** PEM certificate chain and private key: with both, the port serves HTTPS (h2 + http/1.1); empty = cleartext. */
  readonly tlsCert: string;
  readonly tlsKey: string;
  readonly logLevel: LogLevel;
  /** Serve /metrics and /dashboard on their own port (off: neither is served). */
  readonly metrics: boolean;
  /** The metrics port (0 = any free port). */
  readonly metricsPort: number;
  /** Triton's gRPC endpoint, host:port (h2c; Triton's default gRPC port is 8001). */
  readonly tritonUrl: string;
  /** The model's name in Triton's repository, and its version ("" = the server's policy). */
  readonly tritonModel: string;
  readonly tritonModelVersion: string;
  /** Send input tensors through /dev/shm regions instead of inside the gRPC message. */
  readonly tritonShm: boolean;
  /** Backend batches in flight to Triton at once (its dynamic batcher and instances overlap them). */
  readonly tritonConcurrency: number;
  /** Deadline of one inference request to Triton (also sent as its queue timeout). */
  readonly tritonTimeoutMs: number;
  /** How long start-up waits for Triton and the model to become ready. */
  readonly tritonStartTimeoutMs: number;
  /** Health-check period while Triton is ready (faster retries while it is not). */
  readonly tritonHealthIntervalMs: number;
  /** ModelStatistics polling period (0 = off). */
  readonly tritonStatsIntervalMs: number;
}

interface Setting {
  readonly flag: string;
  readonly env: string;
  readonly help: string;
  readonly fallback: () => string;
  /** A switch: `--flag` alone means true; the env var takes true/false/1/0. */
  readonly boolean?: true;
  /** The default as documented, where `fallback()` depends on the machine (docs/configuration.md). */
  readonly documentedDefault?: string;
}

/** Every setting, with its flag, environment variable and default: the single place they are documented. */
export const SETTINGS = {
  host: {
    flag: "host",
    env: "GPU_NODE_HOST",
    help: "Address to listen on",
    fallback: () => "127.0.0.1",
  },
  port: {
    flag: "port",
    env: "GPU_NODE_PORT",
    help: "TCP port (0 = any free port)",
    fallback: () => "50051",
  },
  backend: {
    flag: "backend",
    env: "GPU_NODE_BACKEND",
    help: `Inference backend: ${BACKENDS.join(" | ")}`,
    fallback: () => "onnxruntime",
  },
  model: {
    flag: "model",
    env: "GPU_NODE_MODEL",
    help: "vit-b32 | vit-tiny | vit-b32-fp16 | vit-tiny-fp16 (generated on first use; -fp16: the same weights computing in half precision, for GPU providers; the CPU provider runs it through casts to float) | path to an ONNX file",
    fallback: () => "vit-b32",
  },
  cacheDir: {
    flag: "cache-dir",
    env: "GPU_NODE_CACHE_DIR",
    help: "Folder for generated models",
    fallback: () => resolve(REPO_ROOT, ".cache"),
    documentedDefault: ".cache in the repository",
  },
  threads: {
    flag: "threads",
    env: "GPU_NODE_THREADS",
    help: "ONNX Runtime intra-op threads (default: the machine's cores)",
    fallback: () => String(availableParallelism()),
    documentedDefault: "the machine's cores",
  },
  processes: {
    flag: "processes",
    env: "GPU_NODE_PROCESSES",
    help: "Processes that serve RPCs and decode images, sharing the port (default: the machine's cores; 1 = everything in one process). With onnxruntime the model and the micro-batcher stay in the primary process and workers send it decoded pixels; with triton and noop every worker has its own backend",
    fallback: () => String(availableParallelism()),
    documentedDefault: "the machine's cores",
  },
  ortProvider: {
    flag: "ort-provider",
    env: "GPU_NODE_ORT_PROVIDER",
    help: `Where the onnxruntime backend runs the model: ${ORT_PROVIDERS.join(" | ")}. auto takes cuda when ONNX Runtime's CUDA provider loads, else webgpu when a hardware GPU adapter answers (never a software one such as lavapipe), else cpu. A provider named here that cannot load stops the start, saying what is missing`,
    fallback: () => "auto",
  },
  jpegDecoder: {
    flag: "jpeg-decoder",
    env: "GPU_NODE_JPEG_DECODER",
    help: `Which libjpeg-turbo build decodes the plain JPEGs the edge sends: ${JPEG_DECODERS.join(" | ")}. native is the prebuilt Node-API addon with libjpeg-turbo's SIMD (Linux x86-64, glibc; about a third of the WASM build's CPU); wasm the portable build. auto takes native where it loads. Either is checked against sharp at start and left off (sharp for every image) if its bytes differ; native named here where it cannot load stops the start`,
    fallback: () => "auto",
  },
  ortRunTimeoutMs: {
    flag: "ort-run-timeout-ms",
    env: "GPU_NODE_ORT_RUN_TIMEOUT_MS",
    help: "A batch on a GPU provider that takes longer counts as a lost device: its calls fail, the node turns not ready and recreates the session (3 tries, then it exits)",
    fallback: () => "60000",
  },
  maxBatchSize: {
    flag: "max-batch-size",
    env: "GPU_NODE_MAX_BATCH_SIZE",
    help: "Largest backend batch the micro-batcher forms. auto = 32 for onnxruntime on the CPU and for noop, 256 for onnxruntime on a GPU provider, the model's max_batch_size for triton",
    fallback: () => "auto",
  },
  maxBatchWaitMs: {
    flag: "max-batch-wait-ms",
    env: "GPU_NODE_MAX_BATCH_WAIT_MS",
    help: "How long a partial batch may wait for images of calls already admitted and still decoding (a lone call never waits; 0 = never). auto = 100 for onnxruntime on the CPU provider, whose inference would starve those decodes, else 2",
    fallback: () => "auto",
  },
  maxQueuedImages: {
    flag: "max-queued-images",
    env: "GPU_NODE_MAX_QUEUED_IMAGES",
    help: "Images admitted at once; further calls fail fast with RESOURCE_EXHAUSTED",
    fallback: () => "512",
  },
  maxImagesPerRequest: {
    flag: "max-images-per-request",
    env: "GPU_NODE_MAX_IMAGES_PER_REQUEST",
    help: "Images in one Embed call",
    fallback: () => "64",
  },
  maxImageBytes: {
    flag: "max-image-bytes",
    env: "GPU_NODE_MAX_IMAGE_BYTES",
    help: "Bytes of one encoded image",
    fallback: () => String(20 * MiB),
  },
  maxImagePixels: {
    flag: "max-image-pixels",
    env: "GPU_NODE_MAX_IMAGE_PIXELS",
    help: "Pixels (width x height) of one image, checked before decoding",
    fallback: () => String(100_000_000),
  },
  maxMessageBytes: {
    flag: "max-message-bytes",
    env: "GPU_NODE_MAX_MESSAGE_BYTES",
    help: "Largest request message read (Connect readMaxBytes)",
    fallback: () => String(64 * MiB),
  },
  decodeConcurrency: {
    flag: "decode-concurrency",
    env: "GPU_NODE_DECODE_CONCURRENCY",
    help: "Images decoded at once (default: 2 x cores)",
    fallback: () => String(2 * availableParallelism()),
    documentedDefault: "2 x the machine's cores",
  },
  maxStreamInFlight: {
    flag: "max-stream-in-flight",
    env: "GPU_NODE_MAX_STREAM_IN_FLIGHT",
    help: "Images of one EmbedStream in flight before the server stops reading",
    fallback: () => "64",
  },
  defaultDeadlineMs: {
    flag: "default-deadline-ms",
    env: "GPU_NODE_DEFAULT_DEADLINE_MS",
    help: "Deadline for calls that set none",
    fallback: () => "30000",
  },
  maxDeadlineMs: {
    flag: "max-deadline-ms",
    env: "GPU_NODE_MAX_DEADLINE_MS",
    help: "Largest deadline a client may ask for (streams included)",
    fallback: () => "600000",
  },
  drainTimeoutMs: {
    flag: "drain-timeout-ms",
    env: "GPU_NODE_DRAIN_TIMEOUT_MS",
    help: "On SIGTERM/SIGINT, how long in-flight calls may finish before they are cancelled",
    fallback: () => "10000",
  },
  token: {
    flag: "token",
    env: "GPU_NODE_TOKEN",
    help: "Shared secret callers must send as 'Authorization: Bearer <token>' (empty = no check; prefer the env var)",
    fallback: () => "",
  },
  logLevel: {
    flag: "log-level",
    env: "GPU_NODE_LOG_LEVEL",
    help: `Log level: ${LOG_LEVELS.join(" | ")} (debug adds a line for every served call)`,
    fallback: () => "info",
  },
  metrics: {
    flag: "metrics",
    env: "GPU_NODE_METRICS",
    help: "Serve Prometheus /metrics and the live /dashboard on --metrics-port (--no-metrics: off)",
    fallback: () => "true",
    boolean: true,
  },
  tlsCert: {
    flag: "tls-cert",
    env: "GPU_NODE_TLS_CERT",
    help: "PEM certificate chain file: with --tls-key the port serves HTTPS (ALPN h2 and http/1.1) instead of cleartext; re-read on SIGHUP",
    fallback: () => "",
  },
  tlsKey: {
    flag: "tls-key",
    env: "GPU_NODE_TLS_KEY",
    help: "PEM private key file of --tls-cert; re-read on SIGHUP",
    fallback: () => "",
  },
  metricsPort: {
    flag: "metrics-port",
    env: "GPU_NODE_METRICS_PORT",
    help: "Port of /metrics and /dashboard, on --host (0 = any free port)",
    fallback: () => "9464",
  },
  tritonUrl: {
    flag: "triton-url",
    env: "GPU_NODE_TRITON_URL",
    help: "Triton's gRPC endpoint, host:port (cleartext HTTP/2, normally on the same host)",
    fallback: () => "127.0.0.1:8001",
  },
  tritonModel: {
    flag: "triton-model",
    env: "GPU_NODE_TRITON_MODEL",
    help: "Model name in Triton's repository (UINT8 [N,224,224,3] or FP32 [N,3,224,224] input)",
    fallback: () => "openclip_vit_b32_uint8",
  },
  tritonModelVersion: {
    flag: "triton-model-version",
    env: "GPU_NODE_TRITON_MODEL_VERSION",
    help: "Model version to use (empty = Triton's version policy)",
    fallback: () => "",
  },
  tritonShm: {
    flag: "triton-shm",
    env: "GPU_NODE_TRITON_SHM",
    help: "Send input tensors through system shared memory (/dev/shm) instead of the gRPC message",
    fallback: () => "false",
    boolean: true,
  },
  tritonConcurrency: {
    flag: "triton-concurrency",
    env: "GPU_NODE_TRITON_CONCURRENCY",
    help: "Batches in flight to Triton at once",
    fallback: () => "4",
  },
  tritonTimeoutMs: {
    flag: "triton-timeout-ms",
    env: "GPU_NODE_TRITON_TIMEOUT_MS",
    help: "Deadline of one inference request to Triton; a request past it marks Triton stalled (not ready)",
    fallback: () => "10000",
  },
  tritonStartTimeoutMs: {
    flag: "triton-start-timeout-ms",
    env: "GPU_NODE_TRITON_START_TIMEOUT_MS",
    help: "How long start-up waits for Triton and the model to be ready",
    fallback: () => "60000",
  },
  tritonHealthIntervalMs: {
    flag: "triton-health-interval-ms",
    env: "GPU_NODE_TRITON_HEALTH_INTERVAL_MS",
    help: "Health-check period while Triton is ready (retries are faster while it is not)",
    fallback: () => "1000",
  },
  tritonStatsIntervalMs: {
    flag: "triton-stats-interval-ms",
    env: "GPU_NODE_TRITON_STATS_INTERVAL_MS",
    help: "How often Triton's ModelStatistics are polled (0 = never)",
    fallback: () => "10000",
  },
} as const satisfies Record<keyof Config, Setting>;

/** A bad setting: the message names the flag, the variable and what is allowed. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

export function helpText(): string {
  const lines = [
    "Usage: npm run gpu-node -- [options]",
    "",
    "Options (each also read from its environment variable):",
  ];
  for (const s of Object.values(SETTINGS)) {
    lines.push(`  --${s.flag.padEnd(24)} ${s.help}`);
    lines.push(`  ${"".padEnd(26)} env ${s.env}, default ${JSON.stringify(s.fallback())}`);
  }
  lines.push("  --help                     Show this text");
  return lines.join("\n");
}

/** Parses argv (without node and script) and the environment; throws ConfigError on a bad value. */
export function parseConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = {},
): Config {
  const options = Object.fromEntries(
    Object.values(SETTINGS).map((s: Setting) => [
      s.flag,
      { type: s.boolean ? ("boolean" as const) : ("string" as const) },
    ]),
  );
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: [...argv],
      options,
      strict: true,
      allowPositionals: false,
      // `--no-<switch>` turns a switch off (--no-metrics).
      allowNegative: true,
    }).values;
  } catch (err) {
    throw new ConfigError(err instanceof Error ? err.message : String(err));
  }
  const raw = (key: keyof Config): string => {
    const s = SETTINGS[key];
    const v = values[s.flag];
    if (v === true) return "true";
    if (v === false) return "false";
    return typeof v === "string" ? v : (env[s.env] ?? s.fallback());
  };
  const int = (key: keyof Config, min: number, max: number): number => {
    const text = raw(key).trim();
    const n = Number(text);
    if (text === "" || !Number.isSafeInteger(n) || n < min || n > max) {
      const s = SETTINGS[key];
      throw new ConfigError(
        `--${s.flag} (${s.env}) must be an integer from ${min} to ${max}, got ${JSON.stringify(text)}`,
      );
    }
    return n;
  };
  const oneOf = <T extends string>(key: keyof Config, allowed: readonly T[]): T => {
    const v = raw(key);
    if (!(allowed as readonly string[]).includes(v)) {
      const s = SETTINGS[key];
      throw new ConfigError(
        `--${s.flag} (${s.env}) must be one of ${allowed.join(", ")}, got ${JSON.stringify(v)}`,
      );
    }
    return v as T;
  };
  const bool = (key: keyof Config): boolean => {
    const v = raw(key).trim().toLowerCase();
    if (v === "true" || v === "1") return true;
    if (v === "false" || v === "0" || v === "") return false;
    const s = SETTINGS[key];
    throw new ConfigError(`--${s.flag} (${s.env}) must be true or false, got ${JSON.stringify(v)}`);
  };
  const host = raw("host").trim();
  if (host === "") throw new ConfigError("--host (GPU_NODE_HOST) must not be empty");
  const model = raw("model").trim();
  if (model === "") throw new ConfigError("--model (GPU_NODE_MODEL) must not be empty");

  const config: Config = {
    host,
    port: int("port", 0, 65535),
    backend: oneOf("backend", BACKENDS),
    model,
    cacheDir: resolve(raw("cacheDir")),
    threads: int("threads", 1, 1024),
    processes: int("processes", 1, 1024),
    ortProvider: oneOf("ortProvider", ORT_PROVIDERS),
    jpegDecoder: oneOf("jpegDecoder", JPEG_DECODERS),
    ortRunTimeoutMs: int("ortRunTimeoutMs", 100, 3_600_000),
    maxBatchSize: raw("maxBatchSize").trim() === "auto" ? "auto" : int("maxBatchSize", 1, 4096),
    maxBatchWaitMs:
      raw("maxBatchWaitMs").trim() === "auto" ? "auto" : int("maxBatchWaitMs", 0, 1000),
    maxQueuedImages: int("maxQueuedImages", 1, 1_000_000),
    maxImagesPerRequest: int("maxImagesPerRequest", 1, 100_000),
    maxImageBytes: int("maxImageBytes", 1, 2 ** 31 - 1),
    maxImagePixels: int("maxImagePixels", 1, 2 ** 40),
    maxMessageBytes: int("maxMessageBytes", 1024, 2 ** 32 - 1),
    decodeConcurrency: int("decodeConcurrency", 1, 4096),
    maxStreamInFlight: int("maxStreamInFlight", 1, 100_000),
    defaultDeadlineMs: int("defaultDeadlineMs", 1, 86_400_000),
    maxDeadlineMs: int("maxDeadlineMs", 1, 86_400_000),
    drainTimeoutMs: int("drainTimeoutMs", 0, 3_600_000),
    token: raw("token"),
    tlsCert: raw("tlsCert").trim() === "" ? "" : resolve(raw("tlsCert").trim()),
    tlsKey: raw("tlsKey").trim() === "" ? "" : resolve(raw("tlsKey").trim()),
    logLevel: oneOf("logLevel", LOG_LEVELS),
    metrics: bool("metrics"),
    metricsPort: int("metricsPort", 0, 65535),
    tritonUrl: tritonUrl(raw("tritonUrl")),
    tritonModel: raw("tritonModel").trim(),
    tritonModelVersion: raw("tritonModelVersion").trim(),
    tritonShm: bool("tritonShm"),
    tritonConcurrency: int("tritonConcurrency", 1, 256),
    tritonTimeoutMs: int("tritonTimeoutMs", 1, 3_600_000),
    tritonStartTimeoutMs: int("tritonStartTimeoutMs", 0, 86_400_000),
    tritonHealthIntervalMs: int("tritonHealthIntervalMs", 50, 600_000),
    tritonStatsIntervalMs: int("tritonStatsIntervalMs", 0, 86_400_000),
  };
  if (config.backend === "triton" && config.tritonModel === "") {
    throw new ConfigError("--triton-model (GPU_NODE_TRITON_MODEL) must not be empty");
  }
  if ((config.tlsCert === "") !== (config.tlsKey === "")) {
    throw new ConfigError(
      "--tls-cert (GPU_NODE_TLS_CERT) and --tls-key (GPU_NODE_TLS_KEY) go together: give both or neither",
    );
  }
  if (config.defaultDeadlineMs > config.maxDeadlineMs) {
    throw new ConfigError("--default-deadline-ms must not exceed --max-deadline-ms");
  }
  if (config.maxImagesPerRequest > config.maxQueuedImages) {
    throw new ConfigError(
      "--max-images-per-request must not exceed --max-queued-images (such a request could never be admitted)",
    );
  }
  return Object.freeze(config);
}

/**
 * `host:port` (an `http://` prefix is accepted): Triton is reached over cleartext HTTP/2 on the
 * same host or a private link, so TLS endpoints are refused rather than silently downgraded.
 */
function tritonUrl(text: string): string {
  const v = text
    .trim()
    .replace(/^http:\/\//, "")
    .replace(/\/+$/, "");
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(v);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw new ConfigError(
      `--triton-url (GPU_NODE_TRITON_URL) must be host:port (cleartext gRPC), got ${JSON.stringify(text)}`,
    );
  }
  return v;
}

/** The defaults, with overrides: what tests and benchmarks use instead of touching process.env. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  // Any free metrics port: tests run many nodes at once. One process: tests inject backends
  // and decoders, which cannot cross into worker processes.
  return Object.freeze({
    ...parseConfig([], {}),
    logLevel: "silent",
    metricsPort: 0,
    processes: 1,
    ...overrides,
  });
}

/** The URL clients use for a node listening on `port` with this config (https with TLS). */
export function nodeUrl(config: Config, port: number): string {
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  return `${config.tlsCert === "" ? "http" : "https"}://${host}:${port}`;
}

/** The limits worth seeing in the start-up log line (no secrets). */
export function summary(config: Config) {
  const { token: _token, ...rest } = config;
  return { ...rest, token: config.token === "" ? "off" : "set" };
}
