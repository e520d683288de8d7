/**
 * Bare ONNX Runtime, the baseline for the gpu-node: a session with the backend's options runs
 * pre-packed UINT8 [N,224,224,3] tensors back to back. Run as its own process by gpu-node.ts, so
 * that it never competes with the service for the CPU.
 *
 *   node test/bench/ort-child.ts '{"modelPath":…,"pixelsPath":…,"threads":2,"plan":[…]}'
 *
 * Prints one JSON line (OrtChildResult).
 */
import { readFileSync } from "node:fs";
import * as ort from "onnxruntime-node";
import { memoryMiB } from "./child.ts";
import { runLoad } from "./load.ts";
import { type Summary, summarize } from "./stats.ts";

const SIZE = 224;
const IMAGE_BYTES = SIZE * SIZE * 3;

export interface OrtStep {
  readonly batch: number;
  readonly warmupCalls: number;
  readonly calls: number;
}

export interface OrtChildInput {
  readonly modelPath: string;
  /** count x 224x224x3 uint8 pixels, back to back (count ≥ the largest batch). */
  readonly pixelsPath: string;
  readonly threads: number;
  readonly plan: readonly OrtStep[];
}

export interface OrtStepResult {
  readonly batch: number;
  readonly calls: number;
  readonly elapsedMs: number;
  readonly imagesPerSecond: number;
  readonly runMs: Summary;
}

export interface OrtChildResult {
  readonly loadMs: number;
  readonly steps: readonly OrtStepResult[];
  readonly peakRssMiB: number;
}

async function main(): Promise<void> {
  const input = JSON.parse(process.argv[2] ?? "") as OrtChildInput;
  const pixels = new Uint8Array(readFileSync(input.pixelsPath));
  const available = pixels.byteLength / IMAGE_BYTES;
  const t0 = performance.now();
  // The same options as gpu-node/backends/onnxruntime.ts.
  const session = await ort.InferenceSession.create(input.modelPath, {
    intraOpNumThreads: input.threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
  });
  const loadMs = performance.now() - t0;
  const inputName = session.inputNames[0]!;
  const outputName = session.outputNames[0]!;
  try {
    const steps: OrtStepResult[] = [];
    for (const step of input.plan) {
      if (step.batch > available) throw new Error(`batch ${step.batch} > ${available} images`);
      const tensor = new ort.Tensor("uint8", pixels.subarray(0, step.batch * IMAGE_BYTES), [
        step.batch,
        SIZE,
        SIZE,
        3,
      ]);
      const r = await runLoad({
        concurrency: 1,
        imagesPerCall: step.batch,
        warmupCalls: step.warmupCalls,
        calls: step.calls,
        call: async () => {
          const out = await session.run({ [inputName]: tensor }, [outputName]);
          const data = out[outputName]?.data;
          if (!(data instanceof Float32Array) || data.length === 0) throw new Error("no output");
        },
      });
      steps.push({
        batch: step.batch,
        calls: r.calls,
        elapsedMs: r.elapsedMs,
        imagesPerSecond: r.imagesPerSecond,
        runMs: summarize(r.rttMs),
      });
    }
    const result: OrtChildResult = { loadMs, steps, peakRssMiB: memoryMiB(process.pid).peakRss };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await session.release();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : error}\n`);
  process.exitCode = 1;
});
