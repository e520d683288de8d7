import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { generateVitModel } from "./generate.ts";
import { embed, openSession } from "./ort-run.ts";
import { syntheticBatch } from "./synthetic-images.ts";

// Debian's numpy/onnx belong to /usr/bin/python3; a plain `python3` may be another interpreter.
const PYTHON = "/usr/bin/python3";
const SCRIPT = fileURLToPath(new URL("./reference_forward.py", import.meta.url));

function pythonMissing(): string | null {
  const probe = spawnSync(PYTHON, ["-c", "import numpy, onnx"], { encoding: "utf8" });
  if (probe.error) return `${PYTHON} not runnable (${probe.error.message})`;
  if (probe.status !== 0)
    return `${PYTHON} lacks numpy/onnx: ${probe.stderr.trim().split("\n").at(-1)}`;
  return null;
}
const missing = pythonMissing();

function reference(model: string, images?: string): { checked: boolean; embeddings?: number[][] } {
  const run = spawnSync(PYTHON, [SCRIPT, model, ...(images ? [images] : [])], {
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  if (run.status !== 0) throw new Error(`reference_forward.py failed: ${run.stderr}`);
  return JSON.parse(run.stdout);
}

describe("independent reference (onnx.checker + numpy float64 forward)", () => {
  const dir = mkdtempSync(join(tmpdir(), "vit-ref-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const calibrate of [true, false]) {
    it(`${calibrate ? "calibrated" : "uncalibrated"} vit-tiny matches onnxruntime`, async (ctx) => {
      if (missing) {
        console.warn(`skipping reference comparison: ${missing}`);
        ctx.skip(`reference comparison needs numpy and onnx: ${missing}`);
      }
      const model = await generateVitModel("vit-tiny", { seed: 11, calibrate });
      const modelPath = join(dir, `tiny-${calibrate}.onnx`);
      writeFileSync(modelPath, model);
      const count = 6; // one of each pattern
      const images = syntheticBatch(4242, count);
      const imagesPath = join(dir, "images.bin");
      writeFileSync(imagesPath, images);

      const expected = reference(modelPath, imagesPath);
      expect(expected.checked).toBe(true);
      const session = await openSession(model, 2);
      const actual = await embed(session, images);
      await session.release();

      expect(expected.embeddings).toHaveLength(count);
      let maxDiff = 0;
      expected.embeddings!.forEach((row, i) => {
        expect(row).toHaveLength(actual.dim);
        row.forEach((value, j) => {
          maxDiff = Math.max(maxDiff, Math.abs(value - actual.data[i * actual.dim + j]!));
        });
      });
      expect(maxDiff).toBeLessThanOrEqual(1e-4);
    });
  }
});
