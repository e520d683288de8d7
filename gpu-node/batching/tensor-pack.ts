/** Receives preprocessed 224x224 RGB images, hands on one batch tensor in the model's input layout. */
import { CLIP_MEAN, CLIP_STD, IMAGE_BYTES, INPUT_SIZE } from "../../imaging/clip.ts";

const PLANE = INPUT_SIZE * INPUT_SIZE;

/**
 * (v / 255 - mean) / std (OpenCLIP's constants) for every byte value, per channel, computed in float32 step by step as
 * torchvision's ToTensor + Normalize do, so the table matches PyTorch bit for bit.
 */
function normaliseTable(): Float32Array {
  const f = Math.fround;
  const table = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    const mean = f(CLIP_MEAN[c]!);
    const std = f(CLIP_STD[c]!);
    for (let v = 0; v < 256; v++) table[c * 256 + v] = f(f(f(v / 255) - mean) / std);
  }
  return table;
}

const TABLE = normaliseTable();

/**
 * Copies the images into one UINT8 [N, 224, 224, 3] tensor. `out` (e.g. a reused buffer sized
 * for the largest batch) is filled from the start; the result is a view of exactly N images.
 */
export function packUint8Nhwc(images: readonly Uint8Array[], out?: Uint8Array): Uint8Array {
  const target = batchView(out, images.length, (n) => new Uint8Array(n));
  images.forEach((image, i) => {
    target.set(checkedImage(image, i), i * IMAGE_BYTES);
  });
  return target;
}

/**
 * Converts the images into one normalised FP32 [N, 3, 224, 224] tensor (HWC → CHW through the
 * lookup table). `out` is reused as for packUint8Nhwc; the result is a view of exactly N images.
 */
export function packFloat32Nchw(images: readonly Uint8Array[], out?: Float32Array): Float32Array {
  const target = batchView(out, images.length, (n) => new Float32Array(n));
  images.forEach((image, i) => {
    writeNchw(checkedImage(image, i), target, i * IMAGE_BYTES);
  });
  return target;
}

function writeNchw(src: Uint8Array, out: Float32Array, offset: number): void {
  const r = offset;
  const g = offset + PLANE;
  const b = offset + 2 * PLANE;
  for (let p = 0, s = 0; p < PLANE; p++, s += 3) {
    out[r + p] = TABLE[src[s]!]!;
    out[g + p] = TABLE[256 + src[s + 1]!]!;
    out[b + p] = TABLE[512 + src[s + 2]!]!;
  }
}

function batchView<T extends Uint8Array | Float32Array>(
  out: T | undefined,
  count: number,
  allocate: (length: number) => T,
): T {
  const length = count * IMAGE_BYTES;
  if (!out) return allocate(length);
  if (out.length < length) {
    throw new RangeError(
      `batch of ${count} images needs ${length} elements, buffer has ${out.length}`,
    );
  }
  return out.subarray(0, length) as T;
}

function checkedImage(image: Uint8Array, index: number): Uint8Array {
  if (image.length !== IMAGE_BYTES) {
    throw new RangeError(`image ${index} has ${image.length} bytes, expected ${IMAGE_BYTES}`);
  }
  return image;
}
