/**
 * Bare ONNX Runtime, the baseline for the gpu-node: a session with the backend's options runs
 * pre-packed UINT8 [N,224,224,3] tensors back to back. It runs as its own process, driven by
 * gpu-node.ts over stdin/stdout (one JSON object per line), so that it stays loaded between
 * steps and can take turns with the service without ever running beside it:
 *
 *   node test/bench/ort-child.ts '{"modelPath":…,"pixelsPath":…,"threads":2}'
 *   → {"ready":true,"loadMs":…}
 *   ← {"batch":8,"warmupCalls":1,"calls":8}   → OrtStepResult
 *   ← (stdin closed)                           → {"done":true,"peakRssMiB":…}
 */
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import * as ort from "onnxruntime-node";
import { runLoad } from "../support/load.ts";
import { machineBusySeconds, memoryMiB, ownCpuSeconds } from "../support/proc.ts";
import { type Summary, summarize } from "../support/stats.ts";

const SIZE = 224;
const IMAGE_BYTES = SIZE * SIZE * 3;

export interface OrtStep {
  readonly batch: number;
  readonly warmupCalls: number;
  readonly calls: number;
  /** Count from the first call (no warm-up call discarded); see runLoad. */
  readonly countFromStart?: boolean;
}

export interface OrtChildInput {
  readonly modelPath: string;
  /** count x 224x224x3 uint8 pixels, back to back (count ≥ the largest batch). */
  readonly pixelsPath: string;
  readonly threads: number;
}

export interface OrtStepResult {
  readonly batch: number;
  readonly calls: number;
  readonly elapsedMs: number;
  readonly imagesPerSecond: number;
  readonly runMs: Summary;
  /** Cores' worth of CPU that other processes used during the step (noise indicator). */
  readonly otherCores: number;
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
  const inputName = session.inputNames[0]!;
  const outputName = session.outputNames[0]!;
  const send = (value: unknown) => process.stdout.write(`${JSON.stringify(value)}\n`);
  send({ ready: true, loadMs: performance.now() - t0 });
  try {
    for await (const line of createInterface({ input: process.stdin })) {
      if (line.trim() === "") continue;
      const step = JSON.parse(line) as OrtStep;
      if (step.batch > available) throw new Error(`batch ${step.batch} > ${available} images`);
      const shape = [step.batch, SIZE, SIZE, 3];
      const tensor = new ort.Tensor("uint8", pixels.subarray(0, step.batch * IMAGE_BYTES), shape);
      let machine = 0;
      let own = 0;
      const r = await runLoad({
        concurrency: 1,
        imagesPerCall: step.batch,
        warmupCalls: step.warmupCalls,
        calls: step.calls,
        countFromStart: step.countFromStart ?? false,
        onWindow: (edge) => {
          const m = machineBusySeconds();
          const o = ownCpuSeconds();
          machine = edge === "start" ? m : m - machine;
          own = edge === "start" ? o : o - own;
        },
        call: async () => {
          const out = await session.run({ [inputName]: tensor }, [outputName]);
          const data = out[outputName]?.data;
          if (!(data instanceof Float32Array) || data.length === 0) throw new Error("no output");
        },
      });
      const result: OrtStepResult = {
        batch: step.batch,
        calls: r.calls,
        elapsedMs: r.elapsedMs,
        imagesPerSecond: r.imagesPerSecond,
        runMs: summarize(r.rttMs),
        otherCores: Math.max(0, machine - own) / (r.elapsedMs / 1000),
      };
      send(result);
    }
    send({ done: true, peakRssMiB: memoryMiB(process.pid).peakRss });
  } finally {
    await session.release();
  }
}

if (import.meta.main) {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : error}\n`);
    process.exitCode = 1;
  });
}
