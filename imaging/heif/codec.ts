/**
 * A HEIF decode plan (container.ts) and the compiled hevc.wasm (libde265 1.0.11, built by
 * build.sh from heif_wasm.c) in; the primary image box-reduced by an integer factor k, as 8-bit
 * RGB, out. Tiles are decoded one at a time and folded into the reduced image at once, so memory
 * follows one tile plus the reduced image, never the full picture (a 48 MP grid at k = 23 holds
 * a 512x512 tile and a 350x263 image). 8 to 16-bit, 4:0:0 to 4:4:4, YCbCr or GBR.
 */
import { DecodeError } from "../decode-error.ts";
import { WasmInstance, type WasmModule } from "../wasm-instance.ts";
import type { HeifPlan } from "./container.ts";

interface Exports {
  readonly memory: { readonly buffer: ArrayBuffer };
  _initialize(): void;
  hd_info(): number;
  hd_malloc(n: number): number;
  hd_free(p: number): void;
  hd_decode(p: number, len: number): number;
  hd_accumulate(
    sums: number,
    rw: number,
    rh: number,
    k: number,
    x0: number,
    y0: number,
    limitW: number,
    limitH: number,
    fullRange: number,
    identity: number,
    kr: number,
    kb: number,
  ): number;
  hd_finish(
    sums: number,
    rw: number,
    rh: number,
    k: number,
    w: number,
    h: number,
    out: number,
  ): void;
  hd_release(): void;
}

const I = { WIDTH: 0, HEIGHT: 1, FULL_RANGE: 5, MATRIX: 6, ERROR: 7 } as const;

/** Luma weights (Kr, Kb) per ITU-T H.273 matrix_coefficients; absent: BT.601 (as libheif). */
const MATRICES: Record<number, readonly [number, number]> = {
  1: [0.2126, 0.0722], // BT.709
  4: [0.3, 0.11], // FCC
  5: [0.299, 0.114], // BT.470BG
  6: [0.299, 0.114], // BT.601
  7: [0.212, 0.087], // SMPTE 240M
  9: [0.2627, 0.0593], // BT.2020 non-constant luminance
  10: [0.2627, 0.0593],
};

export interface ReducedImage {
  /** Cells: ceil(width / k) x ceil(height / k). */
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
  readonly k: number;
  readonly wasmMemoryBytes: number;
}

export class HevcWasm {
  readonly #wasm: WasmInstance<Exports>;

  constructor(module: WasmModule, options: { recycleAboveBytes?: number } = {}) {
    this.#wasm = new WasmInstance<Exports>(
      module,
      options.recycleAboveBytes ?? 32 * 1024 * 1024,
      (code) => new DecodeError("corrupt", `libde265 exited (${code})`),
    );
  }

  get peakMemoryBytes(): number {
    return this.#wasm.peakMemoryBytes;
  }

  /** Decodes every tile of `plan` and box-reduces the image by `k`. Throws DecodeError. */
  async decodeReduced(plan: HeifPlan, k: number): Promise<ReducedImage> {
    this.#wasm.resetPeak();
    const rw = Math.ceil(plan.width / k);
    const rh = Math.ceil(plan.height / k);
    try {
      return await this.#wasm.run((ex) => {
        const sums = ex.hd_malloc(rw * rh * 12);
        const out = ex.hd_malloc(rw * rh * 3);
        if (sums === 0 || out === 0) {
          throw new DecodeError("too_large", `no memory for a ${rw}x${rh} reduced image`);
        }
        new Uint8Array(ex.memory.buffer, sums, rw * rh * 12).fill(0);
        for (const tile of plan.tiles) decodeTile(ex, plan, tile, { sums, rw, rh, k });
        ex.hd_release();
        ex.hd_finish(sums, rw, rh, k, plan.width, plan.height, out);
        const data = new Uint8Array(ex.memory.buffer, out, rw * rh * 3).slice();
        ex.hd_free(out);
        ex.hd_free(sums);
        return { width: rw, height: rh, data, k, wasmMemoryBytes: ex.memory.buffer.byteLength };
      });
    } catch (e) {
      if (e instanceof DecodeError) throw e;
      // A trap: libde265's C++ aborts when an allocation fails past the memory cap.
      throw new DecodeError("too_large", "HEVC decoder ran out of memory", { cause: e });
    }
  }
}

function decodeTile(
  ex: Exports,
  plan: HeifPlan,
  tile: HeifPlan["tiles"][number],
  cells: { sums: number; rw: number; rh: number; k: number },
): void {
  const nals = tile.nals();
  const input = ex.hd_malloc(nals.length);
  if (input === 0) throw new DecodeError("too_large", "no memory for a tile's data");
  new Uint8Array(ex.memory.buffer, input, nals.length).set(nals);
  const rc = ex.hd_decode(input, nals.length);
  ex.hd_free(input);
  const info = new Int32Array(ex.memory.buffer, ex.hd_info(), 8);
  if (rc !== 0) {
    const detail = rc === -3 ? `libde265 error ${info[I.ERROR]}` : "no picture decoded";
    throw new DecodeError("corrupt", `HEVC tile at ${tile.x},${tile.y}: ${detail}`);
  }
  const w = info[I.WIDTH]!;
  const h = info[I.HEIGHT]!;
  // The coded picture must match the item's declared size (a lying ispe or SPS is refused).
  if (
    w < Math.min(plan.tileWidth, plan.width - tile.x) ||
    h < Math.min(plan.tileHeight, plan.height - tile.y)
  ) {
    throw new DecodeError(
      "corrupt",
      `HEVC tile at ${tile.x},${tile.y} is ${w}x${h}, smaller than its declared ${plan.tileWidth}x${plan.tileHeight}`,
    );
  }
  const matrix = plan.colour.nclx?.matrix ?? info[I.MATRIX]!;
  const fullRange = plan.colour.nclx ? plan.colour.nclx.fullRange : info[I.FULL_RANGE] === 1;
  const [kr, kb] = MATRICES[matrix] ?? MATRICES[6]!;
  // The tile's visible part: the coded picture may be larger than the tile (conformance window).
  const limitW = Math.min(plan.width, tile.x + plan.tileWidth);
  const limitH = Math.min(plan.height, tile.y + plan.tileHeight);
  const ok = ex.hd_accumulate(
    cells.sums,
    cells.rw,
    cells.rh,
    cells.k,
    tile.x,
    tile.y,
    limitW,
    limitH,
    fullRange ? 1 : 0,
    matrix === 0 ? 1 : 0,
    kr,
    kb,
  );
  if (ok !== 0) throw new DecodeError("corrupt", "HEVC tile does not fit the image");
}
