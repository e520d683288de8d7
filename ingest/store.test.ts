// The results database: rows round-trip, a full disk is a StoreFullError that leaves every saved
// row intact, and files that are not ours (another program's SQLite, not SQLite at all, a newer
// schema) are refused with a message that says so; a reader of the file does not make opening it
// fail.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterAll, describe, expect, it } from "vitest";
import { type PhotoRow, Store, StoreError, StoreFullError } from "./store.ts";

const dir = mkdtempSync(join(tmpdir(), "ingest-store-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const model = { model: "m", version: "1" };
function row(i: number, vector = new Uint8Array(2048).fill(i)): PhotoRow {
  return {
    path: `/p/${i}.jpg`,
    size: 100 + i,
    mtimeMs: 1000.5,
    sha256: `sha${i}`,
    format: "jpeg",
    model,
    vector,
    dimension: vector.byteLength / 4,
    timings: { decodeUs: 1, preprocessUs: 2, queueUs: 3, inferenceUs: 4, totalUs: 10 },
    clientMs: 1.5,
    attempts: 1,
    source: "gpu-node",
    error: null,
  };
}

describe("store", () => {
  it("keeps one row per path and finds vectors by content and model", () => {
    const store = Store.open(join(dir, "a.db"));
    store.put(row(1));
    store.put({ ...row(1), size: 7 }); // the same path again replaces its row
    store.put(row(2));
    expect(store.lookup("/p/1.jpg")).toMatchObject({
      size: 7,
      mtimeMs: 1000.5,
      sha256: "sha1",
      hasVector: true,
      model: "m",
      modelVersion: "1",
    });
    expect(store.vectorFor("sha2", model)?.vector[0]).toBe(2);
    expect(store.vectorFor("sha2", { model: "m", version: "2" })).toBeUndefined();
    expect(store.models()).toEqual([{ model: "m", version: "1", rows: 2 }]);
    store.close();
    const again = Store.open(join(dir, "a.db"), { readOnly: true });
    expect([...again.vectors(model)].map((r) => r.path)).toEqual(["/p/1.jpg", "/p/2.jpg"]);
    expect(again.integrity()).toBe("ok");
    again.close();
  });

  it("turns a full disk into StoreFullError and keeps what was saved", () => {
    const path = join(dir, "full.db");
    const store = Store.open(path, { maxPages: 12 });
    let saved = 0;
    const error = (() => {
      try {
        for (let i = 0; i < 100; i++) {
          store.put(row(i));
          saved++;
        }
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(StoreFullError);
    expect((error as Error).message).toMatch(/disk full.*intact.*run again/);
    expect(saved).toBeGreaterThan(0);
    store.close();
    const again = Store.open(path);
    expect([...again.vectors(model)]).toHaveLength(saved);
    expect(again.integrity()).toBe("ok");
    again.close();
  });

  it("refuses files that are not its databases, saying what they are", () => {
    writeFileSync(
      join(dir, "text.db"),
      "just some text, long enough to be a page header..........................................................................",
    );
    expect(() => Store.open(join(dir, "text.db"))).toThrow(/not a SQLite database/);
    const other = new DatabaseSync(join(dir, "other.db"));
    other.exec("CREATE TABLE songs (title TEXT)");
    other.close();
    expect(() => Store.open(join(dir, "other.db"))).toThrow(/another program/);
    const newer = Store.open(join(dir, "newer.db"));
    newer.close();
    const raw = new DatabaseSync(join(dir, "newer.db"));
    raw.exec("PRAGMA user_version = 99");
    raw.close();
    expect(() => Store.open(join(dir, "newer.db"))).toThrow(/newer photo-ingest \(schema 99/);
    expect(() => Store.open(join(dir, "none.db"), { readOnly: true })).toThrow(StoreError);
  });

  it("opens a database that another process is reading: it waits for the lock, not fails", async () => {
    // The file as a reader finds it when the ingest has just created it (empty), read by another
    // process that holds its read lock for 300 ms: switching the file to WAL needs that lock
    // gone. (The ingest test's poller, a duplicates run, or a user's sqlite3 can be that reader.)
    const path = join(dir, "read-meanwhile.db");
    writeFileSync(path, "");
    const reader = spawn(
      process.execPath,
      [
        "-e",
        `const { DatabaseSync } = require("node:sqlite");
        const db = new DatabaseSync(process.argv[1], { readOnly: true });
        db.exec("BEGIN");
        db.prepare("SELECT count(*) FROM sqlite_schema").get();
        process.stdout.write("reading\\n");
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
        db.exec("COMMIT");
        db.close();`,
        path,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const exited = once(reader, "exit");
    await once(reader.stdout!, "data");
    const store = Store.open(path);
    store.put(row(1));
    store.close();
    expect((await exited)[0]).toBe(0);
    const back = Store.open(path, { readOnly: true });
    expect(back.lookup("/p/1.jpg")?.sha256).toBe("sha1");
    back.close();
  });
});
