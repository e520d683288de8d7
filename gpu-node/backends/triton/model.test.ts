import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ModelMetadataResponseSchema } from "../../../proto/gen/inference/grpc_service_pb.js";
import { DataType, ModelConfigSchema } from "../../../proto/gen/inference/model_config_pb.js";
import { describeTritonModel, incompatibility, inputShape, TritonModelError } from "./model.ts";

const meta = (datatype: string, shape: number[], outputs = [["embedding", "FP32", [-1, 512]]]) =>
  create(ModelMetadataResponseSchema, {
    name: "m",
    versions: ["1", "3", "2"],
    platform: "onnxruntime_onnx",
    inputs: [{ name: "image", datatype, shape: shape.map(BigInt) }],
    outputs: outputs.map(([name, dt, s]) => ({
      name: name as string,
      datatype: dt as string,
      shape: (s as number[]).map(BigInt),
    })),
  });
const config = (maxBatchSize: number) =>
  create(ModelConfigSchema, { name: "m", maxBatchSize, backend: "onnxruntime" });

describe("describeTritonModel", () => {
  it("reads our UINT8 NHWC model: layout, limit, newest version, output size", () => {
    const spec = describeTritonModel("m", meta("UINT8", [-1, 224, 224, 3]), config(16), 32);
    expect(spec).toMatchObject({
      layout: "uint8-nhwc",
      datatype: "UINT8",
      maxImagesPerRequest: 16,
      batched: true,
      version: "3",
      dimension: 512,
      inputName: "image",
      outputName: "embedding",
    });
    expect(inputShape(spec, 5)).toEqual([5n, 224n, 224n, 3n]);
  });

  it("reads the seed's FP32 [3,224,224] model with max_batch_size 32", () => {
    const spec = describeTritonModel("m", meta("FP32", [-1, 3, 224, 224]), config(32), 8);
    expect(spec).toMatchObject({
      layout: "float32-nchw",
      datatype: "FP32",
      maxImagesPerRequest: 32,
    });
    expect(inputShape(spec, 2)).toEqual([2n, 3n, 224n, 224n]);
  });

  it("sends one image per request to a model without a batch dimension", () => {
    const spec = describeTritonModel("m", meta("FP32", [3, 224, 224]), config(0), 32);
    expect(spec).toMatchObject({ batched: false, maxImagesPerRequest: 1 });
    expect(inputShape(spec, 1)).toEqual([3n, 224n, 224n]);
  });

  it("falls back to the gpu-node's batch when there is no ModelConfig", () => {
    const spec = describeTritonModel("m", meta("UINT8", [-1, 224, 224, 3]), undefined, 24);
    expect(spec.maxImagesPerRequest).toBe(24);
  });

  it.each([
    ["a float NHWC input", meta("FP32", [-1, 224, 224, 3]), /expected UINT8 \[N,224,224,3\]/],
    ["a wrong size", meta("UINT8", [-1, 256, 256, 3]), /UINT8 \[-1,256,256,3\]/],
    ["a 2-d input", meta("UINT8", [-1, 150528]), /has shape \[-1,150528\]/],
    [
      "an FP16 output",
      meta("UINT8", [-1, 224, 224, 3], [["embedding", "FP16", [-1, 512]]]),
      /is FP16; expected FP32/,
    ],
    [
      "two unnamed outputs",
      meta(
        "UINT8",
        [-1, 224, 224, 3],
        [
          ["a", "FP32", [-1, 512]],
          ["b", "FP32", [-1, 512]],
        ],
      ),
      /outputs \[a, b\]/,
    ],
  ])("refuses %s with a clear message", (_name, m, message) => {
    expect(() => describeTritonModel("m", m, config(8), 8)).toThrow(TritonModelError);
    expect(() => describeTritonModel("m", m, config(8), 8)).toThrow(message);
  });

  it("accepts a new batch limit after a restart but not a new layout", () => {
    const a = describeTritonModel("m", meta("UINT8", [-1, 224, 224, 3]), config(32), 32);
    const b = describeTritonModel("m", meta("UINT8", [-1, 224, 224, 3]), config(4), 32);
    const c = describeTritonModel("m", meta("FP32", [-1, 3, 224, 224]), config(32), 32);
    expect(incompatibility(a, b)).toBeNull();
    expect(incompatibility(a, c)).toMatch(/layout changed from uint8-nhwc to float32-nchw/);
  });

  it("reads DataType values from the config enum as Triton numbers them", () => {
    expect([DataType.TYPE_UINT8, DataType.TYPE_FP16, DataType.TYPE_FP32]).toEqual([2, 10, 11]);
  });
});
