/**
 * Receives RGB pixels and a window, hands on that window of Pillow's BICUBIC resize: the bytes of
 * bicubic-wasm.ts (the same taps and the same C loops, wasm/resample.c) from the native addon
 * (../native/clip-native.ts), on the caller's arrays without copying them into a WASM heap.
 */
import type { ClipNative, SimdLevel } from "../native/clip-native.ts";
import { bicubicPasses } from "./bicubic-wasm.ts";
import { type ResizeWindow, type RgbImage, resizeBicubicWindow } from "./pillow-bicubic.ts";

/** Where a decoded part of an image lies: `rows` rows of `cols` pixels from (left, top). */
export interface Part {
  readonly left: number;
  readonly top: number;
  readonly cols: number;
  readonly rows: number;
}

export class BicubicNative {
  readonly #addon: ClipNative;
  // Scratch for the horizontal pass and the vertical accumulators, grown to the largest window.
  #tmp = new Uint8Array(0);
  #acc = new Int32Array(0);
  // The edge sends one size (341x256 for most photos): the last plan's taps are reused (~40 µs).
  #planKey = "";
  #plan: (ReturnType<typeof bicubicPasses> & { readonly region: Int32Array }) | undefined;
  // The plan's column taps as offsets into a part that starts at column #shiftedLeft.
  #shifted: Int32Array | undefined;
  #shiftedLeft = 0;

  readonly #simd: SimdLevel;

  /** `simd` caps the passes' instruction set (tests check each pass's bytes). */
  constructor(addon: ClipNative, simd: SimdLevel = 3) {
    this.#addon = addon;
    this.#simd = simd;
  }

  #planFor(width: number, height: number, window: ResizeWindow) {
    const key = `${width} ${height} ${Object.values(window).join(" ")}`;
    if (key !== this.#planKey || !this.#plan) {
      const plan = bicubicPasses({ data: new Uint8Array(0), width, height }, window);
      // The source columns [x0, x1) and rows [y0, y1) the taps read.
      let x0 = width;
      let x1 = 0;
      for (let x = 0; x < window.width; x++) {
        x0 = Math.min(x0, plan.cols.start[x]!);
        x1 = Math.max(x1, plan.cols.start[x]! + plan.cols.length[x]!);
      }
      this.#plan = { ...plan, region: Int32Array.of(x0, x1, plan.firstRow, plan.lastRow) };
      this.#planKey = key;
      this.#shifted = undefined;
    }
    return this.#plan;
  }

  /**
   * The source columns [x0, x1) and rows [y0, y1) that `window` of a width x height image reads,
   * for a decoder that can skip the rest; undefined when the whole image is needed (a pass that
   * does not resize goes to the TypeScript port, which reads the whole image). The array is the
   * plan's own: read it, do not change it.
   */
  sourceRegion(width: number, height: number, window: ResizeWindow): Int32Array | undefined {
    if (window.outWidth === width || window.outHeight === height) return undefined;
    return this.#planFor(width, height, window).region;
  }

  /**
   * As BicubicWasm.resize: `window` of the resized `image` into `out`. With `part`, image.data
   * holds only that part of the image (image.width and image.height stay the whole image's), and
   * it must cover everything the window reads (`sourceRegion`).
   */
  resize(image: RgbImage, window: ResizeWindow, out: Uint8Array, part?: Part): Uint8Array {
    const p = part ?? { left: 0, top: 0, cols: image.width, rows: image.height };
    if (window.outWidth === image.width || window.outHeight === image.height) {
      if (part) throw new RangeError("a pass that does not resize needs the whole image");
      return resizeBicubicWindow(image, window, out);
    }
    // The C loops trust their arguments: every array must hold what the taps address.
    if (image.data.byteLength < p.cols * p.rows * 3) {
      throw new RangeError(`${image.data.byteLength} bytes for ${p.cols}x${p.rows} pixels`);
    }
    if (out.byteLength < window.width * window.height * 3) {
      throw new RangeError(`${out.byteLength} bytes for a ${window.width}x${window.height} window`);
    }
    const { rows, cols, firstRow, lastRow, rowBytes, region } = this.#planFor(
      image.width,
      image.height,
      window,
    );
    if (firstRow < p.top || lastRow > p.top + p.rows) {
      throw new RangeError("window outside the image");
    }
    if (region[0]! < p.left || region[1]! > p.left + p.cols) {
      throw new RangeError("window outside the decoded part");
    }
    let start = cols.start;
    if (p.left !== 0) {
      if (!this.#shifted || this.#shiftedLeft !== p.left) {
        this.#shifted = cols.start.map((x) => x - p.left);
        this.#shiftedLeft = p.left;
      }
      start = this.#shifted;
    }
    const tmpBytes = (lastRow - firstRow) * rowBytes;
    if (this.#tmp.byteLength < tmpBytes) this.#tmp = new Uint8Array(tmpBytes);
    if (this.#acc.length < rowBytes) this.#acc = new Int32Array(rowBytes);
    const a = this.#addon;
    a.horizontal(
      image.data,
      p.cols,
      firstRow - p.top,
      lastRow - p.top,
      window.width,
      start,
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
