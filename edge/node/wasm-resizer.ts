/** The in-Worker WASM resizer on Node (the Node edge's fallback for what sharp cannot read): the same modules, compiled from their files once, at first use. */
import { readFileSync } from "node:fs";
import { compileWasm } from "../../imaging/wasm-instance.ts";
import { createWasmResizer, type WasmResizer } from "../resize/wasm/formats.ts";

const file = (path: string) => readFileSync(new URL(`../../imaging/${path}`, import.meta.url));

let resizer: Promise<WasmResizer> | undefined;

/** One resizer per process; its modules compile on the first call (tens of ms), not at start. */
export function nodeWasmResizer(): Promise<WasmResizer> {
  resizer ??= (async () => {
    const [jpeg, hevc, webp] = await Promise.all(
      ["jpeg/jpeg.wasm", "heif/hevc.wasm", "webp/webp.wasm"].map((p) => compileWasm(file(p))),
    );
    return createWasmResizer({ jpeg: jpeg!, hevc: hevc!, webp: webp! });
  })();
  return resizer;
}
