// Both fast builds of the bicubic loops against the TypeScript Pillow port: resample.wasm, and the
// native addon's (AVX-512, AVX2, SSE4.1 and scalar passes, each where the CPU has it) where it
// loads. Random scales reach both sides of the AVX-512 passes' limits (five outputs' taps within
// one 64-byte load, weights that split into three bytes), where they hand over to AVX2.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { loadClipNative } from "../native/clip-native.ts";
import { BicubicNative } from "./bicubic-native.ts";
import { BicubicWasm, compileBicubicWasm } from "./bicubic-wasm.ts";
import { type ResizeWindow, type RgbImage, resizeBicubicWindow } from "./pillow-bicubic.ts";

type Resizer = { resize(image: RgbImage, window: ResizeWindow, out: Uint8Array): Uint8Array };
const wasm = new BicubicWasm(
  compileBicubicWasm(readFileSync(new URL("./wasm/resample.wasm", import.meta.url))),
);
const { addon } = loadClipNative();
const resizers: [string, Resizer][] = [
  ["BicubicWasm", wasm],
  // Each pass of the native build: the best the CPU has, and the narrower ones forced.
  ...(addon
    ? ([
        ["BicubicNative", new BicubicNative(addon)],
        ["BicubicNative, AVX2 at most", new BicubicNative(addon, 2)],
        ["BicubicNative, SSE4.1 at most", new BicubicNative(addon, 1)],
        ["BicubicNative, scalar", new BicubicNative(addon, 0)],
      ] as [string, Resizer][])
    : []),
];

describe.each(resizers)("%s", (_name, resizer) => {
  it("gives the TypeScript Pillow port's bytes for random images, sizes and windows", () => {
    let state = 7;
    const rand = (n: number) => {
      state = (state * 1103515245 + 12345) >>> 0;
      return state % n;
    };
    for (let i = 0; i < 120; i++) {
      const width = 2 + rand(700);
      const height = 2 + rand(700);
      const data = Uint8Array.from({ length: width * height * 3 }, () => rand(256));
      const outWidth = 1 + rand(500);
      const outHeight = 1 + rand(500);
      const w = 1 + rand(outWidth);
      const h = 1 + rand(outHeight);
      const window = {
        outWidth,
        outHeight,
        left: rand(outWidth - w + 1),
        top: rand(outHeight - h + 1),
        width: w,
        height: h,
      };
      const image = { data, width, height };
      const expected = resizeBicubicWindow(image, window);
      const got = resizer.resize(image, window, new Uint8Array(w * h * 3));
      expect(Buffer.compare(got, expected), `${width}x${height} → ${JSON.stringify(window)}`).toBe(
        0,
      );
    }
  });
});
