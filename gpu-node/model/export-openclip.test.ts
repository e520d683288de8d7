// export_openclip.py's wrapping logic, tested with Debian's python3-torch on stand-in modules
// (real OpenCLIP weights cannot be fetched here), and its ONNX output run by onnxruntime-node
// exactly as the gpu-node and the test double load models.
import { execFile, execFileSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { detectLayout } from "../backends/input-layout.ts";
import { rowCosines } from "./testing/cosine.ts";

const PYTHON = "/usr/bin/python3";
const TEST = resolve(import.meta.dirname, "test_export_openclip.py");
const hasTorch = (() => {
  try {
    execFileSync(PYTHON, ["-c", "import torch, onnx, PIL"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();
if (!hasTorch) {
  console.warn(
    "skipping export_openclip tests: /usr/bin/python3 lacks torch, onnx or PIL (apt-get install python3-torch python3-onnx python3-pil)",
  );
}

const dir = mkdtemp(join(tmpdir(), "export-openclip-"));
afterAll(async () => rm(await dir, { recursive: true, force: true }));

describe.skipIf(!hasTorch)("export_openclip.py (stand-in visual tower, Debian torch)", () => {
  it("its unit tests pass, and its ONNX export runs in onnxruntime-node as a UINT8 NHWC model", async () => {
    const out = await dir;
    const { stderr } = await promisify(execFile)(PYTHON, ["-m", "unittest", "-v", TEST], {
      env: { ...process.env, EXPORT_TEST_DIR: out, PYTHONDONTWRITEBYTECODE: "1" },
    });
    expect(stderr).toMatch(/^OK$/m);
    expect(stderr).toMatch(/test_refuses_openai_weights_without_quickgelu \(.*\) \.\.\. ok/);

    const session = await ort.InferenceSession.create(join(out, "model.onnx"));
    try {
      const input = session.inputMetadata[0]!;
      expect(input.isTensor && detectLayout(input.name, input.type, input.shape)).toBe(
        "uint8-nhwc",
      );
      const pixels = new Uint8Array(await readFile(join(out, "input.bin")));
      const expected = new Float32Array(
        new Uint8Array(await readFile(join(out, "expected.bin"))).buffer,
      );
      const result = await session.run({
        image: new ort.Tensor("uint8", pixels, [3, 224, 224, 3]),
      });
      const got = result.embedding!.data as Float32Array;
      expect(got.length).toBe(3 * 512);
      let max = 0;
      for (let i = 0; i < got.length; i++) max = Math.max(max, Math.abs(got[i]! - expected[i]!));
      expect(max).toBeLessThan(1e-5);
    } finally {
      await session.release();
    }

    // --precision fp16: the same ends (UINT8 NHWC in, FLOAT out), within 0.999 of fp32.
    const half = await ort.InferenceSession.create(join(out, "model_fp16.onnx"));
    try {
      const input = half.inputMetadata[0]!;
      expect(input.isTensor && detectLayout(input.name, input.type, input.shape)).toBe(
        "uint8-nhwc",
      );
      const pixels = new Uint8Array(await readFile(join(out, "input_fp16.bin")));
      const reference = new Float32Array(
        new Uint8Array(await readFile(join(out, "expected_fp32_of_fp16.bin"))).buffer,
      );
      const result = await half.run({ image: new ort.Tensor("uint8", pixels, [3, 224, 224, 3]) });
      expect(result.embedding!.type).toBe("float32");
      const got = result.embedding!.data as Float32Array;
      expect(got.length).toBe(3 * 512);
      expect(Math.min(...rowCosines(got, reference, 512))).toBeGreaterThanOrEqual(0.999);
    } finally {
      await half.release();
    }
  }, 120_000);
});
