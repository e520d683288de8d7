/**
 * ONNX Runtime provider benchmark (`npm run bench:ort`): the embedded backend alone — the same
 * session options, tensors and provider choice the gpu-node uses (gpu-node/backends/onnxruntime.ts),
 * no RPC, no decoding — at batch sizes 1 … 256: session start, latency at batch 1, throughput at
 * each batch, and the vectors against the CPU provider's (cosine) so a fast provider is also a
 * correct one. Run it on a GPU host to see what WebGPU or CUDA give; the card goes in the output.
 *
 *   node test/bench/ort.ts [--provider auto|cpu|webgpu|cuda] [--model vit-b32|vit-tiny|vit-b32-fp16|vit-tiny-fp16|FILE]
 *                          [--batches 1,8,32,64,128,256] [--seconds 2] [--no-check] [--via-node]
 *
 * --via-node then starts the gpu-node with the same provider and model and measures one exact
 * 224x224 JPEG per call, one call at a time, through Connect over h2c: what the RPC, decode and
 * batcher add to batch-1 latency (throughput through the node: bench:gpu-host --server-args).
 *
 * Prints Markdown; writes JSON to $OUT/ if set, else .cache/bench/.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { IMAGE_BYTES } from "../../gpu-node/backends/backend.ts";
import { createOnnxRuntimeBackend } from "../../gpu-node/backends/onnxruntime.ts";
import type { OrtProvider } from "../../gpu-node/config.ts";
import { ensureModel } from "../../gpu-node/model/index.ts";
import { parseCli } from "../support/cli.ts";
import { cosine, embedderClient } from "../support/gpu-node-client.ts";
import { photoPixels } from "../support/images.ts";
import { ROOT, spawnGpuNode } from "../support/processes.ts";
import { fmt, markdownTable, toJson } from "../support/report.ts";
import { median, percentile } from "../support/stats.ts";

const USAGE = `Usage: npm run bench:ort -- [options]

The embedded ONNX Runtime backend alone, per provider: session start, batch-1 latency,
throughput per batch size, and cosine against the CPU provider.

  --provider auto|cpu|webgpu|cuda   (default auto: what the gpu-node would take here)
  --model vit-b32|vit-tiny[-fp16]|FILE  (default vit-b32, generated on first use)
  --batches 1,8,32,64,128,256
  --seconds N                       measured time per batch size (default 2)
  --no-check                        skip the comparison with the CPU provider
  --gap-ms N                        idle pause between bare runs (default 0), as calls through a
                                    gpu-node leave the GPU idle between runs
  --no-tunables                     start the --via-node gpu-node without its GLIBC_TUNABLES
  --via-node                        also batch-1 latency through a gpu-node (exact-224 JPEGs)
  --help`;

function progress(message: string): void {
  process.stderr.write(`[bench:ort ${(performance.now() / 1000).toFixed(1)}s] ${message}\n`);
}

/** The GPU's name where nvidia-smi answers; else the CPU's. */
function machine(): string {
  try {
    const gpu = execFileSync(
      "nvidia-smi",
      ["--query-gpu=name,driver_version", "--format=csv,noheader"],
      {
        encoding: "utf8",
        timeout: 5000,
      },
    ).trim();
    return `${gpu} (driver), ${cpus().length} cores`;
  } catch {
    return `${cpus()[0]?.model ?? "unknown CPU"}, ${cpus().length} cores, no NVIDIA GPU`;
  }
}

async function main(): Promise<void> {
  const { values } = parseCli(USAGE, {
    options: {
      provider: { type: "string", default: "auto" },
      model: { type: "string", default: "vit-b32" },
      batches: { type: "string", default: "1,8,32,64,128,256" },
      seconds: { type: "string", default: "2" },
      "no-check": { type: "boolean", default: false },
      "gap-ms": { type: "string", default: "0" },
      "no-tunables": { type: "boolean", default: false },
      "via-node": { type: "boolean", default: false },
    },
  });
  const provider = values.provider as OrtProvider;
  if (!["auto", "cpu", "webgpu", "cuda"].includes(provider)) throw new Error(USAGE);
  const batches = values.batches.split(",").map(Number);
  const gapMs = Number(values["gap-ms"]);
  const seconds = Number(values.seconds);
  const model = await ensureModel(values.model, join(ROOT, ".cache"));
  const threads = cpus().length;

  // Eight distinct photo-like images, repeated to fill the largest batch.
  const maxBatch = Math.max(...batches);
  const pixels = new Uint8Array(maxBatch * IMAGE_BYTES);
  const distinct = await Promise.all(
    Array.from({ length: 8 }, (_, i) => photoPixels(224, 224, 100 + i)),
  );
  for (let i = 0; i < maxBatch; i++) pixels.set(distinct[i % 8]!, i * IMAGE_BYTES);
  const batch = (count: number) =>
    ({ layout: "uint8-nhwc", data: pixels.subarray(0, count * IMAGE_BYTES), count }) as const;

  const t0 = performance.now();
  const backend = createOnnxRuntimeBackend({
    modelPath: model.path,
    name: model.name,
    version: model.sha256.slice(0, 12),
    threads,
    provider,
    maxBatchSize: maxBatch,
  });
  const description = await backend.start();
  const startMs = performance.now() - t0;
  progress(
    `${description.provider} on ${description.device}: session ready in ${startMs.toFixed(0)} ms`,
  );

  const rows: { batch: number; msMedian: number; msP90: number; imagesPerSecond: number }[] = [];
  for (const b of batches) {
    for (let i = 0; i < 3; i++) await backend.infer(batch(b)); // shaders, allocations
    const times: number[] = [];
    const until = performance.now() + seconds * 1000;
    const w0 = performance.now();
    let images = 0;
    while (performance.now() < until || times.length < 3) {
      if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
      const s = performance.now();
      await backend.infer(batch(b));
      times.push(performance.now() - s);
      images += b;
    }
    const wall = (performance.now() - w0) / 1000;
    rows.push({
      batch: b,
      msMedian: median(times),
      msP90: percentile(times, 0.9),
      imagesPerSecond: images / wall,
    });
    progress(`batch ${b}: ${median(times).toFixed(2)} ms, ${(images / wall).toFixed(0)} img/s`);
  }

  let worstCosine: number | undefined;
  if (!values["no-check"] && description.provider !== "cpu") {
    const out = await backend.infer(batch(8));
    const cpu = createOnnxRuntimeBackend({
      modelPath: model.path,
      name: model.name,
      version: "",
      threads,
      provider: "cpu",
    });
    await cpu.start();
    const ref = await cpu.infer(batch(8));
    await cpu.close();
    const d = description.dimension;
    worstCosine = Math.min(
      ...Array.from({ length: 8 }, (_, i) =>
        cosine(out.subarray(i * d, (i + 1) * d), ref.subarray(i * d, (i + 1) * d)),
      ),
    );
  }
  await backend.close();

  let viaNode:
    | {
        msMedian: number;
        msP90: number;
        calls: number;
        /** The gpu-node's own stage medians (its response's timings), ms. */
        stages: Record<"decode" | "preprocess" | "queue" | "inference" | "total", number>;
      }
    | undefined;
  if (values["via-node"]) {
    const node = await spawnGpuNode(
      [
        "--backend",
        "onnxruntime",
        "--ort-provider",
        description.provider!,
        "--model",
        model.path,
        "--processes",
        "1",
      ],
      { keepLogs: false, logLevel: "info", glibcTunables: !values["no-tunables"] },
    );
    try {
      const client = embedderClient(node.url, "grpc");
      const jpegs = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          sharp(distinct[i]!, { raw: { width: 224, height: 224, channels: 3 } })
            .jpeg({ quality: 90 })
            .toBuffer(),
        ),
      );
      for (let i = 0; i < 10; i++)
        await client.embed({ images: [{ id: "w", data: jpegs[i % 8]! }] });
      const times: number[] = [];
      const stages = { decode: [], preprocess: [], queue: [], inference: [], total: [] } as Record<
        keyof NonNullable<typeof viaNode>["stages"],
        number[]
      >;
      const until = performance.now() + seconds * 1000;
      while (performance.now() < until || times.length < 20) {
        const s = performance.now();
        const res = await client.embed({ images: [{ id: "x", data: jpegs[times.length % 8]! }] });
        times.push(performance.now() - s);
        const t = res.timings;
        if (t) {
          stages.decode.push(t.decodeUs / 1000);
          stages.preprocess.push(t.preprocessUs / 1000);
          stages.queue.push(t.queueUs / 1000);
          stages.inference.push(t.inferenceUs / 1000);
          stages.total.push(t.totalUs / 1000);
        }
      }
      viaNode = {
        msMedian: median(times),
        msP90: percentile(times, 0.9),
        calls: times.length,
        stages: {
          decode: median(stages.decode),
          preprocess: median(stages.preprocess),
          queue: median(stages.queue),
          inference: median(stages.inference),
          total: median(stages.total),
        },
      };
      progress(`through the gpu-node, batch 1: ${viaNode.msMedian.toFixed(2)} ms`);
    } finally {
      await node.stop();
    }
  }

  const host = machine();
  const table = markdownTable(
    ["batch", "ms per batch (median)", "p90", "img/s"],
    rows.map((r) => [
      String(r.batch),
      fmt(r.msMedian, 2),
      fmt(r.msP90, 2),
      fmt(r.imagesPerSecond, 0),
    ]),
  );
  const best = rows.reduce((a, r) => (r.imagesPerSecond > a.imagesPerSecond ? r : a), rows[0]!);
  process.stdout.write(
    `## ONNX Runtime ${description.provider} (${description.device}), ${model.name}\n\n` +
      `${host}; ${new Date().toISOString().slice(0, 10)}; session start ${fmt(startMs, 0)} ms` +
      `${gapMs > 0 ? `; ${gapMs} ms idle before each bare run` : ""}` +
      `${worstCosine === undefined ? "" : `; worst cosine vs the CPU provider ${worstCosine.toFixed(6)}`}\n\n` +
      `${table}\n\nbest: ${fmt(best.imagesPerSecond, 0)} img/s at batch ${best.batch}\n` +
      (viaNode
        ? `through the gpu-node (one exact-224 JPEG per call, Connect gRPC over h2c, one process): ${fmt(viaNode.msMedian, 2)} ms median, p90 ${fmt(viaNode.msP90, 2)} ms (bare batch 1: ${fmt(rows.find((r) => r.batch === 1)?.msMedian ?? Number.NaN, 2)} ms); the gpu-node's own stage medians: ${Object.entries(
            viaNode.stages,
          )
            .map(([k, v]) => `${k} ${fmt(v, 2)} ms`)
            .join(", ")}\n`
        : ""),
  );
  const dir = process.env.OUT ?? join(ROOT, ".cache/bench");
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, `ort-${description.provider}-${model.name}.json`),
    toJson({ host, model: model.name, description, startMs, rows, worstCosine, viaNode }),
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:ort failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
