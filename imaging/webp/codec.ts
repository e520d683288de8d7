/**
 * WebP bytes and the compiled webp.wasm (libwebp 1.2.4, built by build.sh from webp_wasm.c) in;
 * the image scaled down by libwebp's own decode-time scaler, as 8-bit RGB, out. A lossy 48 MP
 * WebP decodes to its reduced size holding only a few full-width rows; a lossless one needs its
 * whole ARGB image (4 bytes a pixel) and fails cleanly past the 96 MiB cap.
 */
import { fourcc, fourccAt, le32 } from "../bytes.ts";
import { DecodeError } from "../decode-error.ts";
import { WasmInstance, type WasmModule } from "../wasm-instance.ts";

interface Exports {
  readonly memory: { readonly buffer: ArrayBuffer };
  _initialize(): void;
  wd_info(): number;
  wd_malloc(n: number): number;
  wd_free(p: number): void;
  wd_features(p: number, len: number): number;
  wd_decode(p: number, len: number, w: number, h: number): number;
  wd_release(): void;
}

const I = { WIDTH: 0, HEIGHT: 1, ANIMATED: 3, STATUS: 5, STRIDE: 6 } as const;
// libwebp's VP8StatusCode.
const OUT_OF_MEMORY = 1;
const UNSUPPORTED_FEATURE = 4;
const NOT_ENOUGH_DATA = 7;

export interface WebpReduced {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
  /** Source pixels per output pixel along x (libwebp scales to the exact size asked). */
  readonly k: number;
  /** The scaled image spans the whole source: its extent is its own size. */
  readonly extentWidth: number;
  readonly extentHeight: number;
  /** The VP8X file's ICCP chunk. */
  readonly icc: Uint8Array | undefined;
  readonly wasmMemoryBytes: number;
}

function statusError(status: number): DecodeError {
  if (status === OUT_OF_MEMORY) return new DecodeError("too_large", "libwebp ran out of memory");
  if (status === UNSUPPORTED_FEATURE) {
    return new DecodeError(
      "unsupported",
      "a WebP feature libwebp's still-image decoder does not read",
    );
  }
  if (status === NOT_ENOUGH_DATA)
    return new DecodeError("corrupt", "the bitstream ends early (truncated)");
  return new DecodeError("corrupt", `libwebp status ${status}`);
}

export class WebpWasm {
  readonly #wasm: WasmInstance<Exports>;

  constructor(module: WasmModule, options: { recycleAboveBytes?: number } = {}) {
    this.#wasm = new WasmInstance<Exports>(
      module,
      options.recycleAboveBytes ?? 32 * 1024 * 1024,
      (code) => new DecodeError("corrupt", `libwebp exited (${code})`),
    );
  }

  get peakMemoryBytes(): number {
    return this.#wasm.peakMemoryBytes;
  }

  /** Decodes `webp` at 1/k of its size, k from `factor(width, height)`. Throws DecodeError. */
  async decodeReduced(
    webp: Uint8Array,
    factor: (width: number, height: number) => number,
  ): Promise<WebpReduced> {
    this.#wasm.resetPeak();
    try {
      return await this.#wasm.run((ex) => {
        const input = ex.wd_malloc(webp.length);
        if (input === 0)
          throw new DecodeError("too_large", `no memory for a ${webp.length}-byte input`);
        new Uint8Array(ex.memory.buffer, input, webp.length).set(webp);
        const info = () => new Int32Array(ex.memory.buffer, ex.wd_info(), 7);
        if (ex.wd_features(input, webp.length) !== 0) throw statusError(info()[I.STATUS]!);
        const w = info()[I.WIDTH]!;
        const h = info()[I.HEIGHT]!;
        if (info()[I.ANIMATED]) {
          throw new DecodeError(
            "unsupported",
            "animated WebP (the in-Worker resizer reads still images)",
          );
        }
        const k = Math.max(1, Math.floor(factor(w, h)));
        const sw = Math.ceil(w / k);
        const sh = Math.ceil(h / k);
        const ptr = ex.wd_decode(input, webp.length, sw, sh);
        if (ptr === 0) throw statusError(info()[I.STATUS]!);
        const stride = info()[I.STRIDE]!;
        const data = new Uint8Array(sw * sh * 3);
        const mem = new Uint8Array(ex.memory.buffer);
        for (let y = 0; y < sh; y++)
          data.set(mem.subarray(ptr + y * stride, ptr + y * stride + sw * 3), y * sw * 3);
        ex.wd_release();
        ex.wd_free(input);
        return {
          width: sw,
          height: sh,
          data,
          k,
          extentWidth: sw,
          extentHeight: sh,
          icc: iccChunk(webp),
          wasmMemoryBytes: ex.memory.buffer.byteLength,
        };
      });
    } catch (e) {
      if (e instanceof DecodeError) throw e;
      throw new DecodeError("too_large", "WebP decoder ran out of memory", { cause: e });
    }
  }
}

const ICCP = fourcc("ICCP");

/** The ICCP chunk of an extended (VP8X) WebP, or undefined. Bounded: at most 64 chunks. */
export function iccChunk(b: Uint8Array): Uint8Array | undefined {
  let p = 12;
  for (let n = 0; n < 64 && p + 8 <= b.length; n++) {
    const size = le32(b, p + 4);
    if (p + 8 + size > b.length) return undefined;
    if (fourccAt(b, p) === ICCP) return b.subarray(p + 8, p + 8 + size);
    p += 8 + size + (size & 1);
  }
  return undefined;
}
