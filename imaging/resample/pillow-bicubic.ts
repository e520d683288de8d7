/** Receives full-size RGB pixels, hands on a window of Pillow's BICUBIC resize of them, bit for bit. */

// A port of Pillow's Resample.c (unchanged in substance since Pillow 4): coefficients computed in
// double, normalised per output pixel, quantised to 22-bit fixed point; a horizontal pass into a
// uint8 intermediate, then a vertical pass. libvips upsamples with a different interpolator and
// edge rule (mean |diff| ~2 grey levels on thumbnails), so upscaling goes through this port.
// Only the requested window is computed: each output pixel depends on its own coefficients alone.

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

/** Fixed-point taps for output pixels [first, first + count) of an inSize → outSize resize. */
interface Taps {
  /** Per output pixel: first input index and number of taps. */
  readonly start: Int32Array;
  readonly length: Int32Array;
  /** `stride` weights per output pixel, 22-bit fixed point. */
  readonly weights: Int32Array;
  readonly stride: number;
}

/** Pillow's precompute_coeffs + normalize_coeffs_8bpc for a window of outputs. */
export function bicubicTaps(inSize: number, outSize: number, first: number, count: number): Taps {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = BICUBIC_SUPPORT * filterScale;
  const stride = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(count);
  const length = new Int32Array(count);
  const weights = new Int32Array(count * stride);
  const raw = new Float64Array(stride);
  // Pillow multiplies by the reciprocal; dividing instead can differ in the last bit.
  const inverseScale = 1 / filterScale;
  for (let i = 0; i < count; i++) {
    const center = (first + i + 0.5) * scale;
    // (int) casts in C truncate toward zero.
    const min = Math.max(Math.trunc(center - support + 0.5), 0);
    const taps = Math.min(Math.trunc(center + support + 0.5), inSize) - min;
    let sum = 0;
    for (let t = 0; t < taps; t++) {
      raw[t] = bicubic((t + min - center + 0.5) * inverseScale);
      sum += raw[t]!;
    }
    for (let t = 0; t < taps; t++) {
      const w = sum !== 0 ? raw[t]! / sum : raw[t]!;
      const fixed = w * (1 << PRECISION_BITS);
      weights[i * stride + t] = w < 0 ? Math.trunc(fixed - 0.5) : Math.trunc(fixed + 0.5);
    }
    start[i] = min;
    length[i] = taps;
  }
  return { start, length, weights, stride };
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
  taps: Taps,
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
