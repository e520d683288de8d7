/**
 * Where the time goes on the seed's own workload: the gpu-node (vit-tiny) and the Node edge run
 * under `node --cpu-prof`, this process sends the seed's requests (random-noise PNGs as base64
 * JSON, a new connection per call) on loopback, then prints each process's busiest functions
 * and files by self time and leaves the .cpuprofile files for DevTools.
 *
 *   node test/bench/profile-seed.ts [--single 150] [--batch32 20] [--out DIR]
 *
 * The Node edge runs the same Hono app, upload parsing, pipeline and gpu-node client as the
 * Worker; the Worker's own runtime (workerd) is not profiled here.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { setTimeout } from "node:timers/promises";
import { parseCli } from "../support/cli.ts";
import { processTree } from "../support/proc.ts";
import { ROOT, spawnGpuNode } from "../support/processes.ts";
import { seedClient } from "./e2e/clients.ts";
import { seedNoisePngs } from "./e2e/inputs.ts";
import { startNodeEdge } from "./e2e/stack.ts";

const USAGE = `usage: node test/bench/profile-seed.ts [--single N] [--batch32 N] [--out DIR]

CPU profiles (node --cpu-prof) of the gpu-node (vit-tiny) and the Node edge while this process
sends the seed's workload on loopback: N single-image calls (default 150), then N calls of 32
images (default 20). Prints each process's top self time; the profiles stay in DIR (default
.cache/bench/profile-<time>).`;

interface CpuProfile {
  readonly nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }[];
  readonly samples: number[];
  readonly timeDeltas: number[];
}

/** Self time (ms) by function and by file, busiest first; "(idle)" apart. */
function selfTimes(profile: CpuProfile) {
  const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  let idle = 0;
  let total = 0;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    const c = frames.get(id)!;
    total += us;
    if (c.functionName === "(idle)") {
      idle += us;
      return;
    }
    const file = c.url.replace(/^file:\/\/\/?/, "").replace(`${ROOT}/`, "") || c.functionName;
    const fn = `${c.functionName || "(anonymous)"} ${file.split("/").pop()}:${c.lineNumber + 1}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us / 1000);
    byFile.set(file, (byFile.get(file) ?? 0) + us / 1000);
  });
  const top = (m: Map<string, number>, n: number) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n);
  return { totalMs: total / 1000, busyMs: (total - idle) / 1000, top, byFunction, byFile };
}

async function main(): Promise<void> {
  const { values } = parseCli(USAGE, {
    options: {
      single: { type: "string", default: "150" },
      batch32: { type: "string", default: "20" },
      out: {
        type: "string",
        default: resolve(
          ROOT,
          ".cache/bench",
          `profile-${new Date().toISOString().replace(/[:.]/g, "-")}`,
        ),
      },
    },
  });
  const out = resolve(values.out);
  const token = randomBytes(24).toString("base64url");
  const profiled = (dir: string) =>
    `--cpu-prof --cpu-prof-dir=${join(out, dir)} ` +
    // The Node edge has no SIGTERM handler; a profile is written only on a normal exit.
    `--import "data:text/javascript,process.once('SIGTERM',()=>process.exit(0))"`;
  const gpu = await spawnGpuNode(["--model", "vit-tiny", "--threads", "2"], {
    env: { GPU_NODE_TOKEN: token, NODE_OPTIONS: profiled("gpu-node") },
    keepLogs: false,
  });
  const edge = await startNodeEdge({
    GPU_NODE_URLS: gpu.url,
    GPU_NODE_TOKEN: token,
    AUTH_DISABLED: "true",
    NODE_OPTIONS: profiled("edge"),
  });
  try {
    const images = (await seedNoisePngs(32)).images;
    const call = seedClient(edge.url, "");
    for (let i = 0; i < 5; i++) await call([images[i]!]);
    for (let i = 0; i < Number(values.single); i++) await call([images[i % images.length]!]);
    for (let i = 0; i < Number(values.batch32); i++) await call(images);
  } finally {
    // The gpu-node's worker processes write their profiles as they exit, after the primary may.
    const tree = [...processTree(gpu.pid), edge.pid];
    await Promise.all([edge.stop("SIGTERM"), gpu.stop("SIGTERM")]);
    for (let i = 0; i < 100 && tree.some((pid) => existsSync(`/proc/${pid}`)); i++) {
      await setTimeout(50);
    }
  }
  for (const dir of ["edge", "gpu-node"]) {
    for (const file of await readdir(join(out, dir))) {
      const p = selfTimes(JSON.parse(await readFile(join(out, dir, file), "utf8")) as CpuProfile);
      if (p.busyMs < 200) continue; // an idle helper process
      process.stdout.write(
        `\n## ${dir} ${file}: busy ${p.busyMs.toFixed(0)} of ${p.totalMs.toFixed(0)} ms\n`,
      );
      for (const [name, ms] of p.top(p.byFunction, 15)) {
        process.stdout.write(`${ms.toFixed(1).padStart(9)} ms  ${name}\n`);
      }
      process.stdout.write("by file:\n");
      for (const [name, ms] of p.top(p.byFile, 8)) {
        process.stdout.write(`${ms.toFixed(1).padStart(9)} ms  ${name}\n`);
      }
    }
  }
  process.stdout.write(`\nProfiles in ${out}\n`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(
      `profile failed: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`,
    );
    process.exit(1);
  },
);
