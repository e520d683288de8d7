/** The one Pillow BICUBIC: RGB pixels in; a window of Pillow's resize of them, bit for bit (the gpu-node), or a float resize of a DCT-scaled decode with fractional extents (the edge) out. */

// A port of Pillow's Resample.c (unchanged in substance since Pillow 4): one kernel and one
// precompute_coeffs (in double) for both paths, then either Pillow's normalisation to 22-bit fixed
// point with a horizontal pass into a uint8 intermediate and a vertical pass (resizeBicubicWindow,
// and wasm/resample.c through bicubic-wasm.ts), or float32 weights (resizeRgb). libvips upsamples
// with a different interpolator and edge rule (mean |diff| ~2 grey levels on thumbnails), so the
// gpu-node upscales through this port. Only the requested window is computed: each output pixel
// depends on its own coefficients alone.

const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);
const BICUBIC_SUPPORT = 2;

/** Pillow's bicubic filter, a = -0.5 (Catmull-Rom). */
function bicubic(distance: number): number {
  const a = -0.5;
  const x = Math.abs(distance);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/** Per output pixel: first input index, number of taps, and `stride` weights each. */
interface Taps<W extends Int32Array | Float32Array | Float64Array> {
  readonly start: Int32Array;
  readonly length: Int32Array;
  readonly weights: W;
  readonly stride: number;
}

/**
 * Pillow's precompute_coeffs for outputs [first, first + count): output pixel i covers
 * [i·scale, (i+1)·scale) of the source; the kernel is widened by the scale when downsampling
 * (antialiasing). `extent` is the source's size in source pixels and may be fractional (a
 * DCT-scaled decode's last block can be partial); taps are clamped to the `pixels` there are.
 * The weights are the kernel's raw values, `sums` their sum per output (normalised by the caller).
 */
function coefficients(
  extent: number,
  pixels: number,
  outSize: number,
  first: number,
  count: number,
  divide = false,
): Taps<Float64Array> & { readonly sums: Float64Array } {
  const scale = extent / outSize;
  const filterScale = Math.max(scale, 1);
  const support = BICUBIC_SUPPORT * filterScale;
  const stride = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(count);
  const length = new Int32Array(count);
  const weights = new Float64Array(count * stride);
  const sums = new Float64Array(count);
  // Pillow multiplies by the reciprocal; dividing instead can differ in the last bit. The edge's
  // float path has always divided, and its output bytes are kept as they are (`divide`).
  const inverseScale = 1 / filterScale;
  for (let i = 0; i < count; i++) {
    const center = (first + i + 0.5) * scale;
    // (int) casts in C truncate toward zero.
    const min = Math.max(Math.trunc(center - support + 0.5), 0);
    // Never negative with whole extents; a fractional one can leave an output past the pixels.
    const taps = Math.max(Math.min(Math.trunc(center + support + 0.5), pixels) - min, 0);
    let sum = 0;
    for (let t = 0; t < taps; t++) {
      const x = t + min - center + 0.5;
      const w = bicubic(divide ? x / filterScale : x * inverseScale);
      weights[i * stride + t] = w;
      sum += w;
    }
    start[i] = min;
    length[i] = taps;
    sums[i] = sum;
  }
  return { start, length, weights, sums, stride };
}

/** Pillow's normalize_coeffs_8bpc: taps for a window of outputs in 22-bit fixed point. */
export function bicubicTaps(
  inSize: number,
  outSize: number,
  first: number,
  count: number,
): Taps<Int32Array> {
  const c = coefficients(inSize, inSize, outSize, first, count);
  const weights = new Int32Array(c.weights.length);
  for (let i = 0; i < count; i++) {
    const sum = c.sums[i]!;
    for (let t = 0, k = i * c.stride; t < c.length[i]!; t++, k++) {
      const w = sum !== 0 ? c.weights[k]! / sum : c.weights[k]!;
      const fixed = w * (1 << PRECISION_BITS);
      weights[k] = w < 0 ? Math.trunc(fixed - 0.5) : Math.trunc(fixed + 0.5);
    }
  }
  return { start: c.start, length: c.length, weights, stride: c.stride };
}

/**
 * The same taps as float32 weights normalised to sum 1 (the raw value is rounded to float32
 * first, then divided), for the edge's float resize of a DCT-scaled decode. Its kernel argument is
 * divided by the filter scale, not multiplied by the reciprocal: the float32 weights then differ
 * from Pillow's in the last bit for about a third of downscales, though no output byte differed
 * in 44 M sampled; kept so that the edge's output stays byte-identical.
 */
function floatTaps(extent: number, pixels: number, outSize: number): Taps<Float32Array> {
  const c = coefficients(extent, pixels, outSize, 0, outSize, true);
  const weights = new Float32Array(c.weights);
  for (let i = 0; i < outSize; i++) {
    const sum = c.sums[i]!;
    if (sum === 0) continue;
    for (let t = 0, k = i * c.stride; t < c.length[i]!; t++, k++) weights[k]! /= sum;
  }
  return { start: c.start, length: c.length, weights, stride: c.stride };
}

function clip8(sum: number): number {
  if (sum >= 1 << (PRECISION_BITS + 8)) return 255;
  if (sum <= 0) return 0;
  return sum >> PRECISION_BITS;
}

export interface RgbImage {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
}

export interface ResizeWindow {
  /** Size of the whole resized image. */
  readonly outWidth: number;
  readonly outHeight: number;
  /** The part of it to produce. */
  readonly left: number;
  readonly top: number;
  readonly width: number;
  readonly height: number;
}

/**
 * The `window` of Pillow's `image.resize((outWidth, outHeight), BICUBIC)` for an RGB image, as
 * packed RGB. Written into `out` when given (window.width * window.height * 3 bytes).
 */
export function resizeBicubicWindow(
  image: RgbImage,
  window: ResizeWindow,
  out: Uint8Array = new Uint8Array(window.width * window.height * 3),
): Uint8Array {
  const rows = bicubicTaps(image.height, window.outHeight, window.top, window.height);
  // Pillow skips a pass whose size does not change; the pass would be an identity anyway.
  const needsVertical = window.outHeight !== image.height;
  const firstRow = needsVertical ? rows.start[0]! : window.top;
  const lastRow = needsVertical
    ? rows.start[window.height - 1]! + rows.length[window.height - 1]!
    : window.top + window.height;
  const horizontal =
    window.outWidth !== image.width
      ? resampleRows(image, window, firstRow, lastRow)
      : cropColumns(image, window.left, window.width, firstRow, lastRow);
  if (!needsVertical) {
    out.set(horizontal.subarray(0, out.length));
    return out;
  }
  resampleColumns(horizontal, window.width, firstRow, rows, out);
  return out;
}

/** Horizontal pass over input rows [firstRow, lastRow): one uint8 row of window.width per row. */
function resampleRows(
  image: RgbImage,
  window: ResizeWindow,
  firstRow: number,
  lastRow: number,
): Uint8Array {
  const taps = bicubicTaps(image.width, window.outWidth, window.left, window.width);
  const out = new Uint8Array((lastRow - firstRow) * window.width * 3);
  const src = image.data;
  let o = 0;
  for (let y = firstRow; y < lastRow; y++) {
    const rowStart = y * image.width * 3;
    for (let x = 0; x < window.width; x++) {
      const k = x * taps.stride;
      let p = rowStart + taps.start[x]! * 3;
      let r = HALF;
      let g = HALF;
      let b = HALF;
      for (let t = 0, n = taps.length[x]!; t < n; t++, p += 3) {
        const w = taps.weights[k + t]!;
        r += src[p]! * w;
        g += src[p + 1]! * w;
        b += src[p + 2]! * w;
      }
      out[o++] = clip8(r);
      out[o++] = clip8(g);
      out[o++] = clip8(b);
    }
  }
  return out;
}

function cropColumns(
  image: RgbImage,
  left: number,
  width: number,
  firstRow: number,
  lastRow: number,
): Uint8Array {
  const out = new Uint8Array((lastRow - firstRow) * width * 3);
  for (let y = firstRow; y < lastRow; y++) {
    const from = (y * image.width + left) * 3;
    out.set(image.data.subarray(from, from + width * 3), (y - firstRow) * width * 3);
  }
  return out;
}

/** Vertical pass: rows of `src` start at input row `firstRow`. */
function resampleColumns(
  src: Uint8Array,
  width: number,
  firstRow: number,
  taps: Taps<Int32Array>,
  out: Uint8Array,
): void {
  const rowBytes = width * 3;
  const rows = taps.start.length;
  let o = 0;
  for (let y = 0; y < rows; y++) {
    const k = y * taps.stride;
    const top = (taps.start[y]! - firstRow) * rowBytes;
    const n = taps.length[y]!;
    for (let c = 0; c < rowBytes; c++) {
      let sum = HALF;
      for (let t = 0, p = top + c; t < n; t++, p += rowBytes) sum += src[p]! * taps.weights[k + t]!;
      out[o++] = clip8(sum);
    }
  }
}

/**
 * Resizes packed RGB with separable antialiased bicubic convolution (Pillow's `Image.resize`
 * with BICUBIC: the filter the gpu-node and open_clip use), horizontal pass first, 8-bit
 * rounded intermediate as in Pillow. `extentW`/`extentH` give the source's true extent (defaults: its pixel size).
 */
export function resizeRgb(
  src: Uint8Array,
  sw: number,
  sh: number,
  dw: number,
  dh: number,
  extentW = sw,
  extentH = sh,
): RgbImage {
  if (dw === sw && dh === sh && extentW === sw && extentH === sh) {
    return { width: sw, height: sh, data: src.slice(0, sw * sh * 3) };
  }
  const hx = floatTaps(extentW, sw, dw);
  // 8-bit intermediate like Pillow's: it is never larger than the decoded image.
  const tmp = new Uint8ClampedArray(dw * sh * 3);
  for (let y = 0; y < sh; y++) {
    const row = y * sw * 3;
    const orow = y * dw * 3;
    for (let x = 0; x < dw; x++) {
      const s = hx.start[x]!;
      const n = hx.length[x]!;
      const wo = x * hx.stride;
      let r = 0;
      let g = 0;
      let b = 0;
      for (let j = 0, p = row + s * 3; j < n; j++, p += 3) {
        const w = hx.weights[wo + j]!;
        r += src[p]! * w;
        g += src[p + 1]! * w;
        b += src[p + 2]! * w;
      }
      const o = orow + x * 3;
      tmp[o] = r;
      tmp[o + 1] = g;
      tmp[o + 2] = b;
    }
  }
  const vy = floatTaps(extentH, sh, dh);
  // Clamped: stores round to nearest and saturate at 0 and 255.
  const out = new Uint8ClampedArray(dw * dh * 3);
  const acc = new Float32Array(dw * 3);
  const rowLen = dw * 3;
  for (let y = 0; y < dh; y++) {
    acc.fill(0);
    const s = vy.start[y]!;
    const n = vy.length[y]!;
    const wo = y * vy.stride;
    for (let j = 0; j < n; j++) {
      const w = vy.weights[wo + j]!;
      const base = (s + j) * rowLen;
      for (let k = 0; k < rowLen; k++) acc[k]! += tmp[base + k]! * w;
    }
    const o = y * rowLen;
    for (let k = 0; k < rowLen; k++) out[o + k] = acc[k]!;
  }
  return { width: dw, height: dh, data: new Uint8Array(out.buffer) };
}
