/** The settings of `npm run ingest` and `npm run duplicates`: one table each (flag, environment variable, default, meaning), parsed once from the command line, validated and frozen; docs/configuration.md and `--help` are written from the same tables. */
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";

const MiB = 1024 * 1024;

export interface Option {
  readonly flag: string;
  /** Read when the flag is absent (secrets belong here rather than in `ps` output). */
  readonly env?: string;
  readonly help: string;
  readonly fallback: string;
  /** A switch: `--flag` / `--no-flag`. */
  readonly boolean?: true;
  /** The default as documented, where `fallback` depends on the machine. */
  readonly documentedDefault?: string;
}

/** Every setting of the ingest CLI: the one place each is documented. */
export const INGEST_OPTIONS = {
  edge: {
    flag: "edge",
    env: "INGEST_EDGE_URL",
    help: "Send photos through the edge at this base URL (POST /v1/embeddings, the path mobile clients take)",
    fallback: "",
  },
  key: {
    flag: "key",
    env: "INGEST_EDGE_KEY",
    help: "The edge's API key (Bearer); prefer the environment variable, command lines show in `ps`",
    fallback: "",
  },
  gpuNode: {
    flag: "gpu-node",
    env: "INGEST_GPU_NODE_URL",
    help: "Send photos straight to a gpu-node at this base URL (EmbedStream over h2c, or h2 for https)",
    fallback: "",
  },
  token: {
    flag: "token",
    env: "INGEST_GPU_NODE_TOKEN",
    help: "The gpu-node's token (Bearer), when it has one",
    fallback: "",
  },
  db: {
    flag: "db",
    env: "INGEST_DB",
    help: "The SQLite database the results go to (created when missing); re-running with it resumes",
    fallback: "",
  },
  concurrency: {
    flag: "concurrency",
    help: "Photos in flight at once (read, sent, awaiting the answer). The gpu-node stops reading a stream at its --max-stream-in-flight (64)",
    fallback: "16",
  },
  retries: {
    flag: "retries",
    help: "Further attempts per photo after a transient failure (429/503/502/504, unavailable, resource_exhausted, deadline_exceeded, connection lost)",
    fallback: "5",
  },
  retryBaseMs: {
    flag: "retry-base-ms",
    help: "First back-off; it doubles per attempt, with jitter, up to --retry-max-ms. A server's Retry-After wins when it is longer",
    fallback: "250",
  },
  retryMaxMs: {
    flag: "retry-max-ms",
    help: "Longest wait between two attempts, Retry-After included",
    fallback: "30000",
  },
  timeoutMs: {
    flag: "timeout-ms",
    help: "Deadline of one attempt for one photo",
    fallback: "60000",
  },
  maxFileBytes: {
    flag: "max-file-bytes",
    help: "Larger files are recorded as an error without being read or sent (the edge and the gpu-node refuse over 20 MiB by default)",
    fallback: String(20 * MiB),
  },
  followSymlinks: {
    flag: "follow-symlinks",
    help: "Follow symbolic links to folders and files (loops are detected and reported); --no-follow-symlinks skips every link",
    fallback: "true",
    boolean: true,
  },
  rehash: {
    flag: "rehash",
    help: "Hash every file even when its size and mtime match the database (default: those are trusted, which makes a resume take seconds)",
    fallback: "false",
    boolean: true,
  },
  retryErrors: {
    flag: "retry-errors",
    help: "Send again the unchanged files whose last answer was a permanent error (transient failures are always retried on the next run)",
    fallback: "false",
    boolean: true,
  },
  progress: {
    flag: "progress",
    help: "auto (a bar on a terminal, else log lines) | bar | log | none",
    fallback: "auto",
  },
  progressIntervalMs: {
    flag: "progress-interval-ms",
    help: "Period of the progress log lines when stdout is not a terminal",
    fallback: "10000",
  },
  drainMs: {
    flag: "drain-ms",
    help: "After Ctrl-C or SIGTERM, how long the photos in flight may take to be answered and saved (a second Ctrl-C stops at once; nothing saved is lost either way)",
    fallback: "10000",
  },
  dbMaxPages: {
    flag: "db-max-pages",
    help: "Cap the database at this many pages (SQLite max_page_count; 0 = no cap). A cap reached behaves as a full disk: tests use it to check that path",
    fallback: "0",
  },
} as const satisfies Record<string, Option>;

/** Every setting of the duplicates CLI. */
export const DUPLICATES_OPTIONS = {
  db: {
    flag: "db",
    env: "INGEST_DB",
    help: "The database written by `npm run ingest`",
    fallback: "",
  },
  json: { flag: "json", help: "Write the groups as JSON to this file", fallback: "" },
  html: {
    flag: "html",
    help: "Write a contact sheet (each group's thumbnails side by side, with their similarity) to this HTML file",
    fallback: "",
  },
  stats: {
    flag: "stats",
    help: "Write the run's figures (vectors, groups, index, recall, times, peak memory) as JSON to this file",
    fallback: "",
  },
  threshold: {
    flag: "threshold",
    help: "Cosine similarity at or above which two photos are near-duplicates (Immich: distance <= 0.01, i.e. 0.99; see docs/ingest.md for this default)",
    fallback: "0.97",
  },
  neighbours: {
    flag: "neighbours",
    help: "Nearest neighbours examined per photo (Immich: 64); groups still join transitively beyond them",
    fallback: "64",
  },
  exactMax: {
    flag: "exact-max",
    help: "Up to this many vectors the neighbours come from an exact (brute-force) search; above it from an HNSW index, with its recall measured against brute force on a sample",
    fallback: "5000",
  },
  recallSample: {
    flag: "recall-sample",
    help: "Queries checked against brute force to report the HNSW index's recall (0 = not measured)",
    fallback: "500",
  },
  hnswConnectivity: {
    flag: "hnsw-connectivity",
    help: "HNSW graph degree M (usearch connectivity)",
    fallback: "16",
  },
  hnswExpansionAdd: {
    flag: "hnsw-expansion-add",
    help: "HNSW efConstruction (usearch expansion_add)",
    fallback: "128",
  },
  hnswExpansionSearch: {
    flag: "hnsw-expansion-search",
    help: "HNSW ef at query time (usearch expansion_search); at least --neighbours is used",
    fallback: "128",
  },
  threads: {
    flag: "threads",
    help: "Threads for the index and the exact search",
    fallback: String(availableParallelism()),
    documentedDefault: "the machine's cores",
  },
  modelVersion: {
    flag: "model-version",
    help: "Compare only vectors of this model version (`model@version` or `version`); default: the version most rows have (vectors of different models are never compared)",
    fallback: "",
  },
  htmlMaxGroups: {
    flag: "html-max-groups",
    help: "Groups drawn in the contact sheet (the largest first; the JSON always has all)",
    fallback: "200",
  },
  thumbPx: {
    flag: "thumb-px",
    help: "Long side of a contact-sheet thumbnail, in pixels",
    fallback: "160",
  },
} as const satisfies Record<string, Option>;

type Values<T extends Record<string, Option>> = {
  readonly [K in keyof T]: T[K] extends { boolean: true } ? boolean : string;
};

export class UsageError extends Error {}

/** `usage: …` then one line per option with its default (the text `--help` prints). */
export function usageText(head: string, options: Record<string, Option>): string {
  const lines = Object.values(options).map((o) => {
    const flag = o.boolean ? `--[no-]${o.flag}` : `--${o.flag} X`;
    const dflt = o.documentedDefault ?? o.fallback;
    const env = o.env ? ` [$${o.env}]` : "";
    return `  ${flag.padEnd(28)} ${o.help}${dflt === "" ? "" : ` (default ${dflt})`}${env}`;
  });
  return `${head.trim()}\n\noptions:\n${lines.join("\n")}\n  --help                       show this text`;
}

/** Flags, then environment, then defaults; positionals kept. Throws UsageError on unknown flags. */
export function parseOptions<T extends Record<string, Option>>(
  options: T,
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): { values: Values<T>; positionals: string[] } {
  const config: Record<string, { type: "string" | "boolean" }> = {};
  for (const o of Object.values(options))
    config[o.flag] = { type: o.boolean ? "boolean" : "string" };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: [...args],
      options: config,
      allowPositionals: true,
      allowNegative: true,
    });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  const out: Record<string, string | boolean> = {};
  for (const [key, o] of Object.entries(options)) {
    const given = parsed.values[o.flag];
    const fromEnv = o.env ? env[o.env] : undefined;
    if (o.boolean) {
      out[key] =
        typeof given === "boolean"
          ? given
          : fromEnv !== undefined
            ? /^(1|true|yes)$/i.test(fromEnv)
            : o.fallback === "true";
    } else {
      out[key] = typeof given === "string" ? given : (fromEnv ?? o.fallback);
    }
  }
  return { values: Object.freeze(out) as Values<T>, positionals: parsed.positionals };
}

/** A whole number within [min, max], or a UsageError naming the flag. */
export function intOption(
  flag: string,
  text: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${flag} must be a whole number from ${min} to ${max}, not "${text}"`);
  }
  return n;
}

/** A number within [min, max], or a UsageError naming the flag. */
export function numberOption(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
    throw new UsageError(`--${flag} must be a number from ${min} to ${max}, not "${text}"`);
  }
  return n;
}

export type ProgressMode = "auto" | "bar" | "log" | "none";

export interface IngestConfig {
  readonly source:
    | { readonly kind: "edge"; readonly url: string; readonly key: string }
    | { readonly kind: "gpu-node"; readonly url: string; readonly token: string };
  readonly db: string;
  readonly roots: readonly string[];
  readonly concurrency: number;
  readonly retries: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  readonly timeoutMs: number;
  readonly maxFileBytes: number;
  readonly followSymlinks: boolean;
  readonly rehash: boolean;
  readonly retryErrors: boolean;
  readonly progress: ProgressMode;
  readonly progressIntervalMs: number;
  readonly drainMs: number;
  readonly dbMaxPages: number;
}

function httpUrl(flag: string, text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--${flag} must be a URL such as http://127.0.0.1:8787, not "${text}"`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`--${flag} must be an http:// or https:// URL, not "${text}"`);
  }
  return text.replace(/\/+$/, "");
}

export function parseIngestConfig(args: readonly string[], env = process.env): IngestConfig {
  const { values: v, positionals } = parseOptions(INGEST_OPTIONS, args, env);
  if ((v.edge === "") === (v.gpuNode === "")) {
    throw new UsageError("give exactly one of --edge URL (with --key) or --gpu-node URL");
  }
  if (v.db === "") throw new UsageError("--db FILE is required");
  if (positionals.length === 0) throw new UsageError("name at least one folder or file to ingest");
  if (!["auto", "bar", "log", "none"].includes(v.progress)) {
    throw new UsageError(`--progress must be auto, bar, log or none, not "${v.progress}"`);
  }
  const source =
    v.edge !== ""
      ? { kind: "edge" as const, url: httpUrl("edge", v.edge), key: v.key }
      : { kind: "gpu-node" as const, url: httpUrl("gpu-node", v.gpuNode), token: v.token };
  return Object.freeze({
    source,
    db: v.db,
    roots: Object.freeze([...positionals]),
    concurrency: intOption("concurrency", v.concurrency, 1, 1024),
    retries: intOption("retries", v.retries, 0, 100),
    retryBaseMs: intOption("retry-base-ms", v.retryBaseMs, 1),
    retryMaxMs: intOption("retry-max-ms", v.retryMaxMs, 1),
    timeoutMs: intOption("timeout-ms", v.timeoutMs, 1),
    maxFileBytes: intOption("max-file-bytes", v.maxFileBytes, 1),
    followSymlinks: v.followSymlinks,
    rehash: v.rehash,
    retryErrors: v.retryErrors,
    progress: v.progress as ProgressMode,
    progressIntervalMs: intOption("progress-interval-ms", v.progressIntervalMs, 1),
    drainMs: intOption("drain-ms", v.drainMs, 0),
    dbMaxPages: intOption("db-max-pages", v.dbMaxPages, 0),
  });
}

export interface DuplicatesConfig {
  readonly db: string;
  readonly json: string;
  readonly html: string;
  readonly stats: string;
  readonly threshold: number;
  readonly neighbours: number;
  readonly exactMax: number;
  readonly recallSample: number;
  readonly hnswConnectivity: number;
  readonly hnswExpansionAdd: number;
  readonly hnswExpansionSearch: number;
  readonly threads: number;
  readonly modelVersion: string;
  readonly htmlMaxGroups: number;
  readonly thumbPx: number;
}

export function parseDuplicatesConfig(
  args: readonly string[],
  env = process.env,
): DuplicatesConfig {
  const { values: v, positionals } = parseOptions(DUPLICATES_OPTIONS, args, env);
  if (v.db === "") throw new UsageError("--db FILE is required");
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  return Object.freeze({
    db: v.db,
    json: v.json,
    html: v.html,
    stats: v.stats,
    threshold: numberOption("threshold", v.threshold, -1, 1),
    neighbours: intOption("neighbours", v.neighbours, 1, 4096),
    exactMax: intOption("exact-max", v.exactMax, 0),
    recallSample: intOption("recall-sample", v.recallSample, 0),
    hnswConnectivity: intOption("hnsw-connectivity", v.hnswConnectivity, 2, 256),
    hnswExpansionAdd: intOption("hnsw-expansion-add", v.hnswExpansionAdd, 1, 100_000),
    hnswExpansionSearch: intOption("hnsw-expansion-search", v.hnswExpansionSearch, 1, 100_000),
    threads: intOption("threads", v.threads, 1, 1024),
    modelVersion: v.modelVersion,
    htmlMaxGroups: intOption("html-max-groups", v.htmlMaxGroups, 0),
    thumbPx: intOption("thumb-px", v.thumbPx, 16, 1024),
  });
}
