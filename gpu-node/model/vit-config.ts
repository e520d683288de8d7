/** The ViT shapes we can generate: OpenCLIP ViT-B/32 and a tiny one for fast tests. */

export type VitConfigName = "vit-b32" | "vit-tiny";

export interface VitConfig {
  readonly name: VitConfigName;
  /** Square input side in pixels. */
  readonly imageSize: number;
  /** Square patch side; the patch embedding is a Conv with this kernel and stride. */
  readonly patchSize: number;
  readonly width: number;
  readonly layers: number;
  readonly heads: number;
  readonly mlpWidth: number;
  readonly outputDim: number;
  /** LayerNorm epsilon (PyTorch's default, as in OpenCLIP). */
  readonly lnEpsilon: number;
}

export const VIT_CONFIGS: Readonly<Record<VitConfigName, VitConfig>> = Object.freeze({
  "vit-b32": {
    name: "vit-b32",
    imageSize: 224,
    patchSize: 32,
    width: 768,
    layers: 12,
    heads: 12,
    mlpWidth: 3072,
    outputDim: 512,
    lnEpsilon: 1e-5,
  },
  "vit-tiny": {
    name: "vit-tiny",
    imageSize: 224,
    patchSize: 32,
    width: 64,
    layers: 2,
    heads: 2,
    mlpWidth: 256,
    outputDim: 512,
    lnEpsilon: 1e-5,
  },
});

export function isVitConfigName(name: string): name is VitConfigName {
  return Object.hasOwn(VIT_CONFIGS, name);
}

/**
 * What the transformer body computes in. fp32 is the reference; fp16 has the same weights
 * rounded to half (input and output types unchanged), for GPUs' half-rate arithmetic.
 */
export type Precision = "fp32" | "fp16";
export const PRECISIONS: readonly Precision[] = ["fp32", "fp16"];

export function isPrecision(value: string): value is Precision {
  return (PRECISIONS as readonly string[]).includes(value);
}

/** A built-in model: a config at a precision, named "vit-b32" (fp32) or "vit-b32-fp16". */
export interface BuiltInModel {
  readonly config: VitConfigName;
  readonly precision: Precision;
}

export function builtInModelName(model: BuiltInModel): string {
  return model.precision === "fp32" ? model.config : `${model.config}-${model.precision}`;
}

/** Every built-in model name, fp32 first: "vit-b32", "vit-tiny", "vit-b32-fp16", ... */
export const BUILT_IN_MODEL_NAMES: readonly string[] = PRECISIONS.flatMap((precision) =>
  Object.keys(VIT_CONFIGS).map((config) =>
    builtInModelName({ config: config as VitConfigName, precision }),
  ),
);

/** The built-in model a name stands for, or undefined (then it may be a file path). */
export function parseBuiltInModel(name: string): BuiltInModel | undefined {
  if (isVitConfigName(name)) return { config: name, precision: "fp32" };
  const suffix = name.lastIndexOf("-");
  const config = name.slice(0, suffix);
  const precision = name.slice(suffix + 1);
  if (suffix < 0 || !isVitConfigName(config) || !isPrecision(precision)) return undefined;
  // "vit-tiny-fp32" is not a name: fp32 goes without a suffix, so each model has one name.
  return precision === "fp32" ? undefined : { config, precision };
}

/** Patches plus the class token. */
export function sequenceLength(config: VitConfig): number {
  const grid = config.imageSize / config.patchSize;
  return grid * grid + 1;
}
