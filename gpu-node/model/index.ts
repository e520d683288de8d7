/** Model tooling: seeded, calibrated ViT ONNX generation and the on-disk model cache. */

export { CALIBRATION_IMAGE_COUNT, CALIBRATION_IMAGE_SEED } from "./calibrate.ts";
export { DEFAULT_SEED, type GenerateOptions, generateVitModel } from "./generate.ts";
export {
  cachedModelPath,
  type EnsureModelOptions,
  ensureModel,
  type ResolvedModel,
  sha256File,
  writeFileAtomic,
} from "./model-cache.ts";
export { PATTERNS, syntheticBatch, syntheticImage } from "./synthetic-images.ts";
export {
  BUILT_IN_MODEL_NAMES,
  type BuiltInModel,
  builtInModelName,
  isPrecision,
  isVitConfigName,
  PRECISIONS,
  type Precision,
  parseBuiltInModel,
  VIT_CONFIGS,
  type VitConfig,
  type VitConfigName,
} from "./vit-config.ts";
export { INPUT_NAME, OUTPUT_NAME } from "./vit-graph.ts";
