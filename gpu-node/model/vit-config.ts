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

/** Patches plus the class token. */
export function sequenceLength(config: VitConfig): number {
  const grid = config.imageSize / config.patchSize;
  return grid * grid + 1;
}
