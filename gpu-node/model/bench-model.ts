/** Quick onnxruntime-node CPU latency check of a model: median/p90 per batch size. */

import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ensureModel } from "./model-cache.ts";
import { embed, openSession } from "./ort-run.ts";
import { syntheticBatch } from "./synthetic-images.ts";

const USAGE = `usage: bench-model.ts [vit-b32|vit-tiny|PATH.onnx] [--threads 2] [--batches 1,8] [--runs 20]`;
const DEFAULT_CACHE_DIR = fileURLToPath(new URL("../../.cache", import.meta.url));

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      threads: { type: "string", default: "2" },
      batches: { type: "string", default: "1,8" },
      runs: { type: "string", default: "20" },
      "cache-dir": { type: "string", default: DEFAULT_CACHE_DIR },
    },
  });
  if (positionals.length > 1) throw new Error(USAGE);
  const threads = Number(values.threads);
  const runs = Number(values.runs);
  const batches = values.batches.split(",").map(Number);

  const model = await ensureModel(positionals[0] ?? "vit-b32", values["cache-dir"]);
  const loadStart = performance.now();
  const session = await openSession(model.path, threads);
  console.log(
    `${model.name} (${model.sha256.slice(0, 12)}), intraOpNumThreads=${threads}, ` +
      `session load ${(performance.now() - loadStart).toFixed(0)} ms`,
  );
  try {
    for (const batch of batches) {
      const images = syntheticBatch(7, batch);
      for (let i = 0; i < 3; i++) await embed(session, images); // warm up
      const times: number[] = [];
      for (let i = 0; i < runs; i++) {
        const start = performance.now();
        await embed(session, images);
        times.push(performance.now() - start);
      }
      times.sort((a, b) => a - b);
      const median = percentile(times, 0.5);
      console.log(
        `batch ${batch}: median ${median.toFixed(1)} ms, p90 ${percentile(times, 0.9).toFixed(1)} ms, ` +
          `${((1000 * batch) / median).toFixed(1)} img/s`,
      );
    }
  } finally {
    await session.release();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
