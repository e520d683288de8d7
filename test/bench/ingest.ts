/**
 * Ingest benchmark (`npm run bench:ingest`): what a new user's first library costs.
 *  1. `npm run ingest` of a folder of generated photos (341x256 q80 JPEGs of ~15 KB, the
 *     benchmarks' photos) through a local gpu-node (noop backend by default: our CPU work only —
 *     walk, read, hash, EmbedStream, decode — or vit-tiny), fresh database: img/s end to end.
 *  2. The same command again with nothing changed: the resume time.
 *  3. `npm run duplicates` on databases of generated vectors (512-d, photo-like spread, 2% planted
 *     near-duplicates): time and peak memory, for each size given, with the index it picks (exact
 *     up to --exact-max, HNSW above, with its recall against brute force); for the smallest size
 *     also forced exact, to compare (up to 100,000 vectors).
 *
 * Prints Markdown; writes JSON to $OUT/ if set, else .cache/bench/. Photos and vector databases
 * are cached in .cache/bench-ingest/ (the 1M database is ~2.2 GB).
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { plantedVectors } from "../../ingest/duplicates/testing.ts";
import { type PhotoRow, Store } from "../../ingest/store.ts";
import { parseCli } from "../support/cli.ts";
import { benchPhotos } from "../support/images.ts";
import { BENCH_GPU_NODE, ROOT, spawnGpuNode } from "../support/processes.ts";
import { fmt, markdownTable, toJson } from "../support/report.ts";

const USAGE = `Usage: npm run bench:ingest -- [options]

Ingest of a generated photo folder through a local gpu-node (fresh, then resumed), and duplicate
search time and peak memory on generated vector databases.

  --photos N            photos in the folder (default 10000; 0 = skip the ingest part)
  --backend noop|vit-tiny  the gpu-node's backend (default noop)
  --concurrency N       the CLI's --concurrency (default 16)
  --vectors N,N         vector database sizes for duplicates (default 10000,1000000; empty = skip)
  --help                show this text`;

const { values } = parseCli(USAGE, {
  options: {
    photos: { type: "string", default: "10000" },
    backend: { type: "string", default: "noop" },
    concurrency: { type: "string", default: "16" },
    vectors: { type: "string", default: "10000,1000000" },
  },
});

const CACHE = join(ROOT, ".cache/bench-ingest");
mkdirSync(CACHE, { recursive: true });

/** Runs `node script args`, resolving with its wall time and output. */
function timed(
  script: string,
  args: readonly string[],
): Promise<{ ms: number; code: number | null; out: string; err: string }> {
  const t0 = performance.now();
  const child = spawn(process.execPath, [join(ROOT, script), ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
  child.stderr.setEncoding("utf8").on("data", (c: string) => (err += c));
  return new Promise((done) =>
    child.once("close", (code) => done({ ms: performance.now() - t0, code, out, err })),
  );
}

async function photoFolder(n: number): Promise<string> {
  const dir = join(CACHE, `photos-${n}`);
  const marker = `${dir}.complete`;
  if (existsSync(marker)) return dir;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const batch = 500;
  for (let i = 0; i < n; i += batch) {
    const photos = await benchPhotos(Math.min(batch, n - i), 1000 + i);
    // 100 files per folder, as cameras and phone exports nest them.
    photos.forEach((p, k) => {
      const idx = i + k;
      const sub = join(dir, String(Math.floor(idx / 100)).padStart(3, "0"));
      mkdirSync(sub, { recursive: true });
      writeFileSync(join(sub, `IMG_${String(idx).padStart(5, "0")}.jpg`), p);
    });
  }
  writeFileSync(marker, "");
  return dir;
}

async function vectorDb(n: number): Promise<string> {
  const path = join(CACHE, `vectors-${n}.db`);
  const marker = `${path}.complete`;
  if (existsSync(marker)) return path;
  for (const f of [path, `${path}-wal`, `${path}-shm`]) rmSync(f, { force: true });
  const { vectors } = plantedVectors(n, { twinEvery: 50, seed: 7 });
  const store = Store.open(path);
  const d = vectors.dimension;
  const chunk = 10_000;
  for (let start = 0; start < n; start += chunk) {
    const rows: PhotoRow[] = [];
    for (let i = start; i < Math.min(n, start + chunk); i++) {
      const bytes = new Uint8Array(vectors.data.buffer, i * d * 4, d * 4);
      rows.push({
        path: vectors.paths[i]!,
        size: 15_000,
        mtimeMs: 0,
        sha256: vectors.sha256[i]!,
        format: "jpeg",
        model: vectors.model,
        vector: bytes,
        dimension: d,
        timings: null,
        clientMs: null,
        attempts: 1,
        source: "generated",
        error: null,
      });
    }
    store.putMany(rows);
  }
  store.close();
  writeFileSync(marker, "");
  return path;
}

const results: Record<string, unknown> = {
  machine: {
    cpus: cpus().length,
    cpu: cpus()[0]?.model,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
  },
};
const lines: string[] = [`# Ingest benchmark (${new Date().toISOString().slice(0, 10)})`, ""];
lines.push(
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? "?"}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}.`,
  "",
);

const photos = Number(values.photos);
if (photos > 0) {
  const dir = await photoFolder(photos);
  const nodeArgs = values.backend === "vit-tiny" ? ["--model", "vit-tiny"] : ["--backend", "noop"];
  const node = await spawnGpuNode(nodeArgs, BENCH_GPU_NODE);
  try {
    const db = join(CACHE, `ingest-${photos}.db`);
    for (const f of [db, `${db}-wal`, `${db}-shm`]) rmSync(f, { force: true });
    const args = [
      "--gpu-node",
      node.url,
      "--db",
      db,
      "--concurrency",
      values.concurrency,
      "--progress",
      "none",
      dir,
    ];
    const fresh = await timed("ingest/cli/ingest.ts", args);
    if (fresh.code !== 0)
      throw new Error(`ingest failed (${fresh.code}):\n${fresh.err.slice(-2000)}`);
    const resumed = await timed("ingest/cli/ingest.ts", args);
    if (!/ 0 embedded/.test(resumed.out))
      throw new Error(`the resume sent photos again:\n${resumed.out}`);
    const ingest = {
      photos,
      backend: values.backend,
      concurrency: Number(values.concurrency),
      gpuNodeProcesses: "the machine's cores (default)",
      freshMs: fresh.ms,
      imgPerSecond: photos / (fresh.ms / 1000),
      resumeMs: resumed.ms,
      summary: fresh.out.trim().split("\n").at(-1),
    };
    results.ingest = ingest;
    lines.push(
      `## npm run ingest: ${photos} photos (341x256 q80 JPEG, ~15 KB) → local gpu-node (${values.backend}), --concurrency ${values.concurrency}`,
      "",
      markdownTable(
        ["run", "wall time", "img/s (wall, process start to exit)"],
        [
          ["fresh database", `${fmt(fresh.ms / 1000, 1)} s`, fmt(ingest.imgPerSecond, 0)],
          ["again, nothing changed (resume)", `${fmt(resumed.ms / 1000, 2)} s`, "—"],
        ],
      ),
      "",
    );
  } finally {
    await node.stop();
  }
}

const sizes = values.vectors.split(",").filter(Boolean).map(Number);
const dupRows: string[][] = [];
const dupResults: unknown[] = [];
for (const [i, n] of sizes.entries()) {
  const db = await vectorDb(n);
  // The smallest size also by brute force, for comparison (never a million: that is n² work).
  const runs = i === 0 && n <= 100_000 ? [[], ["--exact-max", String(n)]] : [[]];
  for (const extra of runs) {
    const statsFile = join(CACHE, `stats-${n}.json`);
    const r = await timed("ingest/cli/duplicates.ts", [
      "--db",
      db,
      "--json",
      join(CACHE, `groups-${n}.json`),
      "--stats",
      statsFile,
      ...extra,
    ]);
    if (r.code !== 0) throw new Error(`duplicates failed on ${n} vectors:\n${r.err.slice(-2000)}`);
    const s = JSON.parse(readFileSync(statsFile, "utf8")) as {
      index: string;
      groups: number;
      recall: { queries: number; atK: number; pairs: number | null; exactPairs: number } | null;
      loadMs: number;
      indexMs: number;
      searchMs: number;
      totalMs: number;
      peakRssMiB: number;
    };
    dupResults.push({ vectors: n, args: extra, wallMs: r.ms, ...s });
    dupRows.push([
      String(n),
      s.index,
      `${fmt(r.ms / 1000, 1)} s`,
      `${fmt(s.loadMs / 1000, 1)} / ${fmt(s.indexMs / 1000, 1)} / ${fmt(s.searchMs / 1000, 1)} s`,
      `${fmt(s.peakRssMiB, 0)} MiB`,
      String(s.groups),
      s.recall
        ? `${fmt(s.recall.atK, 3)} @64, pairs ${s.recall.pairs === null ? "—" : fmt(s.recall.pairs, 4)} (${s.recall.queries} queries)`
        : "exact",
    ]);
  }
}
if (sizes.length > 0) {
  results.duplicates = dupResults;
  lines.push(
    "## npm run duplicates: generated 512-d vectors (2% planted near-duplicates), threshold 0.97, 64 neighbours",
    "",
    markdownTable(
      [
        "vectors",
        "search",
        "wall time",
        "load / index / search",
        "peak RSS",
        "groups",
        "recall vs brute force",
      ],
      dupRows,
    ),
    "",
  );
}

process.stdout.write(`${lines.join("\n")}\n`);
const outDir = process.env.OUT ?? join(ROOT, ".cache/bench");
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, "ingest.json"), toJson(results));
