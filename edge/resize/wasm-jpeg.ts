/**
 * The in-Worker WASM resizer for JPEG (name "wasm"): libjpeg-turbo decodes at 1/2, 1/4 or 1/8
 * scale in the DCT domain, so a 12–48 MP photo is never decoded at full size and stays far
 * inside the isolate's 128 MB. JPEG only: the caller refuses every other format with 415 before
 * any work (`supports`). See wasm/README.md for the supported variants and limits.
 */

import jpegWasm from "../../imaging/jpeg/jpeg.wasm";
import { createJpegWasmResizer, type WasmJpegLimits, type WasmJpegResizer } from "./wasm/core.ts";

export type { WasmJpegLimits, WasmJpegResizer, WasmJpegRun, WasmResizeInput } from "./wasm/core.ts";

export function createWasmJpegResizer(limits?: WasmJpegLimits): WasmJpegResizer {
  return createJpegWasmResizer(jpegWasm, limits);
}
