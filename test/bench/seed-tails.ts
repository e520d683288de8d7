/**
 * Tails of the seed's single-image call through the Node edge on loopback, and the full garbage
 * collections behind them: a gpu-node (vit-tiny) and the Node edge, this process sending the
 * seed's request (a random-noise PNG as base64 JSON, a new connection per call) one at a time.
 * `--compare` alternates runs with the servers' Node flags (`NODE_FLAGS` in edge/node/server.ts
 * and in gpu-node/config.ts, what `npm run edge:node` and `npm run gpu-node` pass) and without.
 *
 *   npm run bench:seed-tails -- [--calls 1000] [--runs 2] [--compare]
 *
 * Many more calls per run than `npm run bench`'s 30, so that p95 and p99 are not one or two calls;
 * fewer processes (no Worker, no link emulator), so that what is left is the servers' own pauses.
 * The npm script runs this client with the edge's flags too: without them its own full GCs (~4 in
 * 1,000 calls) landed inside the calls it timed.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { constants, type PerformanceEntry, PerformanceObserver } from "node:perf_hooks";
import { NODE_FLAGS as EDGE_FLAGS } from "../../edge/node/server.ts";
import { NODE_FLAGS as GPU_NODE_FLAGS } from "../../gpu-node/config.ts";
import { parseCli } from "../support/cli.ts";
import { MiB, treeRss } from "../support/proc.ts";
import { BENCH_GPU_NODE, ROOT, spawnGpuNode } from "../support/processes.ts";
import { markdownTable } from "../support/report.ts";
import { percentile } from "../support/stats.ts";
import { seedClient } from "./e2e/clients.ts";
import { seedNoisePngs } from "./e2e/inputs.ts";
import { startNodeEdge } from "./e2e/stack.ts";

const WARMUP = 10;
/** A call this many times p50 counts as slow (a pause of a few ms on top of ~7 ms). */
const SLOW = 1.6;

const USAGE = `usage: npm run bench:seed-tails -- [--calls 1000] [--runs 2] [--compare]

Single seed calls (224-px noise PNG as base64 JSON, a new connection each) through the Node edge
on loopback to a gpu-node (vit-tiny): per run p50, p95 and p99 and their ratios, the calls over
${SLOW}× p50, and the full GCs of each process. --compare alternates runs with the servers' Node
flags (edge: ${EDGE_FLAGS.join(" ")}; gpu-node: ${GPU_NODE_FLAGS.join(" ")}) and without.`;

/**
 * Loaded into every server process with --import (the gpu-node's workers inherit it): counts its full
 * GCs and writes them to GC_STATS_DIR/<pid>.json when it exits. The edge has no SIGTERM handler
 * of its own, so there (GC_EXIT_ON_SIGTERM) one is added that exits; the gpu-node drains and exits
 * by itself.
 */
const GC_PRELOAD = `import { PerformanceObserver, constants } from "node:perf_hooks";
import { writeFileSync } from "node:fs";
import { basename } from "node:path";
const stats = { script: basename(process.argv[1] ?? ""), full: 0 };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) stats.full++;
  }
}).observe({ entryTypes: ["gc"] });
process.on("exit", () => writeFileSync(process.env.GC_STATS_DIR + "/" + process.pid + ".json", JSON.stringify(stats)));
if (process.env.GC_EXIT_ON_SIGTERM) process.once("SIGTERM", () => process.exit(0));
`;

interface GcStats {
  readonly script: string;
  readonly full: number;
}

interface Run {
  readonly withFlags: boolean;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly slow: number;
  /** Full GCs over the run's whole life (start-up and warm-up included), by process. */
  readonly full: { edge: number; primary: number; workers: number; client: number };
  readonly rssMiB: { edge: number; gpuNode: number };
}

/** This process's full GCs (the client's), counted while a run's calls are timed. */
function countClientFullGcs(): { stop(): number } {
  let full = 0;
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) full++;
    }
  });
  observer.observe({ entryTypes: ["gc"] });
  return {
    stop() {
      observer.disconnect();
      return full;
    },
  };
}

async function run(calls: number, withFlags: boolean, dir: string, i: number): Promise<Run> {
  const token = randomBytes(24).toString("base64url");
  const statsDir = join(dir, `gc-${i}`);
  mkdirSync(statsDir);
  const preload = `--import ${join(dir, "gc-preload.mjs")}`;
  const gpu = await spawnGpuNode(["--model", "vit-tiny", "--threads", "2"], {
    ...BENCH_GPU_NODE,
    nodeArgs: withFlags ? GPU_NODE_FLAGS : [],
    env: { GPU_NODE_TOKEN: token, GC_STATS_DIR: statsDir, NODE_OPTIONS: preload },
  });
  const ms: number[] = [];
  let clientFull = 0;
  let rssMiB = { edge: 0, gpuNode: 0 };
  try {
    const edge = await startNodeEdge(
      {
        GPU_NODE_URLS: gpu.url,
        GPU_NODE_TOKEN: token,
        AUTH_DISABLED: "true",
        GC_STATS_DIR: statsDir,
        GC_EXIT_ON_SIGTERM: "1",
        NODE_OPTIONS: preload,
      },
      withFlags ? EDGE_FLAGS : [],
    );
    const images = (await seedNoisePngs(8)).images;
    const call = seedClient(edge.url, "");
    try {
      for (let k = 0; k < WARMUP; k++) await call([images[k % images.length]!]);
      const client = countClientFullGcs();
      for (let k = 0; k < calls; k++) {
        const t0 = performance.now();
        await call([images[k % images.length]!]);
        ms.push(performance.now() - t0);
      }
      clientFull = client.stop();
      rssMiB = { edge: treeRss(edge.pid) / MiB, gpuNode: gpu.rss() / MiB };
    } finally {
      await edge.stop("SIGTERM");
    }
  } finally {
    await gpu.stop();
  }
  const stats = readdirSync(statsDir).map(
    (f) => JSON.parse(readFileSync(join(statsDir, f), "utf8")) as GcStats,
  );
  const fullOf = (script: string) =>
    stats.filter((s) => s.script === script).reduce((n, s) => n + s.full, 0);
  const p50 = percentile(ms, 0.5);
  return {
    withFlags,
    p50,
    p95: percentile(ms, 0.95),
    p99: percentile(ms, 0.99),
    slow: ms.filter((x) => x > SLOW * p50).length,
    full: {
      edge: fullOf("server.ts"),
      primary: fullOf("main.ts"),
      workers: fullOf("worker.ts"),
      client: clientFull,
    },
    rssMiB,
  };
}

async function main(): Promise<void> {
  const { values } = parseCli(USAGE, {
    options: {
      calls: { type: "string", default: "1000" },
      runs: { type: "string", default: "2" },
      compare: { type: "boolean", default: false },
    },
  });
  const calls = Number(values.calls);
  const runs = Number(values.runs);
  if (!Number.isSafeInteger(calls) || calls < 20 || !Number.isSafeInteger(runs) || runs < 1) {
    throw new Error("--calls takes an integer ≥ 20 and --runs a positive integer");
  }
  const dir = join(
    ROOT,
    ".cache/bench",
    `seed-tails-${new Date().toISOString().replace(/[:.]/g, "-")}`,
  );
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "gc-preload.mjs"), GC_PRELOAD);
  const plan = Array.from({ length: runs }, () => (values.compare ? [true, false] : [true])).flat();
  const results: Run[] = [];
  const label = (withFlags: boolean) => (withFlags ? "servers' flags" : "V8's defaults");
  for (const [i, withFlags] of plan.entries()) {
    const r = await run(calls, withFlags, dir, i);
    results.push(r);
    process.stderr.write(
      `[seed-tails] run ${i + 1}/${plan.length} (${label(withFlags)}): p50 ${r.p50.toFixed(1)} ms, ` +
        `p95 ${(r.p95 / r.p50).toFixed(2)}×, p99 ${(r.p99 / r.p50).toFixed(2)}×, ${r.slow} slow, ` +
        `full GCs edge ${r.full.edge}, gpu-node ${r.full.primary} + ${r.full.workers}\n`,
    );
  }
  const f = (x: number) => x.toFixed(1);
  const client = process.execArgv.filter((a) => a.startsWith("--")).join(" ") || "none";
  process.stdout.write(
    `\n## Seed single calls through the Node edge, loopback, ${calls} calls per run after ${WARMUP}\n\n` +
      markdownTable(
        [
          "servers' Node flags",
          "p50 ms",
          "p95 ms (÷p50)",
          "p99 ms (÷p50)",
          `calls > ${SLOW}× p50`,
          "full GCs: edge / gpu-node primary / its workers / client",
          "RSS MiB: edge / gpu-node",
        ],
        results.map((r) => [
          label(r.withFlags),
          f(r.p50),
          `${f(r.p95)} (${(r.p95 / r.p50).toFixed(2)})`,
          `${f(r.p99)} (${(r.p99 / r.p50).toFixed(2)})`,
          String(r.slow),
          `${r.full.edge} / ${r.full.primary} / ${r.full.workers} / ${r.full.client}`,
          `${r.rssMiB.edge.toFixed(0)} / ${r.rssMiB.gpuNode.toFixed(0)}`,
        ]),
      ) +
      `\nThe servers' full GCs cover each process's whole life (start-up and warm-up included); the ` +
      `client's, the timed calls only (its Node flags: ${client}). RSS after the last call; the ` +
      `gpu-node's with its workers. Results in ${dir}\n`,
  );
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`seed-tails failed: ${error instanceof Error ? error.stack : error}\n`);
    process.exit(1);
  },
);
