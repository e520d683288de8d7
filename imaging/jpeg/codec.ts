/**
 * libjpeg-turbo 2.1.5 in WASM (jpeg.wasm, built by build.sh from jpeg_wasm.c): header parse,
 * decode at 1/1, 1/2, 1/4 or 1/8 scale in the DCT domain, and baseline JPEG encode.
 * Runtime-agnostic: it takes a compiled module (workerd: the bundled .wasm import; Node:
 * `compileJpegWasm` of the file's bytes) and touches no other platform API.
 */

import {
  compileWasm,
  instantiateWasm,
  type WasmMemory,
  type WasmModule,
} from "../wasm-instance.ts";

export type { WasmModule };

/** Compiles jpeg.wasm from its bytes. Node and tests only: workerd refuses to compile at run time. */
export function compileJpegWasm(bytes: Uint8Array): Promise<WasmModule> {
  return compileWasm(bytes);
}

/** How a decode failed: corrupt data, an unsupported JPEG variant, or over the memory budget. */
export type JpegFailure = "corrupt" | "unsupported" | "too_large";

export class JpegWasmError extends Error {
  override readonly name = "JpegWasmError";
  readonly kind: JpegFailure;
  /** libjpeg's message code (negative: the wrapper's own). */
  readonly code: number;
  constructor(kind: JpegFailure, code: number, message: string) {
    super(message);
    this.kind = kind;
    this.code = code;
  }
}

/** libjpeg's J_COLOR_SPACE values for the file's colour space. */
export const ColorSpace = { GRAY: 1, RGB: 2, YCBCR: 3, CMYK: 4, YCCK: 5 } as const;

export interface JpegHeader {
  readonly width: number;
  readonly height: number;
  readonly components: number;
  readonly colorSpace: number;
  readonly progressive: boolean;
  readonly arithmetic: boolean;
  /** An Adobe APP14 marker: CMYK samples are stored inverted (Photoshop's convention). */
  readonly adobe: boolean;
}

export interface ScaledPixels {
  readonly width: number;
  readonly height: number;
  /** 3: RGB; 4: CMYK as stored (see `JpegHeader.adobe`). */
  readonly channels: 3 | 4;
  /** A view into WASM memory: valid only inside the `decode` callback. */
  readonly data: Uint8Array;
}

export interface DecodeLimits {
  /** Cap on libjpeg's big buffers (a progressive file's whole-image coefficients). */
  readonly libjpegBytes: number;
  /** Cap on the scaled output buffer. */
  readonly outputBytes: number;
}

interface Exports {
  readonly memory: WasmMemory;
  _initialize(): void;
  jw_info(): number;
  jw_malloc(n: number): number;
  jw_free(p: number): void;
  jw_begin(buf: number, len: number): number;
  jw_decode(denom: number, memLimit: number, maxOut: number): number;
  jw_end(): void;
  jw_encode(rgb: number, width: number, height: number, quality: number): number;
}

const I = {
  WIDTH: 0,
  HEIGHT: 1,
  COMPONENTS: 2,
  COLOR_SPACE: 3,
  PROGRESSIVE: 4,
  ARITH: 5,
  ADOBE: 6,
  OUT_WIDTH: 7,
  OUT_HEIGHT: 8,
  OUT_COMPONENTS: 9,
  ENC_LEN: 11,
} as const;

const KINDS: readonly JpegFailure[] = ["corrupt", "unsupported", "too_large"];
const WASI_EBADF = 8;

/**
 * One WASM instance, reused while healthy. After any error thrown out of WASM, and after a call
 * that left linear memory larger than `recycleAboveBytes` (WASM memory never shrinks), the
 * instance is dropped so that the next call starts from a fresh ~2 MB memory.
 */
export class JpegWasm {
  readonly #module: WasmModule;
  readonly #recycleAbove: number;
  #exports: Exports | undefined;
  #peak = 0;

  constructor(module: WasmModule, options: { recycleAboveBytes?: number } = {}) {
    this.#module = module;
    this.#recycleAbove = options.recycleAboveBytes ?? 32 * 1024 * 1024;
  }

  /** Largest WASM linear memory seen since the last `resetPeak` (bytes). */
  get peakMemoryBytes(): number {
    return Math.max(this.#peak, this.#exports?.memory.buffer.byteLength ?? 0);
  }

  resetPeak(): void {
    this.#peak = this.#exports?.memory.buffer.byteLength ?? 0;
  }

  async #instance(): Promise<Exports> {
    if (this.#exports) return this.#exports;
    let memory: WasmMemory | undefined;
    const cString = (ptr: number) => {
      if (!memory) return "";
      const bytes = new Uint8Array(memory.buffer);
      let end = ptr;
      while (end < bytes.length && end - ptr < 200 && bytes[end] !== 0) end++;
      let s = "";
      for (let i = ptr; i < end; i++) s += String.fromCharCode(bytes[i]!);
      return s;
    };
    const imports = {
      env: {
        jw_throw(kind: number, code: number, msg: number): never {
          throw new JpegWasmError(KINDS[kind] ?? "corrupt", code, cString(msg));
        },
        emscripten_notify_memory_growth() {},
      },
      wasi_snapshot_preview1: {
        proc_exit(code: number): never {
          throw new JpegWasmError("corrupt", -3, `libjpeg exited (${code})`);
        },
        fd_close: () => WASI_EBADF,
        fd_write: () => WASI_EBADF,
        fd_seek: () => WASI_EBADF,
      },
    };
    const instance = await instantiateWasm(this.#module, imports);
    const exports = instance.exports as unknown as Exports;
    memory = exports.memory;
    exports._initialize();
    this.#exports = exports;
    return exports;
  }

  #settle(exports: Exports, failed: boolean): void {
    const size = exports.memory.buffer.byteLength;
    this.#peak = Math.max(this.#peak, size);
    if (failed || size > this.#recycleAbove) this.#exports = undefined;
  }

  /**
   * Parses the header, lets `chooseDenom` pick the DCT scale (1, 2, 4 or 8), decodes at that
   * scale and hands the pixels (a view into WASM memory) to `use`, whose result is returned.
   * Throws JpegWasmError.
   */
  async decode<T>(
    jpeg: Uint8Array,
    chooseDenom: (header: JpegHeader) => 1 | 2 | 4 | 8,
    limits: DecodeLimits,
    use: (pixels: ScaledPixels, header: JpegHeader) => T,
  ): Promise<T> {
    const ex = await this.#instance();
    let failed = true;
    try {
      const input = ex.jw_malloc(jpeg.byteLength);
      if (input === 0) {
        throw new JpegWasmError("too_large", -1, `no memory for a ${jpeg.byteLength}-byte input`);
      }
      new Uint8Array(ex.memory.buffer, input, jpeg.byteLength).set(jpeg);
      ex.jw_begin(input, jpeg.byteLength);
      const infoPtr = ex.jw_info();
      const info = () => new Int32Array(ex.memory.buffer, infoPtr, 12);
      const i = info();
      const header: JpegHeader = {
        width: i[I.WIDTH]!,
        height: i[I.HEIGHT]!,
        components: i[I.COMPONENTS]!,
        colorSpace: i[I.COLOR_SPACE]!,
        progressive: i[I.PROGRESSIVE] === 1,
        arithmetic: i[I.ARITH] === 1,
        adobe: i[I.ADOBE] === 1,
      };
      const denom = chooseDenom(header);
      const ptr = ex.jw_decode(denom, limits.libjpegBytes, limits.outputBytes);
      const o = info();
      const width = o[I.OUT_WIDTH]!;
      const height = o[I.OUT_HEIGHT]!;
      const channels = o[I.OUT_COMPONENTS] === 4 ? 4 : 3;
      const data = new Uint8Array(ex.memory.buffer, ptr, width * height * channels);
      const result = use({ width, height, channels, data }, header);
      ex.jw_end();
      ex.jw_free(input);
      failed = false;
      return result;
    } finally {
      this.#settle(ex, failed);
    }
  }

  /** Baseline JPEG (JFIF APP0, no other metadata) of packed RGB. Throws JpegWasmError. */
  async encode(rgb: Uint8Array, width: number, height: number, quality: number) {
    const ex = await this.#instance();
    let failed = true;
    try {
      const input = ex.jw_malloc(rgb.byteLength);
      if (input === 0) throw new JpegWasmError("too_large", -1, "no memory to encode");
      new Uint8Array(ex.memory.buffer, input, rgb.byteLength).set(rgb);
      const q = Math.min(100, Math.max(1, Math.round(quality)));
      const out = ex.jw_encode(input, width, height, q);
      const len = new Int32Array(ex.memory.buffer, ex.jw_info(), 12)[I.ENC_LEN]!;
      const bytes = new Uint8Array(ex.memory.buffer, out, len).slice();
      ex.jw_free(out);
      ex.jw_free(input);
      failed = false;
      return bytes;
    } finally {
      this.#settle(ex, failed);
    }
  }
}
