/**
 * Receives RGB pixels and a window, hands on that window of Pillow's BICUBIC resize: the bytes of
 * bicubic-wasm.ts (the same taps and the same C loops, wasm/resample.c) from the native addon
 * (../native/clip-native.ts), on the caller's arrays without copying them into a WASM heap.
 */
import type { ClipNative, SimdLevel } from "../native/clip-native.ts";
import { bicubicPasses } from "./bicubic-wasm.ts";
import { type ResizeWindow, type RgbImage, resizeBicubicWindow } from "./pillow-bicubic.ts";

export class BicubicNative {
  readonly #addon: ClipNative;
  // Scratch for the horizontal pass and the vertical accumulators, grown to the largest window.
  #tmp = new Uint8Array(0);
  #acc = new Int32Array(0);
  // The edge sends one size (341x256 for most photos): the last plan's taps are reused (~40 µs).
  #planKey = "";
  #plan: ReturnType<typeof bicubicPasses> | undefined;

  readonly #simd: SimdLevel;

  /** `simd` caps the passes' instruction set (tests check each pass's bytes). */
  constructor(addon: ClipNative, simd: SimdLevel = 2) {
    this.#addon = addon;
    this.#simd = simd;
  }

  /** As BicubicWasm.resize: `window` of the resized `image` into `out`. */
  resize(image: RgbImage, window: ResizeWindow, out: Uint8Array): Uint8Array {
    if (window.outWidth === image.width || window.outHeight === image.height) {
      return resizeBicubicWindow(image, window, out);
    }
    // The C loops trust their arguments: every array must hold what the taps address.
    if (image.data.byteLength < image.width * image.height * 3) {
      throw new RangeError(
        `${image.data.byteLength} bytes for a ${image.width}x${image.height} image`,
      );
    }
    if (out.byteLength < window.width * window.height * 3) {
      throw new RangeError(`${out.byteLength} bytes for a ${window.width}x${window.height} window`);
    }
    const key = `${image.width} ${image.height} ${Object.values(window).join(" ")}`;
    if (key !== this.#planKey || !this.#plan) {
      this.#plan = bicubicPasses(image, window);
      this.#planKey = key;
    }
    const { rows, cols, firstRow, lastRow, rowBytes } = this.#plan;
    if (firstRow < 0 || lastRow > image.height) throw new RangeError("window outside the image");
    const tmpBytes = (lastRow - firstRow) * rowBytes;
    if (this.#tmp.byteLength < tmpBytes) this.#tmp = new Uint8Array(tmpBytes);
    if (this.#acc.length < rowBytes) this.#acc = new Int32Array(rowBytes);
    const a = this.#addon;
    a.horizontal(
      image.data,
      image.width,
      firstRow,
      lastRow,
      window.width,
      cols.start,
      cols.length,
      cols.weights,
      cols.stride,
      this.#tmp,
      this.#simd,
    );
    a.vertical(
      this.#tmp,
      rowBytes,
      firstRow,
      window.height,
      rows.start,
      rows.length,
      rows.weights,
      rows.stride,
      this.#acc,
      out,
      this.#simd,
    );
    return out;
  }
}
