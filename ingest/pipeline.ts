/** The ingest run: a walk's files in, one database row per file out. Unchanged files (same size and mtime, or same sha256, and the same model version) are not sent again; the rest go to the source with bounded concurrency and retries; every answer is saved the moment it arrives. Ctrl-C stops taking new files and lets those in flight finish (up to a grace period); a fatal failure (auth, full disk) stops the run with its reason. */
import { resolve } from "node:path";
import type { IngestConfig } from "./config.ts";
import type { Progress } from "./progress.ts";
import { readPhoto } from "./read-photo.ts";
import { type Gate, GaveUp, withRetries } from "./retry.ts";
import type { Source } from "./sources/source.ts";
import { type Known, type Model, type PhotoRow, type Store, StoreError } from "./store.ts";
import { type FileEntry, walk } from "./walk.ts";

export interface RunResult {
  readonly counts: Progress["counts"];
  /** Paths the walk could not use (loops, broken links, special files, unreadable folders). */
  readonly skippedPaths: number;
  readonly model: Model | undefined;
  readonly elapsedMs: number;
  /** Stopped by a signal before every file was done. */
  readonly interrupted: boolean;
  /** Why the run stopped early, when something made going on pointless. */
  readonly fatal: string | undefined;
}

type Settings = Pick<
  IngestConfig,
  | "db"
  | "roots"
  | "concurrency"
  | "retries"
  | "retryBaseMs"
  | "retryMaxMs"
  | "maxFileBytes"
  | "followSymlinks"
  | "rehash"
  | "retryErrors"
  | "drainMs"
>;

export interface RunDeps {
  readonly source: Source;
  readonly store: Store;
  readonly progress: Progress;
  readonly gate: Gate;
  /** Aborted on Ctrl-C / SIGTERM: no new files are started. */
  readonly stop: AbortSignal;
}

const sameModel = (k: Known, m: Model) => k.model === m.model && k.modelVersion === m.version;

/** Why a known row may be left as it is without reading the file (size and mtime unchanged). */
function unchangedByStat(k: Known, f: FileEntry, model: Model | undefined, s: Settings): boolean {
  if (s.rehash || k.size !== f.size || k.mtimeMs !== f.mtimeMs) return false;
  if (k.hasVector) return model !== undefined && sameModel(k, model);
  // A local verdict (not an image, too large) holds whatever the model; a retryable one does not.
  if (k.errorCode !== null && !k.retryable && !s.retryErrors) {
    return k.model === null || (model !== undefined && sameModel(k, model));
  }
  return false;
}

export async function runIngest(s: Settings, deps: RunDeps): Promise<RunResult> {
  const { source, store, progress, gate } = deps;
  const files: FileEntry[] = [];
  let skippedPaths = 0;
  // The database may live inside a folder being ingested: its files are not photos of the library.
  const own = new Set(["", "-wal", "-shm", "-journal"].map((suffix) => resolve(s.db) + suffix));
  for await (const w of walk(s.roots, { followSymlinks: s.followSymlinks, skip: own })) {
    if ("file" in w) files.push(w.file);
    else {
      skippedPaths++;
      progress.warn(`warning: ${w.problem.path}: ${w.problem.message}`);
    }
  }
  progress.counts.total = files.length;

  // In-flight photos are cancelled when the drain time after a stop is over, or on a fatal error.
  const cancel = new AbortController();
  let fatal: string | undefined;
  const stopRun = (why: string) => {
    fatal ??= why;
    cancel.abort();
  };
  const onStop = () => {
    const t = setTimeout(() => cancel.abort(), s.drainMs);
    t.unref();
  };
  if (deps.stop.aborted) onStop();
  else deps.stop.addEventListener("abort", onStop, { once: true });

  const policy = { retries: s.retries, baseMs: s.retryBaseMs, maxMs: s.retryMaxMs };
  let model: Model | undefined;
  try {
    model = await describe(source, files, s.maxFileBytes, (ask) =>
      withRetries(ask, policy, gate, cancel.signal).then((r) => r.value),
    );
  } catch (error) {
    const why = error instanceof GaveUp ? error.error.message : (error as Error).message;
    stopRun(`asking the ${source.kind} for its model: ${why}`);
  }
  if (model) warnOtherModels(store, model, progress);

  const save = (row: PhotoRow) => {
    try {
      store.put(row);
      return true;
    } catch (error) {
      stopRun(error instanceof StoreError ? error.message : String(error));
      return false;
    }
  };

  const inFlight = new Map<string, Promise<void>>();

  async function one(f: FileEntry): Promise<void> {
    const known = store.lookup(f.path);
    if (known && unchangedByStat(known, f, model, s)) return progress.unchanged();
    const base = { path: f.path, size: f.size, mtimeMs: f.mtimeMs };
    const read = await readPhoto(f.path, f.size, s.maxFileBytes);
    if (!read.ok) {
      progress.warn(`warning: ${f.path}: ${read.message}`);
      if (
        save({
          ...base,
          ...emptyResult,
          sha256: read.sha256,
          error: { code: read.code, message: read.message, retryable: read.retryable },
        })
      ) {
        progress.failed();
      }
      return;
    }
    // A row for this content: the file's own columns, a model, and what is added.
    const rowOf = (more: Partial<PhotoRow>): PhotoRow => ({
      ...base,
      ...emptyResult,
      sha256: read.sha256,
      format: read.format,
      model: model ?? null,
      ...more,
    });
    // A copy of a file being sent right now waits for that answer instead of sending it twice.
    await inFlight.get(read.sha256);
    // The same bytes already embedded by this model (this path before a touch, or a copy).
    const cached = s.rehash || !model ? undefined : store.vectorFor(read.sha256, model);
    if (cached) {
      const row = rowOf({ vector: cached.vector, dimension: cached.dimension, source: "copy" });
      if (save(row)) progress.unchanged();
      return;
    }
    let sent!: () => void;
    inFlight.set(read.sha256, new Promise<void>((done) => (sent = done)));
    const t0 = performance.now();
    try {
      const { value, attempts } = await withRetries(
        (signal) => source.embed(read.data, signal),
        policy,
        gate,
        cancel.signal,
      );
      const row = rowOf({
        model: value.model,
        vector: value.vector,
        dimension: value.dimension,
        timings: value.timings,
        clientMs: performance.now() - t0,
        attempts,
        source: source.kind,
      });
      if (save(row)) progress.sent();
    } catch (error) {
      if (cancel.signal.aborted) return; // not answered: the next run sends it again
      if (!(error instanceof GaveUp)) throw error;
      const e = error.error;
      if (e.failure === "fatal") return stopRun(e.message);
      const retryable = e.failure === "transient";
      const message = retryable
        ? `${e.message} (gave up after ${error.attempts} attempts)`
        : e.message;
      progress.warn(`error: ${f.path}: ${message}`);
      const row = rowOf({
        clientMs: performance.now() - t0,
        attempts: error.attempts,
        source: source.kind,
        error: { code: e.code, message, retryable },
      });
      if (save(row)) progress.failed();
    } finally {
      inFlight.delete(read.sha256);
      sent();
    }
  }

  let next = 0;
  const worker = async () => {
    while (!deps.stop.aborted && !cancel.signal.aborted && next < files.length) {
      await one(files[next++]!);
    }
  };
  progress.start();
  await Promise.all(
    Array.from({ length: Math.min(s.concurrency, Math.max(1, files.length)) }, worker),
  );
  progress.stop();
  deps.stop.removeEventListener("abort", onStop);
  return {
    counts: progress.counts,
    skippedPaths,
    model,
    elapsedMs: progress.elapsedMs(),
    interrupted: deps.stop.aborted && progress.counts.done < files.length,
    fatal,
  };
}

const emptyResult = {
  sha256: null,
  format: null,
  model: null,
  vector: null,
  dimension: null,
  timings: null,
  clientMs: null,
  attempts: 0,
  source: null,
  error: null,
} as const;

/** The run's model: the gpu-node's own answer, or the edge's answer for the first readable photo. */
async function describe(
  source: Source,
  files: readonly FileEntry[],
  maxBytes: number,
  retrying: (ask: () => Promise<Model>) => Promise<Model>,
): Promise<Model | undefined> {
  if (!source.needsProbe) return retrying(() => source.describe(undefined));
  for (const f of files) {
    const read = await readPhoto(f.path, f.size, maxBytes);
    if (!read.ok) continue;
    try {
      return await retrying(() => source.describe(read.data));
    } catch (error) {
      // This photo may be one the edge refuses: try the next; anything else stops the run.
      if (!(error instanceof GaveUp) || error.error.failure !== "permanent") throw error;
    }
  }
  return undefined;
}

function warnOtherModels(store: Store, model: Model, progress: Progress): void {
  for (const m of store.models()) {
    if (m.model === model.model && m.version === model.version) continue;
    progress.warn(
      `note: ${store.path} holds ${m.rows} embeddings from model ${m.model} version ${m.version}; this run's model is ${model.model} version ${model.version}: those files are embedded again and their rows replaced (duplicates never compares vectors of different models)`,
    );
  }
}
