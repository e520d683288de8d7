/** The Worker entry: wiring only — the Images binding or the WASM resizer, chosen by configuration. */
import { createApp } from "./app.ts";
import { createImagesBindingResizer } from "./resize/images-binding.ts";
import { createWasmResizer } from "./resize/wasm-formats.ts";

const wasm = createWasmResizer();

export default createApp({
  resizer: (env, config) =>
    config.resizer === "wasm" ? wasm : createImagesBindingResizer((env as Env).IMAGES),
});
