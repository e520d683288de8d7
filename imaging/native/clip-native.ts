/**
 * Loads the native preprocessing addon (clip_native.c, built by build.sh) where its prebuilt binary
 * runs: Linux x86-64 with glibc. Anywhere else, or when it fails to load, callers keep to the WASM
 * builds of the same code, which give the same bytes.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { resolve } from "node:path";
import type { JpegFailure } from "../jpeg/codec.ts";

/**
 * What `decode` answers: the image's size and the part of it in `out` (`rows` rows of `cols`
 * pixels from column `left`, row `top`: the whole image unless a region was asked for), or why it
 * was not decoded (libjpeg's message).
 */
export type NativeDecoded =
  | {
      readonly width: number;
      readonly height: number;
      readonly left: number;
      readonly top: number;
      readonly cols: number;
      readonly rows: number;
      readonly failure?: undefined;
    }
  | { readonly failure: JpegFailure; readonly message: string };

/**
 * The resize passes' instruction set, at most: 3 AVX-512 (with VBMI and VNNI), 2 AVX2, 1 SSE4.1
 * (the horizontal pass; the vertical one then runs its scalar loop), 0 scalar (each where the CPU
 * has it).
 */
export type SimdLevel = 0 | 1 | 2 | 3;

export interface ClipNative {
  /**
   * Packed RGB of `jpeg` into `out` (ISLOW IDCT, fancy upsampling), or the failure. `region`
   * [x0, x1, y0, y1] decodes only what covers those columns and rows (with a pixel to spare).
   */
  decode(jpeg: Uint8Array, out: Uint8Array, memLimit: number, region?: Int32Array): NativeDecoded;
  horizontal(
    src: Uint8Array,
    srcWidth: number,
    firstRow: number,
    lastRow: number,
    outWidth: number,
    start: Int32Array,
    len: Int32Array,
    weights: Int32Array,
    stride: number,
    out: Uint8Array,
    /** Caps the instruction set: 3 AVX-512 (the default), 2 AVX2, 1 SSE4.1, 0 the scalar loop. */
    simd?: SimdLevel,
  ): void;
  vertical(
    src: Uint8Array,
    rowBytes: number,
    firstRow: number,
    outHeight: number,
    start: Int32Array,
    len: Int32Array,
    weights: Int32Array,
    stride: number,
    acc: Int32Array,
    out: Uint8Array,
    /** Caps the instruction set as for `horizontal`: below 2, resample.c's loop. */
    simd?: SimdLevel,
  ): void;
}

const BINARY = resolve(import.meta.dirname, "clip-native.linux-x64.node");

let loaded: { addon?: ClipNative; why?: string } | undefined;

/** glibc, not musl: the binary links against glibc's symbol versions. */
function isGlibc(): boolean {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } };
  return typeof report?.header?.glibcVersionRuntime === "string";
}

/** The addon, or why it is not available here (once per thread; a failure is not retried). */
export function loadClipNative(): { addon?: ClipNative; why?: string } {
  loaded ??= (() => {
    if (process.platform !== "linux" || process.arch !== "x64") {
      return { why: `no native build for ${process.platform}-${process.arch}` };
    }
    if (!isGlibc()) return { why: "the native build needs glibc (this is not a glibc system)" };
    if (!existsSync(BINARY)) return { why: `${BINARY} is missing` };
    try {
      return { addon: createRequire(import.meta.url)(BINARY) as ClipNative };
    } catch (err) {
      return { why: `could not load ${BINARY}: ${err instanceof Error ? err.message : err}` };
    }
  })();
  return loaded;
}
