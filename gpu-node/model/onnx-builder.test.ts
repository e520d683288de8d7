import { equals, fromBinary, toBinary } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ModelProtoSchema } from "../../proto/gen/onnx/onnx_pb.js";
import { attr, DataType, GraphBuilder, serialiseModel } from "./onnx-builder.ts";
import { VIT_CONFIGS } from "./vit-config.ts";
import { buildVitGraph, finishUncalibrated } from "./vit-graph.ts";

describe("serialiseModel", () => {
  it("parses back to the same message as protobuf-es's toBinary", () => {
    const model = finishUncalibrated(buildVitGraph(VIT_CONFIGS["vit-tiny"], 1)).toModel({
      graphName: "g",
      producerName: "test",
      metadata: { a: "1" },
    });
    const spliced = serialiseModel(model);
    const plain = toBinary(ModelProtoSchema, model);
    expect(spliced.length).toBe(plain.length);
    expect(
      equals(
        ModelProtoSchema,
        fromBinary(ModelProtoSchema, spliced),
        fromBinary(ModelProtoSchema, plain),
      ),
    ).toBe(true);
  });
});

describe("GraphBuilder", () => {
  it("rejects duplicate names, unknown inputs and wrongly sized initializers", () => {
    const b = new GraphBuilder();
    const x = b.input("x", DataType.FLOAT, ["batch", 4]);
    expect(() => b.input("x", DataType.FLOAT, [1])).toThrow(/duplicate/);
    expect(() => b.node("Relu", ["y"], "z")).toThrow(/unknown input y/);
    expect(() => b.initializer("w", new Float32Array(3), [2, 2])).toThrow(/3 values/);
    b.node("Relu", [x], "r", { alpha: attr.float(0) });
    expect(() => b.output("nope", DataType.FLOAT, [1])).toThrow(/unknown output/);
  });

  it("writes an attribute whose value is zero (the checker needs exactly one value)", () => {
    const b = new GraphBuilder();
    const x = b.input("x", DataType.FLOAT, [2, 3]);
    b.node("Softmax", [x], "y", { axis: attr.int(0) });
    b.output("y", DataType.FLOAT, [2, 3]);
    const parsed = fromBinary(
      ModelProtoSchema,
      serialiseModel(b.toModel({ graphName: "g", producerName: "t" })),
    );
    expect(parsed.graph?.node[0]?.attribute[0]?.i).toBe(0n);
  });
});
