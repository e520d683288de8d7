// The ingest CLI end to end, as a child process against real gpu-nodes in this process (so that
// the images each one decodes can be counted) and against the edge on Node: a library with every
// kind of bad input, resume (nothing resent; a touched file not resent; a changed one resent), a
// SIGKILL mid-run (integrity holds, the re-run sends exactly what is missing), Ctrl-C (everything
// answered is saved), a full disk, another model version, bad credentials, and near-duplicate
// groups (EXIF orientation twins are one group).
import { createHash } from "node:crypto";
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { serve } from "@hono/node-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNodeEdge } from "../edge/node/server.ts";
import { createNoopBackend } from "../gpu-node/backends/noop.ts";
import { testConfig } from "../gpu-node/config.ts";
import { startGpuNode } from "../gpu-node/node.ts";
import { decodeForClip } from "../gpu-node/preprocess/decode.ts";
import { benchPhotos } from "./support/images.ts";
import {
  DUPLICATES,
  dbRows,
  INGEST,
  integrity,
  type Library,
  runCli,
  startCli,
  writeLibrary,
} from "./support/ingest.ts";
import { until } from "./support/wait.ts";

const tmp = mkdtempSync(join(tmpdir(), "ingest-e2e-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A gpu-node in this process whose decoder counts the images it receives (and can be slowed). */
async function countingNode(opts: { model?: "noop" | "vit-tiny"; token?: string } = {}) {
  const counter = { decoded: 0, delayMs: 0 };
  const node = await startGpuNode(
    testConfig({
      port: 0,
      token: opts.token ?? "",
      ...(opts.model === "vit-tiny" ? { model: "vit-tiny", threads: 1 } : {}),
    }),
    {
      ...(opts.model === "vit-tiny" ? {} : { backend: createNoopBackend(32) }),
      decode: async (data, limits) => {
        counter.decoded++;
        // A slow server, so that a run is still going when the test stops it.
        if (counter.delayMs > 0) await sleep(counter.delayMs);
        return decodeForClip(data, limits);
      },
    },
  );
  return { node, counter };
}

let tiny: Awaited<ReturnType<typeof countingNode>>;
let noop: Awaited<ReturnType<typeof countingNode>>;
let lib: Library;
let bulk: string;
const BULK = 150;

beforeAll(async () => {
  [tiny, noop] = await Promise.all([
    countingNode({ model: "vit-tiny" }),
    countingNode({ token: "secret" }),
  ]);
  lib = await writeLibrary(join(tmp, "library"));
  bulk = join(tmp, "bulk");
  const photos = await benchPhotos(BULK);
  rmSync(bulk, { recursive: true, force: true });
  mkdirSync(bulk);
  for (const [i, p] of photos.entries()) {
    writeFileSync(join(bulk, `b${String(i).padStart(3, "0")}.jpg`), p);
  }
});
afterAll(async () => {
  await tiny?.node.close();
  await noop?.node.close();
});

const viaTiny = (db: string, ...more: string[]) => [
  "--gpu-node",
  tiny.node.url,
  "--db",
  db,
  ...more,
];
const viaNoop = (db: string, ...more: string[]) => [
  "--gpu-node",
  noop.node.url,
  "--token",
  "secret",
  "--db",
  db,
  ...more,
];

describe("ingest through a gpu-node (EmbedStream)", () => {
  const db = join(tmp, "library.db");

  it("embeds every photo, recognised by content, and says why each other path was not", async () => {
    const before = tiny.counter.decoded;
    const r = await runCli(INGEST, viaTiny(db, lib.dir));
    expect(r.code, r.stderr).toBe(1); // some files failed: the non-images
    const rows = dbRows(db);
    const rel = (p: string) => p.slice(lib.dir.length + 1);
    expect(rows.map((x) => rel(x.path)).sort()).toEqual([...lib.photos, ...lib.notPhotos].sort());
    const embedded = rows.filter((x) => x.has_vector === 1);
    expect(embedded.map((x) => rel(x.path)).sort()).toEqual(lib.photos);
    expect(embedded.every((x) => x.model === "vit-tiny" && x.source !== null)).toBe(true);
    // The byte copy of s2 is not sent: its content was embedded already.
    expect(tiny.counter.decoded - before).toBe(lib.photos.length - 1);
    expect(rows.find((x) => rel(x.path) === "sub/fake.jpg")).toMatchObject({
      error_code: "not_image",
      error_message: "not an image: looks like text",
    });
    expect(r.stderr).toMatch(/sub\/loop: symlink loop/);
    expect(r.stderr).toMatch(/dangling\.jpg: does not exist/);
    expect(r.stderr).toMatch(/notes\.txt: not an image: looks like text/);
    expect(r.stdout).toMatch(
      /done: 15\/15 files .* 12 embedded .* 1 unchanged, 2 errors, 2 paths skipped; model vit-tiny/,
    );
    expect(r.stdout).toMatch(/^progress /m); // stdout is not a terminal: log lines, not a bar
  });

  it("resumes: nothing unchanged is sent again, a touched file neither; a changed one is", async () => {
    const before = tiny.counter.decoded;
    const again = await runCli(INGEST, viaTiny(db, lib.dir));
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/0 embedded .* 15 unchanged, 0 errors/);
    const touched = join(lib.dir, "s3.jpg");
    utimesSync(touched, new Date(), new Date(Date.now() + 5000));
    writeFileSync(join(lib.dir, "s4.jpg"), readFileSync(join(lib.dir, "s5.jpg")));
    const third = await runCli(INGEST, viaTiny(db, lib.dir));
    expect(third.code).toBe(0);
    // s3: same bytes (sha256) → not sent; s4: new content, the same as s5's → not sent either.
    expect(tiny.counter.decoded - before).toBe(0);
    writeFileSync(
      join(lib.dir, "s4.jpg"),
      readFileSync(join(lib.dir, "s101-png-named.jpg")).subarray(0, 5000),
    );
    const fourth = await runCli(INGEST, viaTiny(db, lib.dir));
    expect(tiny.counter.decoded - before).toBe(1); // a truncated PNG: sent, refused by the node
    expect(fourth.code).toBe(1);
    expect(dbRows(db).find((x) => x.path.endsWith("/s4.jpg"))).toMatchObject({
      has_vector: 0,
      error_code: "invalid_argument",
    });
    expect(integrity(db)).toBe("ok");
  });

  it("groups near-duplicates: EXIF orientation twins are one group, a byte copy another", async () => {
    const json = join(tmp, "groups.json");
    const r = await runCli(DUPLICATES, ["--db", db, "--json", json]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(readFileSync(json, "utf8")) as {
      groups: { paths: string[]; exact: boolean; similarity: number[] }[];
      index: { kind: string };
    };
    const names = report.groups.map((g) => g.paths.map((p) => p.slice(lib.dir.length + 1)));
    expect(names).toContainEqual([
      "s1-orientation3.jpg",
      "s1-orientation6.jpg",
      "s1-orientation8.jpg",
      "s1.jpg",
    ]);
    expect(names).toContainEqual(["s2.jpg", "sub/s2-copy.jpg"]);
    // s4 was overwritten with s5's bytes earlier, then broken: only distinct scenes remain apart.
    for (const g of names)
      expect(new Set(g.map((n) => /^(?:sub\/)?s(\d+)/.exec(n)![1])).size).toBe(1);
    expect(report.groups.find((g) => g.paths.some((p) => p.endsWith("s2-copy.jpg")))!.exact).toBe(
      true,
    );
    expect(report.index.kind).toBe("exact");
    expect(r.stdout).toMatch(/groups .* exact search/);
  });
});

describe("stopping mid-run", () => {
  it("a SIGKILL corrupts nothing, and the re-run sends exactly what is missing", async () => {
    const db = join(tmp, "killed.db");
    noop.counter.delayMs = 20;
    const run = startCli(
      INGEST,
      viaNoop(db, "--concurrency", "2", "--progress-interval-ms", "50", bulk),
    );
    await until(() => dbRows(db).length >= 30, { timeoutMs: 30_000 });
    run.child.kill("SIGKILL");
    await run.exited;
    expect(run.stdout()).toMatch(/^progress \d+\/150 \d+% [\d.]+ img\/s ETA [\d:?]+ errors 0/m);
    noop.counter.delayMs = 0;
    expect(integrity(db)).toBe("ok");
    const saved = dbRows(db);
    expect(saved.length).toBeLessThan(BULK);
    expect(saved.every((x) => x.has_vector === 1)).toBe(true);
    const before = noop.counter.decoded;
    const r = await runCli(INGEST, viaNoop(db, bulk));
    expect(r.code, r.stderr).toBe(0);
    expect(noop.counter.decoded - before).toBe(BULK - saved.length);
    expect(dbRows(db).filter((x) => x.has_vector === 1)).toHaveLength(BULK);
  });

  it("Ctrl-C saves every photo already answered and in flight, then exits 130", async () => {
    const db = join(tmp, "interrupted.db");
    noop.counter.delayMs = 20;
    const before = noop.counter.decoded;
    const run = startCli(INGEST, viaNoop(db, "--concurrency", "4", bulk));
    await until(() => dbRows(db).length >= 20, { timeoutMs: 30_000 });
    run.child.kill("SIGINT");
    const { code } = await run.exited;
    noop.counter.delayMs = 0;
    expect(code).toBe(130);
    expect(run.stderr()).toMatch(/SIGINT: finishing the photos in flight/);
    expect(run.stdout()).toMatch(/^interrupted: /m);
    // Every image the node received was answered and saved before the exit.
    expect(dbRows(db).length).toBe(noop.counter.decoded - before);
    expect(integrity(db)).toBe("ok");
  });
});

/**
 * Permission bits do not stop root: as root the CLI runs as nobody (setpriv), so that a file and a
 * folder with mode 000 are really unreadable to it.
 */
const asRoot = process.getuid?.() === 0;
const SETPRIV = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p));
const unprivileged =
  asRoot && SETPRIV ? [SETPRIV, "--reuid=65534", "--regid=65534", "--clear-groups"] : [];

describe("bad conditions", () => {
  it.skipIf(asRoot && !SETPRIV)(
    "an unreadable file and folder: each a clear warning, the rest embedded",
    async () => {
      // Its own folder under the system's temporary one: nobody cannot enter this test's tmp.
      const dir = mkdtempSync(join(tmpdir(), "ingest-perms-"));
      mkdirSync(join(dir, "locked"));
      copyFileSync(join(lib.dir, "s5.jpg"), join(dir, "ok.jpg"));
      copyFileSync(join(lib.dir, "s6.jpg"), join(dir, "secret.jpg"));
      copyFileSync(join(lib.dir, "s3.jpg"), join(dir, "locked/hidden.jpg"));
      chmodSync(dir, 0o777);
      chmodSync(join(dir, "secret.jpg"), 0o000);
      chmodSync(join(dir, "locked"), 0o000);
      const db = join(dir, "perms.db");
      const r = await runCli(
        unprivileged[0] ?? process.execPath,
        [
          ...unprivileged.slice(1),
          ...(unprivileged.length ? [process.execPath] : []),
          INGEST,
          ...viaNoop(db, dir),
        ].filter(Boolean),
      );
      chmodSync(join(dir, "locked"), 0o755);
      const rows = dbRows(db);
      rmSync(dir, { recursive: true, force: true });
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(/secret\.jpg: unreadable: permission denied \(EACCES\)/);
      expect(r.stderr).toMatch(/locked: folder not readable: permission denied \(EACCES\)/);
      expect(rows.map((x) => [x.path.slice(dir.length + 1), x.has_vector, x.error_code])).toEqual([
        ["ok.jpg", 1, null],
        ["secret.jpg", 0, "unreadable"],
      ]);
    },
  );

  it("a full disk stops the run with a clear message; what was saved is intact and resumes", async () => {
    const db = join(tmp, "full.db");
    const r = await runCli(INGEST, viaNoop(db, "--db-max-pages", "24", bulk));
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(
      /stopped: disk full: database .* cannot grow \(SQLITE_FULL\)\. Every result saved so far is intact/,
    );
    expect(integrity(db)).toBe("ok");
    const saved = dbRows(db).length;
    expect(saved).toBeGreaterThan(0);
    const before = noop.counter.decoded;
    const again = await runCli(INGEST, viaNoop(db, bulk));
    expect(again.code).toBe(0);
    expect(noop.counter.decoded - before).toBe(BULK - saved);
  });

  it("a database of another model version: says so, embeds again, and duplicates never mixes them", async () => {
    const db = join(tmp, "two-models.db");
    const some = join(lib.dir, "s5.jpg");
    await runCli(INGEST, viaNoop(db, some, join(lib.dir, "s6.jpg")));
    const r = await runCli(INGEST, viaTiny(db, some));
    expect(r.stderr).toMatch(
      /holds 2 embeddings from model noop version 0; this run's model is vit-tiny version \w+: those files are embedded again/,
    );
    expect(dbRows(db).find((x) => x.path === some)).toMatchObject({
      model: "vit-tiny",
      has_vector: 1,
    });
    const d = await runCli(DUPLICATES, ["--db", db]);
    expect(d.code).toBe(0);
    expect(d.stderr).toMatch(
      /1 vectors of (noop version 0|vit-tiny version \w+) are left out: vectors of different models are never compared/,
    );
  });

  it("a wrong token or an unreachable node stops at once, saying what to check", async () => {
    const db = join(tmp, "refused.db");
    const wrong = await runCli(INGEST, [
      "--gpu-node",
      noop.node.url,
      "--token",
      "nope",
      "--db",
      db,
      bulk,
    ]);
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(
      /stopped: asking the gpu-node for its model: gpu-node: unauthenticated: .*check --token/,
    );
    const closed = await runCli(INGEST, [
      "--gpu-node",
      "http://127.0.0.1:1",
      "--db",
      db,
      "--retries",
      "0",
      bulk,
    ]);
    expect(closed.code).toBe(3);
    expect(closed.stderr).toMatch(
      /stopped: asking the gpu-node for its model: gpu-node: unavailable/,
    );
    const usage = await runCli(INGEST, ["--db", db, bulk]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/give exactly one of --edge URL/);
  });
});

describe("ingest through the edge (HTTP, as mobile clients)", () => {
  let edgeUrl: string;
  let server: ReturnType<typeof serve>;

  beforeAll(async () => {
    const edge = createNodeEdge({
      GPU_NODE_URLS: noop.node.url,
      GPU_NODE_TOKEN: "secret",
      API_KEY_HASHES: createHash("sha256").update("k").digest("hex"),
    });
    await new Promise<void>((ready) => {
      server = serve(
        { fetch: (req) => edge.app.fetch(req, edge.bindings), port: 0, hostname: "127.0.0.1" },
        () => ready(),
      );
    });
    edgeUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((done) => server?.close(() => done())));

  it("embeds the library's photos one request each, with the edge's model", async () => {
    const db = join(tmp, "edge.db");
    const r = await runCli(
      INGEST,
      [
        "--edge",
        edgeUrl,
        "--db",
        db,
        join(lib.dir, "s5.jpg"),
        join(lib.dir, "s103.tiff"),
        join(lib.dir, "notes.txt"),
      ],
      { INGEST_EDGE_KEY: "k" },
    );
    expect(r.code, r.stderr).toBe(1);
    const rows = dbRows(db);
    expect(rows.filter((x) => x.has_vector === 1).map((x) => [x.source, x.model])).toEqual([
      ["edge", "openclip-vit-b32"],
      ["edge", "openclip-vit-b32"],
    ]);
    expect(rows.find((x) => x.path.endsWith("notes.txt"))?.error_code).toBe("not_image");
  });

  it("a wrong key stops the run: 401 names the setting to check", async () => {
    const r = await runCli(INGEST, [
      "--edge",
      edgeUrl,
      "--key",
      "wrong",
      "--db",
      join(tmp, "edge-401.db"),
      join(lib.dir, "s5.jpg"),
    ]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/edge answered 401: .*check --key/);
  });
});

describe("retries", () => {
  it("honours the edge's Retry-After, retries 503, and records a 422 as this photo's error", async () => {
    const arrivals: number[] = [];
    const vector = Buffer.from(new Float32Array([0.6, 0.8, 0, 0]).buffer).toString("base64");
    const standIn = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const n = arrivals.push(Date.now());
        const json = (status: number, body: object, headers: Record<string, string> = {}) => {
          res.writeHead(status, { "content-type": "application/json", ...headers });
          res.end(JSON.stringify(body));
        };
        const error = (status: number, message: string) => ({
          error: { code: String(status), message },
        });
        if (n === 1) return json(429, error(429, "rate limited"), { "retry-after": "1" });
        if (n === 3) return json(503, error(503, "overloaded"), { "retry-after": "0" });
        if (Buffer.concat(chunks).length < 100)
          return json(422, error(422, "image 0: truncated JPEG"));
        json(200, {
          object: "list",
          data: [{ object: "embedding", index: 0, embedding: vector }],
          model: "stand-in",
          model_version: "7",
        });
      });
    });
    await new Promise<void>((ready) => standIn.listen(0, "127.0.0.1", ready));
    try {
      const dir = join(tmp, "retry-edge");
      mkdirSync(dir);
      const [a, b] = await benchPhotos(2);
      writeFileSync(join(dir, "a.jpg"), a!);
      writeFileSync(join(dir, "b.jpg"), b!);
      writeFileSync(
        join(dir, "c.jpg"),
        Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46]),
      );
      const url = `http://127.0.0.1:${(standIn.address() as AddressInfo).port}`;
      const db = join(tmp, "retry-edge.db");
      const r = await runCli(INGEST, [
        "--edge",
        url,
        "--key",
        "k",
        "--db",
        db,
        "--concurrency",
        "1",
        "--retry-base-ms",
        "10",
        dir,
      ]);
      expect(r.code, r.stderr).toBe(1);
      // 1: probe → 429 (Retry-After 1 s); 2: probe again; 3: a → 503; 4: a; 5: b; 6: c → 422.
      expect(arrivals).toHaveLength(6);
      expect(arrivals[1]! - arrivals[0]!).toBeGreaterThanOrEqual(950);
      const rows = dbRows(db);
      expect(
        rows.map((x) => [x.path.slice(dir.length + 1), x.has_vector, x.model, x.model_version]),
      ).toEqual([
        ["a.jpg", 1, "stand-in", "7"],
        ["b.jpg", 1, "stand-in", "7"],
        ["c.jpg", 0, "stand-in", "7"],
      ]);
      expect(rows[2]).toMatchObject({
        error_code: "422",
        error_message: "edge answered 422: image 0: truncated JPEG",
      });
    } finally {
      standIn.close();
    }
  });

  it("a gpu-node that goes away mid-run and comes back: the photos in flight are retried on a new stream", async () => {
    const first = await countingNode();
    const port = Number(new URL(first.node.url).port);
    first.counter.delayMs = 20;
    const db = join(tmp, "restart.db");
    const run = startCli(INGEST, [
      "--gpu-node",
      first.node.url,
      "--db",
      db,
      "--concurrency",
      "4",
      "--retry-base-ms",
      "20",
      "--retries",
      "20",
      bulk,
    ]);
    await until(() => dbRows(db).length >= 20, { timeoutMs: 30_000 });
    await first.node.close();
    const second = await startGpuNode(testConfig({ port }), { backend: createNoopBackend(32) });
    try {
      const { code } = await run.exited;
      expect(code, run.stderr()).toBe(0);
      expect(dbRows(db).filter((x) => x.has_vector === 1)).toHaveLength(BULK);
      expect(integrity(db)).toBe("ok");
    } finally {
      await second.close();
    }
  });
});

const CORPUS = join(import.meta.dirname, "../../shared/corpus/photos");
const corpusMessage = existsSync(CORPUS) ? "" : " (skipped: no ../shared/corpus here)";

describe.skipIf(!existsSync(CORPUS))(
  `real photos stored with EXIF orientations 1-8${corpusMessage}`,
  () => {
    it("come out as one group per scene: the landscape ones, the portrait ones", async () => {
      const files = readdirSync(CORPUS)
        .filter((f) => f.startsWith("orientation_"))
        .map((f) => join(CORPUS, f));
      const db = join(tmp, "corpus.db");
      const r = await runCli(INGEST, viaTiny(db, ...files));
      expect(r.code, r.stderr).toBe(0);
      const json = join(tmp, "corpus.json");
      expect((await runCli(DUPLICATES, ["--db", db, "--json", json])).code).toBe(0);
      const groups = (JSON.parse(readFileSync(json, "utf8")) as { groups: { paths: string[] }[] })
        .groups;
      const names = groups.map((g) => g.paths.map((p) => p.slice(CORPUS.length + 1)).sort());
      expect(names.sort()).toEqual([
        files
          .filter((f) => f.includes("landscape"))
          .map((f) => f.slice(CORPUS.length + 1))
          .sort(),
        files
          .filter((f) => f.includes("portrait"))
          .map((f) => f.slice(CORPUS.length + 1))
          .sort(),
      ]);
    });
  },
);

describe("the installed commands (package.json bin)", () => {
  it("photo-ingest and photo-duplicates run their CLI through the project's Node, whatever Node starts them", async () => {
    const bin = join(tmp, "bin");
    mkdirSync(bin);
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, "../package.json"), "utf8")) as {
      bin: Record<string, string>;
    };
    for (const [name, file] of Object.entries(pkg.bin)) {
      symlinkSync(join(import.meta.dirname, "..", file), join(bin, name));
      const r = await runCli(join(bin, name), ["--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(
        name === "photo-ingest" ? /^usage: npm run ingest/ : /^usage: npm run duplicates/,
      );
    }
  });
});
