/**
 * Tails of the seed's single-image call through the Node edge on loopback, and the edge's garbage
 * collections behind them: a gpu-node (vit-tiny) and the Node edge, this process sending the
 * seed's request (a random-noise PNG as base64 JSON, a new connection per call) one at a time.
 * `--compare` alternates runs with the edge's Node flags (`NODE_FLAGS` in edge/node/server.ts,
 * what `npm run edge:node` passes) and without them.
 *
 *   node test/bench/seed-tails.ts [--calls 200] [--runs 3] [--compare]
 *
 * Many more calls per run than `npm run bench`'s 30, so that p95 and p99 are not one or two calls;
 * fewer processes (no Worker, no link emulator), so that what is left is the edge's and the
 * gpu-node's own pauses.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { NODE_FLAGS } from "../../edge/node/server.ts";
import { parseCli } from "../support/cli.ts";
import { BENCH_GPU_NODE, ROOT, spawnGpuNode } from "../support/processes.ts";
import { markdownTable } from "../support/report.ts";
import { percentile } from "../support/stats.ts";
import { seedClient } from "./e2e/clients.ts";
import { seedNoisePngs } from "./e2e/inputs.ts";
import { startNodeEdge } from "./e2e/stack.ts";

const USAGE = `usage: node test/bench/seed-tails.ts [--calls 200] [--runs 3] [--compare]

Single seed calls (224-px noise PNG as base64 JSON, a new connection each) through the Node edge
on loopback to a gpu-node (vit-tiny): per run p50, p95 and p99 and their ratios, and the edge's
garbage collections (scavenges, full GCs, their longest pause). --compare alternates runs with
the edge's Node flags (${NODE_FLAGS.join(" ")}) and without.`;

const WARMUP = 10;

/** Loaded into the edge with --import: counts its GCs and writes them out when it is stopped. */
const GC_PRELOAD = `import { PerformanceObserver, constants } from "node:perf_hooks";
import { writeFileSync } from "node:fs";
const stats = { scavenges: 0, full: 0, longestFullMs: 0, pauseMs: 0 };
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    stats.pauseMs += e.duration;
    if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MINOR) stats.scavenges++;
    if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
      stats.full++;
      stats.longestFullMs = Math.max(stats.longestFullMs, e.duration);
    }
  }
}).observe({ entryTypes: ["gc"] });
process.once("SIGTERM", () => { writeFileSync(process.env.GC_STATS_FILE, JSON.stringify(stats)); process.exit(0); });
`;

interface GcStats {
  readonly scavenges: number;
  readonly full: number;
  readonly longestFullMs: number;
  readonly pauseMs: number;
}

interface Run {
  readonly flags: readonly string[];
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly gc: GcStats;
}

async function run(calls: number, flags: readonly string[], dir: string, i: number): Promise<Run> {
  const token = randomBytes(24).toString("base64url");
  const statsFile = join(dir, `gc-${i}.json`);
  const gpu = await spawnGpuNode(["--model", "vit-tiny", "--threads", "2"], {
    ...BENCH_GPU_NODE,
    env: { GPU_NODE_TOKEN: token },
  });
  try {
    const edge = await startNodeEdge(
      {
        GPU_NODE_URLS: gpu.url,
        GPU_NODE_TOKEN: token,
        AUTH_DISABLED: "true",
        GC_STATS_FILE: statsFile,
        NODE_OPTIONS: `--import ${join(dir, "gc-preload.mjs")}`,
      },
      flags,
    );
    const images = (await seedNoisePngs(8)).images;
    const call = seedClient(edge.url, "");
    const ms: number[] = [];
    try {
      for (let k = 0; k < WARMUP; k++) await call([images[k % images.length]!]);
      for (let k = 0; k < calls; k++) {
        const t0 = performance.now();
        await call([images[k % images.length]!]);
        ms.push(performance.now() - t0);
      }
    } finally {
      await edge.stop("SIGTERM");
    }
    const gc = JSON.parse(readFileSync(statsFile, "utf8")) as GcStats;
    return {
      flags,
      p50: percentile(ms, 0.5),
      p95: percentile(ms, 0.95),
      p99: percentile(ms, 0.99),
      gc,
    };
  } finally {
    await gpu.stop();
  }
}

async function main(): Promise<void> {
  const { values } = parseCli(USAGE, {
    options: {
      calls: { type: "string", default: "200" },
      runs: { type: "string", default: "3" },
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
  const plan = Array.from({ length: runs }, () =>
    values.compare ? [NODE_FLAGS, [] as readonly string[]] : [NODE_FLAGS],
  ).flat();
  const results: Run[] = [];
  for (const [i, flags] of plan.entries()) {
    const r = await run(calls, flags, dir, i);
    results.push(r);
    process.stderr.write(
      `[seed-tails] run ${i + 1}/${plan.length} (${flags.join(" ") || "no flags"}): p50 ${r.p50.toFixed(1)} ms, ` +
        `p95 ${(r.p95 / r.p50).toFixed(2)}×, p99 ${(r.p99 / r.p50).toFixed(2)}×, full GCs ${r.gc.full}\n`,
    );
  }
  const f = (x: number) => x.toFixed(1);
  process.stdout.write(
    `\n## Seed single calls through the Node edge, loopback, ${calls} calls per run after ${WARMUP}\n\n` +
      markdownTable(
        [
          "edge's Node flags",
          "p50 ms",
          "p95 ms (÷p50)",
          "p99 ms (÷p50)",
          "edge GCs: scavenges / full (longest ms)",
          "edge GC pauses ms",
        ],
        results.map((r) => [
          r.flags.join(" ") || "none (V8's defaults)",
          f(r.p50),
          `${f(r.p95)} (${(r.p95 / r.p50).toFixed(2)})`,
          `${f(r.p99)} (${(r.p99 / r.p50).toFixed(2)})`,
          `${r.gc.scavenges} / ${r.gc.full} (${f(r.gc.longestFullMs)})`,
          f(r.gc.pauseMs),
        ]),
      ) +
      `\nGC counts cover the edge's whole life (warm-up and start-up included). Results in ${dir}\n`,
  );
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`seed-tails failed: ${error instanceof Error ? error.stack : error}\n`);
    process.exit(1);
  },
);
