/** Which resizer handles an image, from RESIZER: the Images binding (WASM fallback for what its local stand-in cannot read), the in-Worker WASM decoders, or "auto" (WASM within a CPU budget, the binding for the rest). */
import type { EdgeConfig } from "../config.ts";
import { createImagesBindingResizer } from "./images-binding.ts";
import type { ResizeInput, Resizer } from "./resizer.ts";
import { createWasmResizer } from "./wasm-formats.ts";

// One per isolate: its decoders are instantiated only when their format first arrives.
const wasm = createWasmResizer();

/**
 * Estimated Worker CPU milliseconds per megapixel of the original, by format, for the WASM
 * resizer: `npm run bench:resize -- --formats` on a busy 2-core x86-64 (docs/formats.md), rounded
 * up to the slowest of three runs. JPEG decodes at 1/8 in the DCT domain; HEIC decodes every HEVC tile at full size (the
 * figure is for a high-bitrate grid, 3.2 bits a pixel); PNG inflates and unfilters every row in
 * JS; WebP scales while decoding (lossless is the slower kind).
 */
export const WASM_MS_PER_MEGAPIXEL: Readonly<Record<string, number>> = {
  jpeg: 20,
  heic: 290,
  png: 120,
  webp: 35,
};
const WASM_MS_FIXED = 10;

/** A lossless WebP decodes its whole ARGB image: past this many pixels it cannot fit the WASM cap. */
const LOSSLESS_WEBP_MAX_PIXELS = 16_000_000;

/** Whether a WebP's image is lossless (a VP8L chunk within its first chunks). */
function losslessWebp(bytes: Uint8Array): boolean {
  for (let p = 12, n = 0; n < 16 && p + 8 <= bytes.length; n++) {
    if (
      bytes[p] === 0x56 &&
      bytes[p + 1] === 0x50 &&
      bytes[p + 2] === 0x38 &&
      bytes[p + 3] === 0x4c
    ) {
      return true;
    }
    const size =
      bytes[p + 4]! | (bytes[p + 5]! << 8) | (bytes[p + 6]! << 16) | (bytes[p + 7]! << 24);
    p += 8 + (size >>> 0) + (size & 1);
  }
  return false;
}

/** The estimate RESIZER=auto compares with WASM_CPU_BUDGET_MS (infinite: WASM cannot take it). */
export function estimatedWasmMs(
  input: Pick<ResizeInput, "format" | "width" | "height"> & { bytes?: Uint8Array },
): number {
  const perMp = WASM_MS_PER_MEGAPIXEL[input.format];
  if (perMp === undefined) return Number.POSITIVE_INFINITY;
  if (
    input.format === "webp" &&
    input.width * input.height > LOSSLESS_WEBP_MAX_PIXELS &&
    input.bytes !== undefined &&
    losslessWebp(input.bytes)
  ) {
    return Number.POSITIVE_INFINITY;
  }
  return WASM_MS_FIXED + (perMp * input.width * input.height) / 1e6;
}

/** WASM for what it reads within `budgetMs`, `other` for the rest. */
export function createAutoResizer(wasmResizer: Resizer, other: Resizer, budgetMs: number): Resizer {
  const pick = (input: ResizeInput) =>
    wasmResizer.supports(input.format) && estimatedWasmMs(input) <= budgetMs ? wasmResizer : other;
  return {
    name: "auto",
    supports: (format) => wasmResizer.supports(format) || other.supports(format),
    resize: (input, options) => pick(input).resize(input, options),
  };
}

export function selectResizer(env: { IMAGES: ImagesBinding }, config: EdgeConfig): Resizer {
  if (config.resizer === "wasm") return wasm;
  const binding = createImagesBindingResizer(env.IMAGES, wasm);
  return config.resizer === "auto"
    ? createAutoResizer(wasm, binding, config.wasmCpuBudgetMs)
    : binding;
}
