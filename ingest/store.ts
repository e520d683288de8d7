/** The results database (SQLite through Node's node:sqlite): one row per file — path, size, mtime, sha256, model and version, the vector or the error, timings. Every row is written by one statement, i.e. its own transaction, in WAL mode: a kill at any moment leaves each row either fully there or not at all, and nothing already saved is lost. */
import { DatabaseSync, type StatementSync } from "node:sqlite";

/** "PHIN" in PRAGMA application_id: tells our databases from any other SQLite file. */
const APPLICATION_ID = 0x5048494e;
/** PRAGMA user_version: the schema below. A newer one is refused rather than misread. */
const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS photos (
  path          TEXT PRIMARY KEY,
  size          INTEGER NOT NULL,
  mtime_ms      REAL NOT NULL,
  sha256        TEXT,
  format        TEXT,
  model         TEXT,
  model_version TEXT,
  dimension     INTEGER,
  vector        BLOB,
  decode_us     INTEGER,
  preprocess_us INTEGER,
  queue_us      INTEGER,
  inference_us  INTEGER,
  server_us     INTEGER,
  client_ms     REAL,
  attempts      INTEGER NOT NULL DEFAULT 0,
  source        TEXT,
  error_code    TEXT,
  error_message TEXT,
  retryable     INTEGER NOT NULL DEFAULT 0,
  updated_at    TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS photos_content ON photos (sha256, model, model_version);
`;

/** Server-side timings of one photo, in microseconds (absent through the edge). */
export interface Timings {
  readonly decodeUs: number;
  readonly preprocessUs: number;
  readonly queueUs: number;
  readonly inferenceUs: number;
  readonly totalUs: number;
}

export interface Model {
  readonly model: string;
  readonly version: string;
}

export interface PhotoRow {
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
  readonly sha256: string | null;
  readonly format: string | null;
  readonly model: Model | null;
  /** L2-normalised little-endian float32 bytes. */
  readonly vector: Uint8Array | null;
  readonly dimension: number | null;
  readonly timings: Timings | null;
  /** Wall time from the first attempt to the answer, as the CLI saw it. */
  readonly clientMs: number | null;
  readonly attempts: number;
  /** "gpu-node", "edge", or "copy" (same content as a row already embedded). */
  readonly source: string | null;
  readonly error: {
    readonly code: string;
    readonly message: string;
    readonly retryable: boolean;
  } | null;
}

/** What resuming needs to know about a path's last row. */
export interface Known {
  readonly size: number;
  readonly mtimeMs: number;
  readonly sha256: string | null;
  readonly model: string | null;
  readonly modelVersion: string | null;
  readonly hasVector: boolean;
  readonly errorCode: string | null;
  readonly retryable: boolean;
}

/** A database that cannot be used, with a message that says why and what to do. */
export class StoreError extends Error {}
/** The disk (or --db-max-pages) is full: nothing more can be saved, what is saved is intact. */
export class StoreFullError extends StoreError {}

const SQLITE_FULL = 13;
const SQLITE_NOTADB = 26;

function sqliteCode(error: unknown): number | undefined {
  const code = (error as { errcode?: unknown }).errcode;
  return typeof code === "number" ? code & 0xff : undefined;
}

export interface StoreOptions {
  /** PRAGMA max_page_count (0 = SQLite's own limit): a reachable stand-in for a full disk. */
  readonly maxPages?: number;
  readonly readOnly?: boolean;
}

export class Store {
  readonly #db: DatabaseSync;
  readonly #lookup: StatementSync;
  readonly #bySha: StatementSync;
  readonly #put: StatementSync;
  readonly path: string;

  private constructor(db: DatabaseSync, path: string) {
    this.#db = db;
    this.path = path;
    this.#lookup = db.prepare(
      "SELECT size, mtime_ms, sha256, model, model_version, vector IS NOT NULL AS has_vector, error_code, retryable FROM photos WHERE path = ?",
    );
    this.#bySha = db.prepare(
      "SELECT vector, dimension FROM photos WHERE sha256 = ? AND model = ? AND model_version = ? AND vector IS NOT NULL LIMIT 1",
    );
    this.#put = db.prepare(`INSERT OR REPLACE INTO photos (path, size, mtime_ms, sha256, format,
      model, model_version, dimension, vector, decode_us, preprocess_us, queue_us, inference_us,
      server_us, client_ms, attempts, source, error_code, error_message, retryable, updated_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  }

  /** Opens (creating when allowed) and checks that the file is ours and of a schema we read. */
  static open(path: string, opts: StoreOptions = {}): Store {
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path, { readOnly: opts.readOnly === true });
    } catch (error) {
      throw new StoreError(`cannot open database ${path}: ${(error as Error).message}`);
    }
    try {
      // First, before any statement takes a lock: another process reading the file (a
      // duplicates run, a user's sqlite3) must make this wait, not fail with "database is
      // locked". Switching a new file to WAL below needs every reader's lock gone.
      db.exec("PRAGMA busy_timeout = 5000");
      const appId = Number(
        (db.prepare("PRAGMA application_id").get() as { application_id: number }).application_id,
      );
      const version = Number(
        (db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version,
      );
      const tables = Number(
        (db.prepare("SELECT count(*) AS n FROM sqlite_schema").get() as { n: number }).n,
      );
      if (appId !== APPLICATION_ID && tables > 0) {
        throw new StoreError(
          `${path} is a SQLite database of another program (it has tables but is not a photo-ingest database): give a new --db file`,
        );
      }
      if (version > SCHEMA_VERSION) {
        throw new StoreError(
          `${path} was written by a newer photo-ingest (schema ${version}; this one reads ${SCHEMA_VERSION}): use that version, or a new --db file`,
        );
      }
      if (opts.readOnly) {
        if (appId !== APPLICATION_ID)
          throw new StoreError(`${path} holds no photo-ingest results yet`);
      } else {
        // WAL: readers never block the writer, and a commit is one append to the log. NORMAL
        // sync: a killed process loses no commit (the OS has the bytes); only a power cut may
        // drop the last few, and never corrupts.
        db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
        if (appId !== APPLICATION_ID || version < SCHEMA_VERSION) {
          db.exec(
            `BEGIN; ${SCHEMA} PRAGMA application_id = ${APPLICATION_ID}; PRAGMA user_version = ${SCHEMA_VERSION}; COMMIT;`,
          );
        }
        if (opts.maxPages) db.exec(`PRAGMA max_page_count = ${Math.floor(opts.maxPages)}`);
      }
      return new Store(db, path);
    } catch (error) {
      db.close();
      throw translate(error, path);
    }
  }

  lookup(path: string): Known | undefined {
    const r = this.#lookup.get(path) as Record<string, unknown> | undefined;
    if (!r) return undefined;
    return {
      size: Number(r.size),
      mtimeMs: Number(r.mtime_ms),
      sha256: (r.sha256 as string | null) ?? null,
      model: (r.model as string | null) ?? null,
      modelVersion: (r.model_version as string | null) ?? null,
      hasVector: Number(r.has_vector) === 1,
      errorCode: (r.error_code as string | null) ?? null,
      retryable: Number(r.retryable) === 1,
    };
  }

  /** A vector already computed for the same content by the same model (a copy of a file). */
  vectorFor(sha256: string, model: Model): { vector: Uint8Array; dimension: number } | undefined {
    const r = this.#bySha.get(sha256, model.model, model.version) as
      | { vector: Uint8Array; dimension: number }
      | undefined;
    return r ? { vector: r.vector, dimension: Number(r.dimension) } : undefined;
  }

  put(row: PhotoRow): void {
    const t = row.timings;
    try {
      this.#put.run(
        row.path,
        row.size,
        row.mtimeMs,
        row.sha256,
        row.format,
        row.model?.model ?? null,
        row.model?.version ?? null,
        row.dimension,
        row.vector,
        t?.decodeUs ?? null,
        t?.preprocessUs ?? null,
        t?.queueUs ?? null,
        t?.inferenceUs ?? null,
        t?.totalUs ?? null,
        row.clientMs,
        row.attempts,
        row.source,
        row.error?.code ?? null,
        row.error?.message ?? null,
        row.error?.retryable ? 1 : 0,
        new Date().toISOString(),
      );
    } catch (error) {
      throw translate(error, this.path);
    }
  }

  /** Rows per (model, version) that hold a vector, most first. */
  models(): { model: string; version: string; rows: number }[] {
    return (
      this.#db
        .prepare(
          "SELECT model, model_version, count(*) AS n FROM photos WHERE vector IS NOT NULL GROUP BY model, model_version ORDER BY n DESC",
        )
        .all() as { model: string; model_version: string; n: number }[]
    ).map((r) => ({ model: r.model, version: r.model_version, rows: Number(r.n) }));
  }

  /** Every row with a vector of `model`, in path order: path, sha256 and the vector bytes. */
  *vectors(model: Model): Generator<{ path: string; sha256: string; vector: Uint8Array }> {
    const it = this.#db
      .prepare(
        "SELECT path, sha256, vector FROM photos WHERE vector IS NOT NULL AND model = ? AND model_version = ? ORDER BY path",
      )
      .iterate(model.model, model.version);
    for (const r of it) yield r as { path: string; sha256: string; vector: Uint8Array };
  }

  /** Groups of image paths with the same content (sha256), embedded or not, each sorted. */
  sameContent(): { sha256: string; paths: string[] }[] {
    const rows = this.#db
      .prepare(
        "SELECT sha256, path FROM photos WHERE format IS NOT NULL AND sha256 IN (SELECT sha256 FROM photos WHERE sha256 IS NOT NULL AND format IS NOT NULL GROUP BY sha256 HAVING count(*) > 1) ORDER BY sha256, path",
      )
      .all() as { sha256: string; path: string }[];
    const groups = new Map<string, string[]>();
    for (const r of rows) groups.set(r.sha256, [...(groups.get(r.sha256) ?? []), r.path]);
    return [...groups].map(([sha256, paths]) => ({ sha256, paths }));
  }

  /** Many rows in one transaction: for tools that generate databases (the benchmark), not the CLI. */
  putMany(rows: Iterable<PhotoRow>): void {
    this.#db.exec("BEGIN");
    try {
      for (const row of rows) this.put(row);
      this.#db.exec("COMMIT");
    } catch (error) {
      this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  integrity(): string {
    return (this.#db.prepare("PRAGMA integrity_check").get() as { integrity_check: string })
      .integrity_check;
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}

function translate(error: unknown, path: string): Error {
  if (error instanceof StoreError) return error;
  const code = sqliteCode(error);
  if (code === SQLITE_FULL) {
    return new StoreFullError(
      `disk full: database ${path} cannot grow (SQLITE_FULL). Every result saved so far is intact; free some space and run again to resume`,
    );
  }
  if (code === SQLITE_NOTADB) {
    return new StoreError(
      `${path} is not a SQLite database (SQLITE_NOTADB): give another --db file`,
    );
  }
  return new StoreError(`database ${path}: ${(error as Error).message}`);
}
