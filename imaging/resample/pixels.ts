/** Pixel work after the scaled decode: CMYK → RGB, a Pillow-style convolution resize, EXIF orientation. Packed 8-bit RGB, row-major. */

export interface Rgb {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

/**
 * CMYK (as libjpeg returns it) to RGB, the naive conversion Pillow and libjpeg's djpeg use for
 * untagged CMYK: R = (255 − C)(255 − K)/255. Files with an Adobe APP14 marker (Photoshop) store
 * the samples inverted, so there R = C·K/255.
 */
export function cmykToRgb(
  src: Uint8Array,
  width: number,
  height: number,
  adobeInverted: boolean,
): Rgb {
  const n = width * height;
  const out = new Uint8Array(n * 3);
  for (let p = 0, q = 0; p < n * 4; p += 4, q += 3) {
    let c = src[p]!;
    let m = src[p + 1]!;
    let y = src[p + 2]!;
    let k = src[p + 3]!;
    if (!adobeInverted) {
      c = 255 - c;
      m = 255 - m;
      y = 255 - y;
      k = 255 - k;
    }
    out[q] = Math.round((c * k) / 255);
    out[q + 1] = Math.round((m * k) / 255);
    out[q + 2] = Math.round((y * k) / 255);
  }
  return { width, height, data: out };
}

/** Pillow's bicubic kernel (a = −0.5), support 2. */
function bicubic(x: number): number {
  const a = -0.5;
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}

interface Taps {
  /** First source index per output pixel. */
  readonly start: Int32Array;
  /** Number of taps per output pixel. */
  readonly count: Int32Array;
  /** `maxTaps` weights per output pixel, normalised to sum 1. */
  readonly weights: Float32Array;
  readonly maxTaps: number;
}

/**
 * Pillow's precompute_coeffs: output pixel i covers [i·scale, (i+1)·scale) of the source extent;
 * the kernel is widened by the scale when downsampling (antialiasing), so any reduction factor is
 * filtered properly. `extent` is the source size in source pixels and may be fractional (the
 * DCT-scaled image's last block can be partial); taps are clamped to `pixels`.
 */
function taps(extent: number, pixels: number, out: number): Taps {
  const scale = extent / out;
  const fscale = Math.max(scale, 1);
  const support = 2 * fscale;
  const maxTaps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(out);
  const count = new Int32Array(out);
  const weights = new Float32Array(out * maxTaps);
  for (let i = 0; i < out; i++) {
    const center = (i + 0.5) * scale;
    const xmin = Math.max(0, Math.floor(center - support + 0.5));
    const xmax = Math.min(pixels, Math.floor(center + support + 0.5));
    let total = 0;
    const n = Math.min(maxTaps, xmax - xmin);
    for (let j = 0; j < n; j++) {
      const w = bicubic((j + xmin - center + 0.5) / fscale);
      weights[i * maxTaps + j] = w;
      total += w;
    }
    if (total !== 0) for (let j = 0; j < n; j++) weights[i * maxTaps + j]! /= total;
    start[i] = xmin;
    count[i] = Math.max(0, n);
  }
  return { start, count, weights, maxTaps };
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
): Rgb {
  if (dw === sw && dh === sh && extentW === sw && extentH === sh) {
    return { width: sw, height: sh, data: src.slice(0, sw * sh * 3) };
  }
  const hx = taps(extentW, sw, dw);
  // 8-bit intermediate like Pillow's: it is never larger than the decoded image.
  const tmp = new Uint8ClampedArray(dw * sh * 3);
  for (let y = 0; y < sh; y++) {
    const row = y * sw * 3;
    const orow = y * dw * 3;
    for (let x = 0; x < dw; x++) {
      const s = hx.start[x]!;
      const n = hx.count[x]!;
      const wo = x * hx.maxTaps;
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
  const vy = taps(extentH, sh, dh);
  // Clamped: stores round to nearest and saturate at 0 and 255.
  const out = new Uint8ClampedArray(dw * dh * 3);
  const acc = new Float32Array(dw * 3);
  const rowLen = dw * 3;
  for (let y = 0; y < dh; y++) {
    acc.fill(0);
    const s = vy.start[y]!;
    const n = vy.count[y]!;
    const wo = y * vy.maxTaps;
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

/** Applies EXIF orientation 1..8 (anything else: as stored) to packed RGB. */
export function orient(img: Rgb, orientation: number): Rgb {
  if (orientation < 2 || orientation > 8) return img;
  const { width: w, height: h, data } = img;
  const swap = orientation >= 5;
  const ow = swap ? h : w;
  const oh = swap ? w : h;
  const out = new Uint8Array(ow * oh * 3);
  for (let r = 0; r < oh; r++) {
    for (let c = 0; c < ow; c++) {
      // Source row/column of output pixel (r, c).
      let sr: number;
      let sc: number;
      switch (orientation) {
        case 2: // mirror horizontal
          sr = r;
          sc = w - 1 - c;
          break;
        case 3: // rotate 180
          sr = h - 1 - r;
          sc = w - 1 - c;
          break;
        case 4: // mirror vertical
          sr = h - 1 - r;
          sc = c;
          break;
        case 5: // transpose
          sr = c;
          sc = r;
          break;
        case 6: // rotate 90 clockwise
          sr = h - 1 - c;
          sc = r;
          break;
        case 7: // transverse
          sr = h - 1 - c;
          sc = w - 1 - r;
          break;
        default: // 8: rotate 90 counter-clockwise
          sr = c;
          sc = w - 1 - r;
      }
      const s = (sr * w + sc) * 3;
      const o = (r * ow + c) * 3;
      out[o] = data[s]!;
      out[o + 1] = data[s + 1]!;
      out[o + 2] = data[s + 2]!;
    }
  }
  return { width: ow, height: oh, data: out };
}

/** The `width` x `height` window of `img` whose top-left pixel is (left, top). */
export function cropRgb(img: Rgb, left: number, top: number, width: number, height: number): Rgb {
  if (left < 0 || top < 0 || left + width > img.width || top + height > img.height) {
    throw new RangeError(
      `crop ${width}x${height}+${left}+${top} outside ${img.width}x${img.height}`,
    );
  }
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const from = ((top + y) * img.width + left) * 3;
    out.set(img.data.subarray(from, from + width * 3), y * width * 3);
  }
  return { width, height, data: out };
}
