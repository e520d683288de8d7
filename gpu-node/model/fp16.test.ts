// --precision fp16: the fp32 model's weights rounded to half, the transformer body computing in
// FLOAT16 between the fp32 input normalisation and the fp32 L2-normalisation tail. fp32 stays the
// reference: fp16 vs fp32 cosine must be at least 0.999 for every image. ONNX Runtime's CPU
// provider runs these models (it casts what it has no half kernel for back to float); the real
// half arithmetic is checked on WebGPU in ../backends/onnxruntime-webgpu.test.ts.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { afterAll, describe, expect, it } from "vitest";
import {
  type ModelProto,
  ModelProtoSchema,
  TensorProto_DataType,
} from "../../proto/gen/onnx/onnx_pb.js";
import { closeHeicDecoder, decodeForClip } from "../preprocess/decode.ts";
import { toFloat16 } from "./float16.ts";
import { generateVitModel } from "./generate.ts";
import { ensureModel } from "./model-cache.ts";
import { embedAll, IMAGE_BYTES, openSession } from "./ort-run.ts";
import { syntheticBatch } from "./synthetic-images.ts";
import { rowCosines } from "./testing/cosine.ts";

const CORPUS = join(import.meta.dirname, "../../../shared/corpus/photos");
const HAS_CORPUS = existsSync(CORPUS);
/** The models' shared cache with the backend tests, so vit-b32 is generated once per machine. */
const CACHE = join(tmpdir(), "gpu-node-ort-test-cache");

async function embedWith(model: Uint8Array | string, images: Uint8Array): Promise<Float32Array> {
  const session = await openSession(model, 2);
  try {
    return (await embedAll(session, images)).data;
  } finally {
    await session.release();
  }
}

const initializers = (model: ModelProto) =>
  new Map((model.graph?.initializer ?? []).map((t) => [t.name, t]));

describe("vit-tiny-fp16", async () => {
  const [full, half] = await Promise.all([
    generateVitModel("vit-tiny"),
    generateVitModel("vit-tiny", { precision: "fp16" }),
  ]);

  it("keeps UINT8 NHWC in and FLOAT out, with the fp32 weights rounded to half", () => {
    const m16 = fromBinary(ModelProtoSchema, half);
    const m32 = fromBinary(ModelProtoSchema, full);
    const io = (m: ModelProto) =>
      [...m.graph!.input, ...m.graph!.output].map((v) =>
        v.type?.value.case === "tensorType" ? v.type.value.value.elemType : undefined,
      );
    expect(io(m16)).toEqual([TensorProto_DataType.UINT8, TensorProto_DataType.FLOAT]);
    expect(io(m16)).toEqual(io(m32));
    expect(m16.metadataProps.find((p) => p.key === "vit.precision")?.value).toBe("fp16");
    expect(m32.metadataProps.some((p) => p.key === "vit.precision")).toBe(false);

    const t16 = initializers(m16);
    const t32 = initializers(m32);
    expect([...t16.keys()]).toEqual([...t32.keys()]);
    let halves = 0;
    for (const [name, t] of t32) {
      const h = t16.get(name)!;
      if (t.dataType !== TensorProto_DataType.FLOAT) {
        expect(h.rawData).toEqual(t.rawData);
        continue;
      }
      const floats = new Float32Array(t.rawData.slice().buffer);
      // The input normalisation, the L2 epsilons and the centre stay float (and equal).
      if (name.startsWith("pre.") || name.endsWith(".eps") || name === "calibration.centre") {
        expect([name, h.dataType]).toEqual([name, TensorProto_DataType.FLOAT]);
        expect(h.rawData).toEqual(t.rawData);
        continue;
      }
      expect([name, h.dataType]).toEqual([name, TensorProto_DataType.FLOAT16]);
      const bits = new Uint16Array(h.rawData.slice().buffer);
      expect(bits).toEqual(toFloat16(floats));
      halves++;
    }
    expect(halves).toBeGreaterThan(20);
    // fp32 has no half anywhere: its bytes are those of before fp16 existed.
    expect(m32.graph!.initializer.some((t) => t.dataType === TensorProto_DataType.FLOAT16)).toBe(
      false,
    );
    const casts = m16.graph!.node.filter((n) => n.opType === "Cast").map((n) => n.name);
    expect(casts).toEqual(["pre.float", "pre.half", "head.projected_float"]);
  });

  it("is byte-identical for one seed", async () => {
    const again = await generateVitModel("vit-tiny", { precision: "fp16" });
    expect(Buffer.from(again).equals(Buffer.from(half))).toBe(true);
  });

  it("runs on the CPU provider: cosine to fp32 >= 0.999 on every image", async () => {
    const images = syntheticBatch(0xf16, 16);
    const [a, b] = [await embedWith(full, images), await embedWith(half, images)];
    const cosines = rowCosines(a, b, 512);
    const worst = Math.min(...cosines);
    console.log(`vit-tiny fp16 vs fp32 (CPU provider, 16 synthetic images): worst cosine ${worst}`);
    expect(worst).toBeGreaterThanOrEqual(0.999);
  });
});

describe.skipIf(!HAS_CORPUS)("vit-b32-fp16 on the corpus photos (CPU provider)", () => {
  afterAll(closeHeicDecoder);

  it("gives each photo a cosine >= 0.999 to vit-b32's embedding", {
    timeout: 240_000,
  }, async () => {
    const names = readdirSync(CORPUS).sort();
    const images = new Uint8Array(names.length * IMAGE_BYTES);
    for (const [i, name] of names.entries()) {
      const { pixels } = await decodeForClip(readFileSync(join(CORPUS, name)), {
        maxPixels: 40_000_000,
        maxBytes: 25_000_000,
      });
      images.set(pixels, i * IMAGE_BYTES);
    }
    const full = await ensureModel("vit-b32", CACHE);
    const half = await ensureModel("vit-b32-fp16", CACHE);
    const a = await embedWith(full.path, images);
    const b = await embedWith(half.path, images);
    const cosines = rowCosines(a, b, 512);
    const worst = Math.min(...cosines);
    const mean = cosines.reduce((s, c) => s + c, 0) / cosines.length;
    console.log(
      `vit-b32 fp16 vs fp32 (CPU provider, ${names.length} corpus photos): worst cosine ${worst}, mean ${mean}`,
    );
    expect(worst).toBeGreaterThanOrEqual(0.999);
  });
});
if (!HAS_CORPUS) console.log(`vit-b32-fp16 corpus test skipped: ${CORPUS} is absent`);
