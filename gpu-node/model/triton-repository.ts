/** Writes a Triton model repository entry for the gpu-node: config.pbtxt (batching, GPU instances, the ONNX Runtime backend, optional TensorRT FP16) and the ONNX file in version folder 1. */

import { copyFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { INPUT_SIZE } from "../../imaging/clip.ts";
import type { InputLayout } from "../backends/backend.ts";
import { INPUT_NAME, OUTPUT_NAME } from "./vit-graph.ts";

export interface TritonModelConfigOptions {
  /** The model's folder name in the repository, which is its name in Triton. */
  readonly name: string;
  readonly layout: InputLayout;
  readonly inputName?: string;
  readonly outputName?: string;
  readonly dimension?: number;
  /** The largest request Triton accepts; its dynamic batcher merges requests up to this. */
  readonly maxBatchSize: number;
  /** How long Triton's dynamic batcher holds a request for company, in µs. */
  readonly maxQueueDelayUs: number;
  /** Model instances on each GPU (2 lets one copy inputs while the other computes). */
  readonly instances: number;
  /** ONNX Runtime's TensorRT execution provider in FP16 (engines built at load, cached). */
  readonly tensorrtFp16: boolean;
}

export const DEFAULT_TRITON_MODEL: TritonModelConfigOptions = {
  name: "openclip_vit_b32_uint8",
  layout: "uint8-nhwc",
  maxBatchSize: 32,
  maxQueueDelayUs: 500,
  instances: 1,
  tensorrtFp16: false,
};

/** Where TensorRT engines are cached inside the Triton container (mount it to keep them). */
export const TRT_CACHE_DIR = "/tmp/triton-trt-cache";

/** config.pbtxt text (protobuf text format, Triton's model_config.proto). */
export function tritonModelConfig(o: TritonModelConfigOptions): string {
  const uint8 = o.layout === "uint8-nhwc";
  const dims = uint8 ? [INPUT_SIZE, INPUT_SIZE, 3] : [3, INPUT_SIZE, INPUT_SIZE];
  const dataType = uint8 ? "TYPE_UINT8" : "TYPE_FP32";
  const input = o.inputName ?? INPUT_NAME;
  const lines = [
    `# ${uint8 ? "UINT8 NHWC input, OpenCLIP normalisation inside the graph" : "FP32 NCHW input, normalised by the client (the seed's layout)"};`,
    "# L2-normalised FP32 embedding out. Written by `npm run triton:repo`: change the options there.",
    `name: "${o.name}"`,
    `backend: "onnxruntime"`,
    `max_batch_size: ${o.maxBatchSize}`,
    "input [",
    "  {",
    `    name: "${input}"`,
    `    data_type: ${dataType}`,
    `    format: ${uint8 ? "FORMAT_NHWC" : "FORMAT_NCHW"}`,
    `    dims: [ ${dims.join(", ")} ]`,
    "  }",
    "]",
    "output [",
    "  {",
    `    name: "${o.outputName ?? OUTPUT_NAME}"`,
    "    data_type: TYPE_FP32",
    `    dims: [ ${o.dimension ?? 512} ]`,
    "  }",
    "]",
    "instance_group [",
    "  {",
    `    count: ${o.instances}`,
    "    kind: KIND_GPU",
    "  }",
    "]",
    "# Merge concurrent requests into GPU batches, waiting at most this long for company",
    "# (preferred_batch_size is left out on purpose: it rarely helps a model like this).",
    "# Requests carry their deadline as the `timeout` parameter: past it, Triton drops them",
    "# from the queue instead of computing answers nobody waits for.",
    "dynamic_batching {",
    `  max_queue_delay_microseconds: ${o.maxQueueDelayUs}`,
    "  default_queue_policy {",
    "    timeout_action: REJECT",
    "    allow_timeout_override: true",
    "  }",
    "}",
  ];
  const trt = [
    "optimization {",
    "  execution_accelerators {",
    "    gpu_execution_accelerator [",
    "      {",
    '        name: "tensorrt"',
    '        parameters { key: "precision_mode" value: "FP16" }',
    '        parameters { key: "max_workspace_size_bytes" value: "2147483648" }',
    '        parameters { key: "trt_engine_cache_enable" value: "1" }',
    `        parameters { key: "trt_engine_cache_path" value: "${TRT_CACHE_DIR}" }`,
    "      }",
    "    ]",
    "  }",
    "}",
    "# Build the engines while the model loads (minutes the first time), not on the first",
    "# request: ModelReady turns true only once they exist.",
    "model_warmup [",
    ...[1, o.maxBatchSize].flatMap((n, i, all) => [
      "  {",
      `    name: "zeros_batch_${n}"`,
      `    batch_size: ${n}`,
      "    inputs {",
      `      key: "${input}"`,
      `      value: { data_type: ${dataType} dims: [ ${dims.join(", ")} ] zero_data: true }`,
      "    }",
      i === all.length - 1 ? "  }" : "  },",
    ]),
    "]",
  ];
  if (o.tensorrtFp16) {
    lines.push(
      "# TensorRT FP16 through ONNX Runtime (opt-in: `npm run triton:repo -- --tensorrt-fp16`).",
    );
    lines.push(...trt);
  } else {
    lines.push(
      "# Opt-in TensorRT FP16 (`npm run triton:repo -- --tensorrt-fp16` writes this uncommented):",
      ...trt.map((l) => `# ${l}`),
    );
  }
  return `${lines.join("\n")}\n`;
}

/** Writes `<repository>/<name>/config.pbtxt` and `<repository>/<name>/1/model.onnx`. */
export async function writeTritonModel(
  repository: string,
  config: TritonModelConfigOptions,
  onnx: { readonly bytes: Uint8Array } | { readonly path: string },
): Promise<{ readonly configPath: string; readonly modelPath: string }> {
  const dir = join(repository, config.name);
  const modelPath = join(dir, "1", "model.onnx");
  const configPath = join(dir, "config.pbtxt");
  await mkdir(join(dir, "1"), { recursive: true });
  if ("bytes" in onnx) await writeFile(modelPath, onnx.bytes);
  else await copyFile(onnx.path, modelPath);
  await writeFile(configPath, tritonModelConfig(config));
  return { configPath, modelPath };
}
