/** CLI: writes a model into a Triton model repository (config.pbtxt + 1/model.onnx): the generated vit-b32 by default, a vit-tiny, or an exported OpenCLIP ONNX file. */

import { mkdir, stat, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import * as ort from "onnxruntime-node";
import type { InputLayout } from "../backends/backend.ts";
import { detectLayout } from "../backends/input-layout.ts";
import { toFloat32NchwInput } from "./float32-input.ts";
import { generateVitModel } from "./generate.ts";
import { ensureModel } from "./model-cache.ts";
import {
  DEFAULT_TRITON_MODEL,
  type TritonModelConfigOptions,
  tritonModelConfig,
  writeTritonModel,
} from "./triton-repository.ts";
import { parseBuiltInModel } from "./vit-config.ts";

const ROOT = resolve(import.meta.dirname, "../..");
export const DEFAULT_REPOSITORY = join(ROOT, "gpu-node/model/triton/model_repository");

const USAGE = `usage: npm run triton:repo -- [options]
  --model M              vit-b32 (default) | vit-tiny | either with -fp16 (generated, seeded) | PATH.onnx (e.g. from
                         export_openclip.py; its input decides the layout)
  --layout L             uint8-nhwc (default) | float32-nchw (the seed's FP32 [3,224,224] input;
                         generated models only)
  --out DIR              the model repository (default gpu-node/model/triton/model_repository)
  --name NAME            model name (default openclip_vit_b32_uint8, or openclip_vit_b32 for FP32)
  --max-batch-size N     Triton's max_batch_size (default 32)
  --max-queue-delay-us N dynamic batching delay (default 500)
  --instances N          model instances per GPU (default 1)
  --tensorrt-fp16        enable ONNX Runtime's TensorRT execution provider in FP16
  --config-only          write config.pbtxt only
  --cache-dir DIR        where generated models are cached (default .cache)`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: "string", default: "vit-b32" },
      layout: { type: "string" },
      out: { type: "string", default: DEFAULT_REPOSITORY },
      name: { type: "string" },
      "max-batch-size": { type: "string", default: "32" },
      "max-queue-delay-us": { type: "string", default: "500" },
      instances: { type: "string", default: "1" },
      "tensorrt-fp16": { type: "boolean", default: false },
      "config-only": { type: "boolean", default: false },
      "cache-dir": { type: "string", default: join(ROOT, ".cache") },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const int = (flag: string, text: string, min: number) => {
    const n = Number(text);
    if (!Number.isSafeInteger(n) || n < min)
      throw new Error(`--${flag} must be an integer ≥ ${min}`);
    return n;
  };
  const builtIn = parseBuiltInModel(values.model);
  const generated = builtIn !== undefined;
  let layout: InputLayout;
  if (generated) {
    const l = values.layout ?? "uint8-nhwc";
    if (l !== "uint8-nhwc" && l !== "float32-nchw") throw new Error(`bad --layout ${l}\n${USAGE}`);
    if (l === "float32-nchw" && builtIn.precision !== "fp32") {
      throw new Error(`--layout float32-nchw converts fp32 models only, not ${values.model}`);
    }
    layout = l;
  } else {
    layout = await layoutOf(values.model);
    if (values.layout !== undefined && values.layout !== layout) {
      throw new Error(`${values.model} takes ${layout}; --layout only converts generated models`);
    }
  }
  const config: TritonModelConfigOptions = {
    ...DEFAULT_TRITON_MODEL,
    name:
      values.name ??
      (layout === "float32-nchw"
        ? "openclip_vit_b32"
        : builtIn?.precision === "fp16"
          ? `${DEFAULT_TRITON_MODEL.name}_fp16`
          : DEFAULT_TRITON_MODEL.name),
    layout,
    maxBatchSize: int("max-batch-size", values["max-batch-size"], 1),
    maxQueueDelayUs: int("max-queue-delay-us", values["max-queue-delay-us"], 0),
    instances: int("instances", values.instances, 1),
    tensorrtFp16: values["tensorrt-fp16"],
  };
  const started = performance.now();
  if (values["config-only"]) {
    const dir = join(values.out, config.name);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "config.pbtxt"), tritonModelConfig(config));
    console.log(join(dir, "config.pbtxt"));
    return;
  }
  const spec = values.model;
  let onnx: { bytes: Uint8Array } | { path: string };
  if (!generated) onnx = { path: resolve(spec) };
  else if (layout === "uint8-nhwc") {
    onnx = { path: (await ensureModel(spec, values["cache-dir"])).path };
  } else {
    // Only fp32 models reach here (checked with --layout above).
    onnx = { bytes: toFloat32NchwInput(await generateVitModel(builtIn.config)) };
  }
  const { configPath, modelPath } = await writeTritonModel(values.out, config, onnx);
  const { size } = await stat(modelPath);
  console.log(
    `${configPath}\n${modelPath}\n  ${(size / 1e6).toFixed(1)} MB, ${layout}, ${((performance.now() - started) / 1000).toFixed(1)} s`,
  );
}

/** The layout an ONNX file takes, read from its input declaration by ONNX Runtime. */
async function layoutOf(path: string): Promise<InputLayout> {
  const session = await ort.InferenceSession.create(resolve(path));
  try {
    const input = session.inputMetadata[0];
    if (!input?.isTensor) throw new Error(`${path} has no tensor input`);
    return detectLayout(input.name, input.type, input.shape);
  } finally {
    await session.release();
  }
}

if (import.meta.main) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  });
}
