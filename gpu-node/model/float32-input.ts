/** Rewrites one of our generated models to take the seed's Triton input (FP32 [N,3,224,224], already normalised) instead of UINT8 NHWC: same weights, normalisation moved out of the graph. */

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  ModelProtoSchema,
  StringStringEntryProtoSchema,
  TensorProto_DataType,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
} from "../../proto/gen/onnx/onnx_pb.js";
import { BATCH_DIM, INPUT_NAME } from "./vit-graph.ts";

/** The in-graph preprocessing of vit-graph.ts: transposed, cast, centred, scaled. */
const PRE_NODES = ["pre.nchw", "pre.float", "pre.centred", "pre.normalised"];
const PRE_INITIALIZERS = ["pre.mean_255", "pre.inv_std_255"];
const NORMALISED = "pre.normalised";

/**
 * `uint8Model` must come from generateVitModel. The result feeds the normalised FP32 tensor
 * straight into the patch embedding, as the seed's exported OpenCLIP model does, so the gpu-node
 * (or Triton's client) normalises on the CPU. Outputs are the same up to float rounding.
 */
export function toFloat32NchwInput(uint8Model: Uint8Array): Uint8Array {
  const model = fromBinary(ModelProtoSchema, uint8Model);
  const graph = model.graph;
  const input = graph?.input.find((i) => i.name === INPUT_NAME);
  const tensorType = input?.type?.value.case === "tensorType" ? input.type.value.value : undefined;
  if (!graph || !tensorType || tensorType.elemType !== TensorProto_DataType.UINT8) {
    throw new Error(`not a generated UINT8 model: no UINT8 input '${INPUT_NAME}'`);
  }
  const found = graph.node.filter((n) => n.output.some((o) => PRE_NODES.includes(o)));
  if (found.length !== PRE_NODES.length) {
    throw new Error("not a generated model: its preprocessing nodes are missing");
  }
  graph.node = graph.node
    .filter((n) => !found.includes(n))
    .map((n) => {
      n.input = n.input.map((name) => (name === NORMALISED ? INPUT_NAME : name));
      return n;
    });
  graph.initializer = graph.initializer.filter((t) => !PRE_INITIALIZERS.includes(t.name));
  tensorType.elemType = TensorProto_DataType.FLOAT;
  const size = Number(tensorType.shape?.dim[1]?.value.value ?? 224);
  tensorType.shape = create(TensorShapeProtoSchema, {
    dim: [BATCH_DIM, 3, size, size].map((d) =>
      create(TensorShapeProto_DimensionSchema, {
        value:
          typeof d === "number"
            ? { case: "dimValue", value: BigInt(d) }
            : { case: "dimParam", value: d },
      }),
    ),
  });
  model.metadataProps = model.metadataProps
    .filter((p) => p.key !== "input_layout")
    .concat(create(StringStringEntryProtoSchema, { key: "input_layout", value: "float32-nchw" }));
  model.docString += " Input: FP32 [N,3,224,224], normalised outside the graph.";
  return toBinary(ModelProtoSchema, model);
}
