/** generateVitModel: a seeded, calibrated ViT as serialised ONNX bytes. */

import { CALIBRATION_IMAGE_COUNT, CALIBRATION_IMAGE_SEED, computeCentre } from "./calibrate.ts";
import { type GraphBuilder, IR_VERSION, OPSET, serialiseModel } from "./onnx-builder.ts";
import {
  builtInModelName,
  type Precision,
  VIT_CONFIGS,
  type VitConfig,
  type VitConfigName,
} from "./vit-config.ts";
import { buildVitGraph, finishCalibrated, finishUncalibrated } from "./vit-graph.ts";

export const DEFAULT_SEED = 0;
/** Bump when the recipe changes (graph, init or calibration), so old caches are not mixed up. */
export const GENERATOR_VERSION = "1";

export interface GenerateOptions {
  /** Weight seed, an integer in [0, 2^32). Default 0. */
  readonly seed?: number;
  /** Skip centring (for tests that show why it matters). Default true. */
  readonly calibrate?: boolean;
  /** What the transformer body computes in (see buildVitGraph). Default fp32. */
  readonly precision?: Precision;
}

/** Serialised ModelProto: UINT8 [batch,224,224,3] `image` → FP32 [batch,512] `embedding`. */
export async function generateVitModel(
  config: VitConfigName,
  opts: GenerateOptions = {},
): Promise<Uint8Array> {
  const seed = opts.seed ?? DEFAULT_SEED;
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new Error(`seed must be an integer in [0, 2^32), got ${seed}`);
  }
  const cfg = VIT_CONFIGS[config];
  if (cfg === undefined) throw new Error(`unknown ViT config ${config}`);
  const precision = opts.precision ?? "fp32";
  if (precision !== "fp32" && precision !== "fp16") {
    throw new Error(`precision must be fp32 or fp16, got ${String(precision)}`);
  }
  if (precision === "fp16") {
    // The centre is the fp32 model's: fp32 is the reference, so an fp16 model is that model's
    // body in half with the same fp32 tail, and fp16 vs fp32 differences are the body's alone.
    // (It also keeps calibration off ONNX Runtime's CPU fp16 paths, which differ by CPU.)
    // Computed first, so that the fp32 graph can go before the fp16 one is built.
    const centre =
      opts.calibrate === false
        ? null
        : await computeCentre(
            serialise(finishUncalibrated(buildVitGraph(cfg, seed)), cfg, seed, null, "fp32"),
          );
    const graph = buildVitGraph(cfg, seed, "fp16");
    return centre === null
      ? serialise(finishUncalibrated(graph), cfg, seed, null, "fp16")
      : serialise(finishCalibrated(graph, centre), cfg, seed, centre, "fp16");
  }
  const graph = buildVitGraph(cfg, seed);
  const plain = serialise(finishUncalibrated(graph), cfg, seed, null, "fp32");
  if (opts.calibrate === false) return plain;
  const centre = await computeCentre(plain);
  return serialise(finishCalibrated(graph, centre), cfg, seed, centre, "fp32");
}

function serialise(
  builder: GraphBuilder,
  cfg: VitConfig,
  seed: number,
  centre: Float32Array | null,
  precision: Precision,
): Uint8Array {
  const metadata: Record<string, string> = {
    "generator.version": GENERATOR_VERSION,
    "generator.config": cfg.name,
    "generator.seed": String(seed),
    // How the gpu-node packs images for this model (see gpu-node/backends/backend.ts).
    input_layout: "uint8-nhwc",
    "vit.image_size": String(cfg.imageSize),
    "vit.patch_size": String(cfg.patchSize),
    "vit.width": String(cfg.width),
    "vit.layers": String(cfg.layers),
    "vit.heads": String(cfg.heads),
    "vit.mlp_width": String(cfg.mlpWidth),
    "vit.output_dim": String(cfg.outputDim),
    "vit.activation": "quick_gelu",
    "vit.ln_epsilon": String(cfg.lnEpsilon),
    calibrated: String(centre !== null),
  };
  // Only on fp16 models, so that fp32 files stay byte-identical to those of before fp16.
  if (precision !== "fp32") metadata["vit.precision"] = precision;
  if (centre !== null) {
    metadata["calibration.image_seed"] = String(CALIBRATION_IMAGE_SEED);
    metadata["calibration.image_count"] = String(CALIBRATION_IMAGE_COUNT);
  }
  const model = builder.toModel({
    graphName: `${builtInModelName({ config: cfg.name, precision })}-seed${seed}`,
    producerName: "photo-embed-ingest",
    producerVersion: GENERATOR_VERSION,
    docString:
      `OpenCLIP ViT-shaped image tower (${cfg.name}) with seeded random weights` +
      (precision === "fp32" ? "" : `, computing in ${precision} between float32 input and output`) +
      (centre === null ? "." : ", centred on a synthetic calibration set.") +
      ` Opset ${OPSET}, IR ${IR_VERSION}. Not a trained model.`,
    metadata,
  });
  return serialiseModel(model);
}
