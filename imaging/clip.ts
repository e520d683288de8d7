/** open_clip's eval transform as numbers, for both tiers: an image's size in; the model's input size, torchvision's resize size and centre crop, and the normalisation constants out. */

/** Square side of the model's input, in pixels (OpenCLIP ViT-B/32). */
export const INPUT_SIZE = 224;
/** Bytes of one image in UINT8 NHWC (224 * 224 * 3). */
export const IMAGE_BYTES = INPUT_SIZE * INPUT_SIZE * 3;

/** OpenCLIP's normalisation constants (OPENAI_DATASET_MEAN / _STD, RGB order). */
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

/** torchvision Resize(224) on a PIL image: short side 224, long side int(224 * long / short). */
export function clipResizeSize(width: number, height: number): { width: number; height: number } {
  const long = Math.trunc((INPUT_SIZE * Math.max(width, height)) / Math.min(width, height));
  return width <= height
    ? { width: INPUT_SIZE, height: long }
    : { width: long, height: INPUT_SIZE };
}

/** torchvision CenterCrop: offset int(round((size - 224) / 2.0)); Python rounds half to even. */
export function centreCropOffset(size: number): number {
  const half = (size - INPUT_SIZE) / 2;
  const floor = Math.floor(half);
  if (half - floor !== 0.5) return Math.round(half);
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * open_clip's eval transform as a crop of the (oriented) image: the size torchvision's
 * Resize(224) makes of it, then the 224x224 window CenterCrop(224) cuts. Undefined when the short
 * side is under 224 (the edge does not upscale; the gpu-node does, with clipResizeSize).
 */
export function clipCrop(width: number, height: number) {
  if (Math.min(width, height) < INPUT_SIZE) return undefined;
  const resized = clipResizeSize(width, height);
  return {
    resizeWidth: resized.width,
    resizeHeight: resized.height,
    left: centreCropOffset(resized.width),
    top: centreCropOffset(resized.height),
    size: INPUT_SIZE,
  };
}
