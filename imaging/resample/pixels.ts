/** Pixel work around the resize (pillow-bicubic.ts): CMYK → RGB, EXIF orientation, crops. Packed 8-bit RGB, row-major. */
import type { RgbImage as Rgb } from "./pillow-bicubic.ts";

export type { Rgb };

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
