/**
 * The in-Worker resizer for JPEG, HEIC, PNG and WebP (name "wasm"), with its decoders bundled as
 * WebAssembly modules (workerd cannot compile WASM from bytes at run time). Each module is
 * instantiated only when its format first arrives. See wasm/formats.ts.
 */

import hevcWasm from "../../imaging/heif/hevc.wasm";
import jpegWasm from "../../imaging/jpeg/jpeg.wasm";
import webpWasm from "../../imaging/webp/webp.wasm";
import { createWasmResizer as create, type WasmLimits, type WasmResizer } from "./wasm/formats.ts";

export type { WasmLimits, WasmResizer, WasmRun } from "./wasm/formats.ts";

export function createWasmResizer(limits?: WasmLimits): WasmResizer {
  return create({ jpeg: jpegWasm, hevc: hevcWasm, webp: webpWasm }, limits);
}
