/** generateVitModel: a seeded, calibrated ViT as serialised ONNX bytes. */

import { CALIBRATION_IMAGE_COUNT, CALIBRATION_IMAGE_SEED, computeCentre } from "./calibrate.ts";
import { type GraphBuilder, IR_VERSION, OPSET, serialiseModel } from "./onnx-builder.ts";
import { VIT_CONFIGS, type VitConfig, type VitConfigName } from "./vit-config.ts";
import { buildVitGraph, finishCalibrated, finishUncalibrated } from "./vit-graph.ts";

export const DEFAULT_SEED = 0;
/** Bump when the recipe changes (graph, init or calibration), so old caches are not mixed up. */
export const GENERATOR_VERSION = "1";

export interface GenerateOptions {
  /** Weight seed, an integer in [0, 2^32). Default 0. */
  readonly seed?: number;
  /** Skip centring (for tests that show why it matters). Default true. */
  readonly calibrate?: boolean;
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
  const graph = buildVitGraph(cfg, seed);
  const plain = serialise(finishUncalibrated(graph), cfg, seed, null);
  if (opts.calibrate === false) return plain;
  const centre = await computeCentre(plain);
  return serialise(finishCalibrated(graph, centre), cfg, seed, centre);
}

function serialise(
  builder: GraphBuilder,
  cfg: VitConfig,
  seed: number,
  centre: Float32Array | null,
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
  if (centre !== null) {
    metadata["calibration.image_seed"] = String(CALIBRATION_IMAGE_SEED);
    metadata["calibration.image_count"] = String(CALIBRATION_IMAGE_COUNT);
  }
  const model = builder.toModel({
    graphName: `${cfg.name}-seed${seed}`,
    producerName: "photo-embed-ingest",
    producerVersion: GENERATOR_VERSION,
    docString:
      `OpenCLIP ViT-shaped image tower (${cfg.name}) with seeded random weights` +
      (centre === null ? "." : ", centred on a synthetic calibration set.") +
      ` Opset ${OPSET}, IR ${IR_VERSION}. Not a trained model.`,
    metadata,
  });
  return serialiseModel(model);
}
