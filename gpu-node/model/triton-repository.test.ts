// The Triton model repository: the committed config.pbtxt is what the writer produces, the
// writer's command puts a loadable model of the right layout beside it.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import * as ort from "onnxruntime-node";
import { afterAll, describe, expect, it } from "vitest";
import { detectLayout } from "../backends/input-layout.ts";
import { DEFAULT_TRITON_MODEL, tritonModelConfig } from "./triton-repository.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const run = promisify(execFile);
const temp = mkdtemp(join(tmpdir(), "triton-repo-"));
afterAll(async () => rm(await temp, { recursive: true, force: true }));

/** Brackets and braces of protobuf text format, outside comments, must balance. */
function balanced(text: string): boolean {
  let depth = 0;
  for (const line of text.split("\n")) {
    for (const ch of line.replace(/#.*$/, "")) {
      if (ch === "{" || ch === "[") depth++;
      if (ch === "}" || ch === "]") depth--;
      if (depth < 0) return false;
    }
  }
  return depth === 0;
}

describe("Triton model repository", () => {
  it("the committed config.pbtxt is the writer's default output", async () => {
    const committed = await readFile(
      join(ROOT, "gpu-node/model/triton/model_repository/openclip_vit_b32_uint8/config.pbtxt"),
      "utf8",
    );
    expect(committed).toBe(tritonModelConfig(DEFAULT_TRITON_MODEL));
    expect(balanced(committed)).toBe(true);
    expect(committed).toMatch(/^max_batch_size: 32$/m);
    expect(committed).toMatch(
      /^ {4}data_type: TYPE_UINT8\n {4}format: FORMAT_NHWC\n {4}dims: \[ 224, 224, 3 \]$/m,
    );
    expect(committed).toMatch(/^ {4}kind: KIND_GPU$/m);
    expect(committed).toMatch(/^ {2}max_queue_delay_microseconds: 500$/m);
    expect(committed).toMatch(/^backend: "onnxruntime"$/m);
    // TensorRT is opt-in: present, but commented out.
    expect(committed).toMatch(/^# {9}parameters \{ key: "precision_mode" value: "FP16" \}$/m);
    expect(committed).not.toMatch(/^optimization/m);
  });

  it("writes the seed's FP32 layout and the TensorRT FP16 accelerator when asked", () => {
    const text = tritonModelConfig({
      ...DEFAULT_TRITON_MODEL,
      name: "openclip_vit_b32",
      layout: "float32-nchw",
      tensorrtFp16: true,
      instances: 2,
    });
    expect(balanced(text)).toBe(true);
    expect(text).toMatch(/^name: "openclip_vit_b32"$/m);
    expect(text).toMatch(
      /data_type: TYPE_FP32\n {4}format: FORMAT_NCHW\n {4}dims: \[ 3, 224, 224 \]/,
    );
    expect(text).toMatch(/^ {4}count: 2$/m);
    expect(text).toMatch(/^optimization \{$/m);
    expect(text).toMatch(
      /name: "tensorrt"\n {8}parameters \{ key: "precision_mode" value: "FP16" \}/,
    );
    expect(text).toMatch(/^model_warmup \[$/m);
  });

  it.each([
    ["uint8-nhwc", "vit-tiny", "openclip_vit_b32_uint8", "uint8"],
    ["float32-nchw", "vit-tiny", "openclip_vit_b32", "float32"],
    ["uint8-nhwc", "vit-tiny-fp16", "openclip_vit_b32_uint8_fp16", "uint8"],
  ])(
    "`npm run triton:repo` writes a loadable %s model (%s) and its config",
    async (layout, model, name, type) => {
      const out = await temp;
      await run(process.execPath, [
        join(ROOT, "gpu-node/model/write-triton-repository.ts"),
        "--model",
        model,
        "--layout",
        layout,
        "--out",
        out,
        "--cache-dir",
        join(ROOT, ".cache"),
      ]);
      const config = await readFile(join(out, name, "config.pbtxt"), "utf8");
      expect(config).toMatch(new RegExp(`^name: "${name}"$`, "m"));
      const session = await ort.InferenceSession.create(join(out, name, "1", "model.onnx"));
      try {
        const input = session.inputMetadata[0]!;
        expect(input.isTensor && input.type).toBe(type);
        expect(input.isTensor && detectLayout(input.name, input.type, input.shape)).toBe(layout);
        expect(session.outputNames).toEqual(["embedding"]);
      } finally {
        await session.release();
      }
    },
  );

  it("refuses to convert an fp16 model to the FP32 NCHW layout", async () => {
    const out = await temp;
    await expect(
      run(process.execPath, [
        join(ROOT, "gpu-node/model/write-triton-repository.ts"),
        "--model",
        "vit-tiny-fp16",
        "--layout",
        "float32-nchw",
        "--out",
        out,
      ]),
    ).rejects.toThrow(/converts fp32 models only/);
  });
});
