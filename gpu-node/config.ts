/** The gpu-node's settings: parsed once from flags and environment, validated, frozen. */
import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";

export type BackendKind = "onnxruntime" | "noop";
const BACKENDS: readonly BackendKind[] = ["onnxruntime", "noop"];
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";
const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error", "silent"];

const MiB = 1024 * 1024;
const REPO_ROOT = resolve(import.meta.dirname, "..");

export interface Config {
  readonly host: string;
  readonly port: number;
  readonly backend: BackendKind;
  /** "vit-b32", "vit-tiny" or a path to an ONNX file. */
  readonly model: string;
  /** Where generated models are cached. */
  readonly cacheDir: string;
  /** ONNX Runtime intra-op threads. */
  readonly threads: number;
  readonly maxBatchSize: number;
  readonly maxBatchWaitMs: number;
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
  readonly logLevel: LogLevel;
}

interface Setting {
  readonly flag: string;
  readonly env: string;
  readonly help: string;
  readonly fallback: () => string;
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
    help: "vit-b32 | vit-tiny (generated on first use) | path to an ONNX file",
    fallback: () => "vit-b32",
  },
  cacheDir: {
    flag: "cache-dir",
    env: "GPU_NODE_CACHE_DIR",
    help: "Folder for generated models",
    fallback: () => resolve(REPO_ROOT, ".cache"),
  },
  threads: {
    flag: "threads",
    env: "GPU_NODE_THREADS",
    help: "ONNX Runtime intra-op threads (default: the machine's cores)",
    fallback: () => String(availableParallelism()),
  },
  maxBatchSize: {
    flag: "max-batch-size",
    env: "GPU_NODE_MAX_BATCH_SIZE",
    help: "Largest backend batch the micro-batcher forms",
    fallback: () => "32",
  },
  maxBatchWaitMs: {
    flag: "max-batch-wait-ms",
    env: "GPU_NODE_MAX_BATCH_WAIT_MS",
    help: "How long a batch waits for more images before it runs (0 = never waits)",
    fallback: () => "2",
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
    help: `Log level: ${LOG_LEVELS.join(" | ")}`,
    fallback: () => "info",
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
    Object.values(SETTINGS).map((s) => [s.flag, { type: "string" as const }]),
  );
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new ConfigError(err instanceof Error ? err.message : String(err));
  }
  const raw = (key: keyof Config): string => {
    const s = SETTINGS[key];
    const v = values[s.flag];
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
    maxBatchSize: int("maxBatchSize", 1, 4096),
    maxBatchWaitMs: int("maxBatchWaitMs", 0, 1000),
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
    logLevel: oneOf("logLevel", LOG_LEVELS),
  };
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

/** The defaults, with overrides: what tests and benchmarks use instead of touching process.env. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  return Object.freeze({ ...parseConfig([], {}), logLevel: "silent", ...overrides });
}
