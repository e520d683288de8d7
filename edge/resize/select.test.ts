/** RESIZER=auto: the WASM decoders for what they read within WASM_CPU_BUDGET_MS, the binding for the rest. */
import { describe, expect, it } from "vitest";
import type { ImageFormat } from "../validate/index.ts";
import type { Resizer } from "./resizer.ts";
import { createAutoResizer, estimatedWasmMs } from "./select.ts";

function fake(name: string, formats: readonly string[], calls: string[]): Resizer {
  return {
    name,
    supports: (f) => formats.includes(f),
    resize: async () => {
      calls.push(name);
      return { bytes: new Uint8Array(0), width: 1, height: 1 };
    },
  };
}

const opts = { shortSide: 256, quality: 80 };
const input = (format: string, width: number, height: number) => ({
  bytes: new Uint8Array(0),
  format: format as ImageFormat,
  width,
  height,
});

describe("RESIZER=auto", () => {
  it("estimates more CPU for a HEIC than for a JPEG of the same size, none for unread formats", () => {
    expect(estimatedWasmMs(input("heic", 4032, 3024))).toBeGreaterThan(
      estimatedWasmMs(input("jpeg", 4032, 3024)) * 10,
    );
    expect(estimatedWasmMs(input("gif", 10, 10))).toBe(Number.POSITIVE_INFINITY);
  });

  it("sends what fits the budget to WASM and the rest (and every unread format) to the binding", async () => {
    const calls: string[] = [];
    const auto = createAutoResizer(
      fake("wasm", ["jpeg", "heic", "png", "webp"], calls),
      fake("images", ["jpeg", "heic", "png", "webp", "gif", "avif"], calls),
      4000,
    );
    expect(auto.supports("gif")).toBe(true);
    await auto.resize(input("jpeg", 8064, 6048), opts); // 48 MP JPEG: cheap
    await auto.resize(input("heic", 4032, 3024), opts); // 12 MP HEIC: ~3.5 s
    await auto.resize(input("heic", 8064, 6048), opts); // 48 MP HEIC: ~13 s
    await auto.resize(input("gif", 100, 100), opts);
    expect(calls).toEqual(["wasm", "wasm", "images", "images"]);
  });
});
