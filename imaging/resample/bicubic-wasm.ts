/**
 * Receives RGB pixels and a window, hands on that window of Pillow's BICUBIC resize: the same
 * bytes as pillow-bicubic.ts (its taps, computed there exactly as Pillow computes them), with the
 * multiply-adds in WASM (wasm/resample.c, SIMD) at a fraction of the TypeScript loops' cost.
 * The caller hands in the compiled wasm/resample.wasm (workerd imports modules; Node compiles bytes).
 */
import {
  bicubicTaps,
  type ResizeWindow,
  type RgbImage,
  resizeBicubicWindow,
} from "./pillow-bicubic.ts";

/** The WebAssembly API through globalThis: the Node type-check (no DOM lib) declares none. */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: unknown };
}

interface Exports {
  readonly memory: { readonly buffer: ArrayBuffer };
  _initialize(): void;
  rs_malloc(n: number): number;
  rs_free(p: number): void;
  rs_horizontal(
    src: number,
    srcWidth: number,
    firstRow: number,
    lastRow: number,
    outWidth: number,
    start: number,
    len: number,
    weights: number,
    stride: number,
    out: number,
  ): void;
  rs_vertical(
    src: number,
    rowBytes: number,
    firstRow: number,
    outHeight: number,
    start: number,
    len: number,
    weights: number,
    stride: number,
    acc: number,
    out: number,
  ): void;
}

/** The taps of both passes and the input rows the window needs (both passes resize). */
export function bicubicPasses(image: RgbImage, window: ResizeWindow) {
  const rows = bicubicTaps(image.height, window.outHeight, window.top, window.height);
  const cols = bicubicTaps(image.width, window.outWidth, window.left, window.width);
  const firstRow = rows.start[0]!;
  const lastRow = rows.start[window.height - 1]! + rows.length[window.height - 1]!;
  return { rows, cols, firstRow, lastRow, rowBytes: window.width * 3 };
}

const wasmApi = () => (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** Compiles resample.wasm's bytes (Node; workerd gets the module from its import instead). */
export function compileBicubicWasm(bytes: Uint8Array): object {
  return new (wasmApi().Module)(bytes);
}

/** One instance of resample.wasm: its memory is reused by every resize on this thread. */
export class BicubicWasm {
  readonly #ex: Exports;

  constructor(module: object) {
    const imports = { env: { emscripten_notify_memory_growth() {} } };
    this.#ex = new (wasmApi().Instance)(module, imports).exports as Exports;
    this.#ex._initialize();
  }

  /**
   * `window` of Pillow's `resize((outWidth, outHeight), BICUBIC)` of `image` into `out`
   * (window.width * window.height * 3 bytes). A pass whose size does not change (Pillow skips it)
   * goes to the TypeScript port, which handles it as a copy.
   */
  resize(image: RgbImage, window: ResizeWindow, out: Uint8Array): Uint8Array {
    if (window.outWidth === image.width || window.outHeight === image.height) {
      return resizeBicubicWindow(image, window, out);
    }
    const ex = this.#ex;
    const { rows, cols, firstRow, lastRow, rowBytes } = bicubicPasses(image, window);
    const sizes = [
      image.data.byteLength, // source
      (lastRow - firstRow) * rowBytes, // horizontal pass
      rowBytes * 4, // vertical accumulators
      window.width * window.height * 3, // result
      cols.start.byteLength,
      cols.length.byteLength,
      cols.weights.byteLength,
      rows.start.byteLength,
      rows.length.byteLength,
      rows.weights.byteLength,
    ];
    // One block, 16-byte aligned parts: Int32 views need 4-byte alignment.
    const offsets: number[] = [];
    let total = 0;
    for (const s of sizes) {
      offsets.push(total);
      total += (s + 15) & ~15;
    }
    const base = ex.rs_malloc(total);
    if (base === 0) throw new Error(`resample.wasm: no memory for ${total} bytes`);
    try {
      const at = offsets.map((o) => base + o);
      const [src, tmp, acc, dst, cStart, cLen, cW, rStart, rLen, rW] = at as [
        number,
        number,
        number,
        number,
        number,
        number,
        number,
        number,
        number,
        number,
      ];
      // Views after the malloc: growing memory detaches older ones.
      const heap = new Uint8Array(ex.memory.buffer);
      heap.set(image.data, src);
      const put = (a: Int32Array, p: number) =>
        heap.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), p);
      put(cols.start, cStart);
      put(cols.length, cLen);
      put(cols.weights, cW);
      put(rows.start, rStart);
      put(rows.length, rLen);
      put(rows.weights, rW);
      ex.rs_horizontal(
        src,
        image.width,
        firstRow,
        lastRow,
        window.width,
        cStart,
        cLen,
        cW,
        cols.stride,
        tmp,
      );
      ex.rs_vertical(
        tmp,
        rowBytes,
        firstRow,
        window.height,
        rStart,
        rLen,
        rW,
        rows.stride,
        acc,
        dst,
      );
      out.set(new Uint8Array(ex.memory.buffer, dst, window.width * window.height * 3));
      return out;
    } finally {
      ex.rs_free(base);
    }
  }
}
