/** Reads a Triton model's metadata and configuration and decides how the gpu-node talks to it: tensor names, layout, batching limit, output size. */
import type { ModelMetadataResponse } from "../../../proto/gen/inference/grpc_service_pb.js";
import type { ModelConfig } from "../../../proto/gen/inference/model_config_pb.js";
import { IMAGE_BYTES, INPUT_SIZE, type InputLayout } from "../backend.ts";
import { detectLayout } from "../input-layout.ts";

/** What every request to this model needs, fixed at start and checked again on reconnect. */
export interface TritonModelSpec {
  readonly name: string;
  /** The version Triton serves (the newest listed in its metadata), e.g. "1". */
  readonly version: string;
  readonly platform: string;
  readonly inputName: string;
  readonly outputName: string;
  readonly layout: InputLayout;
  /** KServe v2 datatype of the input: "UINT8" or "FP32". */
  readonly datatype: "UINT8" | "FP32";
  /** Images one request may carry (Triton's max_batch_size, or 1 for a model without a batch dimension). */
  readonly maxImagesPerRequest: number;
  /** False when the model has no batch dimension: each request is one image of shape [3,224,224]. */
  readonly batched: boolean;
  /** Output floats per image, or 0 when the model declares a variable size (learnt from a probe). */
  readonly dimension: number;
}

/** The model cannot be served as it is: a configuration problem, not an outage. */
export class TritonModelError extends Error {
  override name = "TritonModelError";
}

/** Converts int64 shapes (bigint on the wire) once, here; -1 stays -1. */
export function dimsOf(shape: readonly bigint[]): number[] {
  return shape.map((d) => {
    const n = Number(d);
    if (!Number.isSafeInteger(n)) throw new TritonModelError(`dimension ${d} is out of range`);
    return n;
  });
}

/** Bytes of one image in the layout's element type. */
export function bytesPerImage(layout: InputLayout): number {
  return layout === "uint8-nhwc" ? IMAGE_BYTES : IMAGE_BYTES * 4;
}

/**
 * `config` may be missing (a KServe server without ModelConfig): then a leading -1 in the
 * metadata shape means "batched, limit unknown" and `fallbackMaxBatch` applies.
 */
export function describeTritonModel(
  requested: string,
  metadata: ModelMetadataResponse,
  config: ModelConfig | undefined,
  fallbackMaxBatch: number,
): TritonModelSpec {
  const where = `triton model '${requested}'`;
  if (metadata.inputs.length !== 1) {
    throw new TritonModelError(
      `${where} has ${metadata.inputs.length} inputs (${metadata.inputs.map((i) => i.name).join(", ")}); expected one image tensor`,
    );
  }
  const input = metadata.inputs[0]!;
  const output =
    metadata.outputs.length === 1
      ? metadata.outputs[0]
      : metadata.outputs.find((o) => o.name === "embedding");
  if (output === undefined) {
    throw new TritonModelError(
      `${where} has outputs [${metadata.outputs.map((o) => o.name).join(", ")}]; expected one, or one named 'embedding'`,
    );
  }
  if (output.datatype !== "FP32") {
    throw new TritonModelError(
      `${where} output '${output.name}' is ${output.datatype}; expected FP32 (keep FP16 inside the model: TensorRT's FP16 mode does)`,
    );
  }
  const maxBatch = config?.maxBatchSize;
  const shape = dimsOf(input.shape);
  let batched = true;
  let perImage = shape.slice(1);
  let maxImagesPerRequest: number;
  if (maxBatch !== undefined && maxBatch > 0) {
    // Triton reports a batching model's shapes with the batch dimension (-1) in front.
    maxImagesPerRequest = maxBatch;
  } else if (shape.length === 4 && (shape[0] === -1 || shape[0] === 1)) {
    // No Triton batching (max_batch_size 0, or no config), but a batch dimension in the model.
    maxImagesPerRequest = shape[0] === 1 ? 1 : fallbackMaxBatch;
  } else {
    // No batch dimension at all: one image per request.
    batched = false;
    perImage = shape;
    maxImagesPerRequest = 1;
  }
  if (perImage.length !== 3) {
    throw new TritonModelError(
      `${where} input '${input.name}' has shape [${shape.join(",")}]; expected [N,${INPUT_SIZE},${INPUT_SIZE},3] or [N,3,${INPUT_SIZE},${INPUT_SIZE}]`,
    );
  }
  let layout: InputLayout;
  try {
    layout = detectLayout(input.name, input.datatype, [-1, ...perImage]);
  } catch (err) {
    throw new TritonModelError(`${where}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const outDims = dimsOf(output.shape);
  const last = outDims[outDims.length - 1];
  const versions = [...metadata.versions].sort(
    (a, b) => Number(b) - Number(a) || b.localeCompare(a),
  );
  return {
    name: metadata.name || requested,
    version: versions[0] ?? "",
    platform: metadata.platform || config?.backend || config?.platform || "",
    inputName: input.name,
    outputName: output.name,
    layout,
    datatype: layout === "uint8-nhwc" ? "UINT8" : "FP32",
    maxImagesPerRequest,
    batched,
    dimension: last !== undefined && last > 0 ? last : 0,
  };
}

/** The request shape for `count` images. */
export function inputShape(spec: TritonModelSpec, count: number): bigint[] {
  const image =
    spec.layout === "uint8-nhwc" ? [INPUT_SIZE, INPUT_SIZE, 3] : [3, INPUT_SIZE, INPUT_SIZE];
  return (spec.batched ? [count, ...image] : image).map(BigInt);
}

/**
 * Why a model that came back after a restart cannot be used by this process: the batches are
 * already packed for the old layout and sized for the old output. A changed batch limit is fine.
 */
export function incompatibility(before: TritonModelSpec, after: TritonModelSpec): string | null {
  if (before.layout !== after.layout) {
    return `input layout changed from ${before.layout} to ${after.layout}`;
  }
  if (before.inputName !== after.inputName || before.outputName !== after.outputName) {
    return `tensor names changed from ${before.inputName}→${before.outputName} to ${after.inputName}→${after.outputName}`;
  }
  if (after.dimension !== 0 && before.dimension !== 0 && after.dimension !== before.dimension) {
    return `output dimension changed from ${before.dimension} to ${after.dimension}`;
  }
  if (before.batched !== after.batched) return "the batch dimension was added or removed";
  return null;
}
