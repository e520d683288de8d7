/** A small builder for ONNX graphs on top of our own onnx.proto subset (protobuf-es). */

import { endianness } from "node:os";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  type AttributeProto,
  AttributeProto_AttributeType,
  AttributeProtoSchema,
  GraphProtoSchema,
  type ModelProto,
  ModelProtoSchema,
  type NodeProto,
  NodeProtoSchema,
  OperatorSetIdProtoSchema,
  StringStringEntryProtoSchema,
  type TensorProto,
  TensorProto_DataType,
  TensorProtoSchema,
  TensorShapeProto_DimensionSchema,
  TensorShapeProtoSchema,
  TypeProto_TensorSchema,
  TypeProtoSchema,
  type ValueInfoProto,
  ValueInfoProtoSchema,
} from "../../proto/gen/onnx/onnx_pb.js";

export { TensorProto_DataType as DataType };

/** Opset 17 is the first with LayerNormalization; IR version 8 is the one that pairs with it. */
export const OPSET = 17;
export const IR_VERSION = 8;

/** An attribute value, tagged because a JS number cannot tell 1 (INT) from 1.0 (FLOAT). */
export type Attr =
  | { readonly kind: "int"; readonly value: number }
  | { readonly kind: "float"; readonly value: number }
  | { readonly kind: "ints"; readonly value: readonly number[] }
  | { readonly kind: "string"; readonly value: string };

export const attr = {
  int: (value: number): Attr => ({ kind: "int", value }),
  float: (value: number): Attr => ({ kind: "float", value }),
  ints: (value: readonly number[]): Attr => ({ kind: "ints", value }),
  string: (value: string): Attr => ({ kind: "string", value }),
};

/** A tensor dimension: a fixed size or a symbolic name such as "batch". */
export type Dim = number | string;

/**
 * Typed arrays we can store as initializers, with their ONNX element type. A Uint16Array holds
 * FLOAT16 bit patterns (see float16.ts); no graph of ours has UINT16 tensors.
 */
export type TensorData = Float32Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array;

function dataTypeOf(data: TensorData): TensorProto_DataType {
  if (data instanceof Float32Array) return TensorProto_DataType.FLOAT;
  if (data instanceof Uint16Array) return TensorProto_DataType.FLOAT16;
  if (data instanceof BigInt64Array) return TensorProto_DataType.INT64;
  if (data instanceof Int32Array) return TensorProto_DataType.INT32;
  return TensorProto_DataType.UINT8;
}

// ONNX raw_data is little-endian; we hand over typed-array memory as is.
if (endianness() !== "LE") throw new Error("onnx-builder needs a little-endian host");

function toAttribute(name: string, a: Attr): AttributeProto {
  switch (a.kind) {
    case "int":
      return create(AttributeProtoSchema, {
        name,
        type: AttributeProto_AttributeType.INT,
        i: BigInt(a.value),
      });
    case "float":
      return create(AttributeProtoSchema, {
        name,
        type: AttributeProto_AttributeType.FLOAT,
        f: a.value,
      });
    case "ints":
      return create(AttributeProtoSchema, {
        name,
        type: AttributeProto_AttributeType.INTS,
        ints: a.value.map(BigInt),
      });
    case "string":
      return create(AttributeProtoSchema, {
        name,
        type: AttributeProto_AttributeType.STRING,
        s: new TextEncoder().encode(a.value),
      });
  }
}

function valueInfo(name: string, elemType: TensorProto_DataType, dims: readonly Dim[]) {
  return create(ValueInfoProtoSchema, {
    name,
    type: create(TypeProtoSchema, {
      value: {
        case: "tensorType",
        value: create(TypeProto_TensorSchema, {
          elemType,
          shape: create(TensorShapeProtoSchema, {
            dim: dims.map((d) =>
              create(TensorShapeProto_DimensionSchema, {
                value:
                  typeof d === "number"
                    ? { case: "dimValue", value: BigInt(d) }
                    : { case: "dimParam", value: d },
              }),
            ),
          }),
        }),
      },
    }),
  });
}

export interface ModelOptions {
  readonly graphName: string;
  readonly docString?: string;
  readonly producerName: string;
  readonly producerVersion?: string;
  /** Written as ModelProto.metadata_props, in this order. */
  readonly metadata?: Readonly<Record<string, string>>;
}

/**
 * Collects nodes, initializers and graph inputs/outputs in the order they are added (which
 * must be topological). Tensor names must be unique; the builder checks that so that a typo
 * in a graph definition fails here instead of as an opaque onnxruntime load error.
 */
export class GraphBuilder {
  #nodes: NodeProto[] = [];
  #initializers: TensorProto[] = [];
  #inputs: ValueInfoProto[] = [];
  #outputs: ValueInfoProto[] = [];
  #names = new Set<string>();

  /** An independent builder sharing the (immutable) tensors: cheap, used to fork a graph. */
  clone(): GraphBuilder {
    const copy = new GraphBuilder();
    copy.#nodes = [...this.#nodes];
    copy.#initializers = [...this.#initializers];
    copy.#inputs = [...this.#inputs];
    copy.#outputs = [...this.#outputs];
    copy.#names = new Set(this.#names);
    return copy;
  }

  #claim(name: string): string {
    if (this.#names.has(name)) throw new Error(`duplicate tensor name ${name}`);
    this.#names.add(name);
    return name;
  }

  input(name: string, elemType: TensorProto_DataType, dims: readonly Dim[]): string {
    this.#inputs.push(valueInfo(this.#claim(name), elemType, dims));
    return name;
  }

  /** Declares an existing tensor as a graph output. */
  output(name: string, elemType: TensorProto_DataType, dims: readonly Dim[]): void {
    if (!this.#names.has(name)) throw new Error(`unknown output tensor ${name}`);
    this.#outputs.push(valueInfo(name, elemType, dims));
  }

  /** A constant tensor. The typed array's memory is referenced, not copied: don't reuse it. */
  initializer(name: string, data: TensorData, dims: readonly number[], docString = ""): string {
    const count = dims.reduce((a, b) => a * b, 1);
    if (count !== data.length) {
      throw new Error(`initializer ${name}: ${data.length} values for dims [${dims}]`);
    }
    this.#initializers.push(
      create(TensorProtoSchema, {
        name: this.#claim(name),
        dims: dims.map(BigInt),
        dataType: dataTypeOf(data),
        rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
        docString,
      }),
    );
    return name;
  }

  /** A node with one output, named `output` (the node takes the same name); returns it. */
  node(
    opType: string,
    inputs: readonly string[],
    output: string,
    attrs: Readonly<Record<string, Attr>> = {},
  ): string {
    return this.nodeMulti(opType, inputs, [output], attrs)[0]!;
  }

  nodeMulti(
    opType: string,
    inputs: readonly string[],
    outputs: readonly string[],
    attrs: Readonly<Record<string, Attr>> = {},
  ): readonly string[] {
    for (const input of inputs) {
      // "" is ONNX's way to skip an optional input.
      if (input !== "" && !this.#names.has(input)) {
        throw new Error(`${opType} ${outputs[0]}: unknown input ${input}`);
      }
    }
    for (const output of outputs) this.#claim(output);
    this.#nodes.push(
      create(NodeProtoSchema, {
        name: outputs[0]!,
        opType,
        input: [...inputs],
        output: [...outputs],
        attribute: Object.entries(attrs).map(([name, a]) => toAttribute(name, a)),
      }),
    );
    return outputs;
  }

  toModel(options: ModelOptions): ModelProto {
    return create(ModelProtoSchema, {
      irVersion: BigInt(IR_VERSION),
      producerName: options.producerName,
      producerVersion: options.producerVersion ?? "",
      opsetImport: [create(OperatorSetIdProtoSchema, { domain: "", version: BigInt(OPSET) })],
      metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) =>
        create(StringStringEntryProtoSchema, { key, value }),
      ),
      graph: create(GraphProtoSchema, {
        name: options.graphName,
        docString: options.docString ?? "",
        node: this.#nodes,
        initializer: this.#initializers,
        input: this.#inputs,
        output: this.#outputs,
      }),
    });
  }
}

/**
 * The model's wire bytes (deterministic: same model, same bytes).
 *
 * protobuf-es's toBinary grows one buffer by doubling and shifts every nested message when
 * it learns its length, so a 351 MB model was copied several times (2.2 s, 1 GB extra).
 * Instead, everything but the initializers' raw_data goes through toBinary, and the raw
 * bytes are spliced in with hand-written length prefixes: each weight is copied once. Fields
 * then appear out of number order (raw_data after doc_string, graph last), which the
 * protobuf wire format allows: a parser reads the same message as from toBinary.
 */
export function serialiseModel(model: ModelProto): Uint8Array {
  const graph = model.graph;
  if (graph === undefined) return toBinary(ModelProtoSchema, model);
  const graphParts: Uint8Array[] = [
    toBinary(GraphProtoSchema, create(GraphProtoSchema, { ...graph, initializer: [] })),
  ];
  for (const tensor of graph.initializer) {
    const meta = toBinary(
      TensorProtoSchema,
      create(TensorProtoSchema, { ...tensor, rawData: new Uint8Array(0) }),
    );
    const raw = tensor.rawData;
    const rawKey = raw.length > 0 ? lengthDelimitedKey(TENSOR_RAW_DATA, raw.length) : EMPTY;
    const size = meta.length + rawKey.length + raw.length;
    graphParts.push(lengthDelimitedKey(GRAPH_INITIALIZER, size), meta, rawKey, raw);
  }
  const graphSize = graphParts.reduce((sum, part) => sum + part.length, 0);
  const parts = [
    toBinary(ModelProtoSchema, create(ModelProtoSchema, { ...model, graph: undefined })),
    lengthDelimitedKey(MODEL_GRAPH, graphSize),
    ...graphParts,
  ];
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

// Field numbers of the spliced fields (see proto/onnx/onnx.proto).
const MODEL_GRAPH = 7;
const GRAPH_INITIALIZER = 5;
const TENSOR_RAW_DATA = 9;
const EMPTY = new Uint8Array(0);

/** A length-delimited field's key (wire type 2) and its varint length prefix. */
function lengthDelimitedKey(field: number, length: number): Uint8Array {
  const bytes: number[] = [];
  for (let v of [field * 8 + 2, length]) {
    while (v >= 0x80) {
      bytes.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    bytes.push(v);
  }
  return Uint8Array.from(bytes);
}
