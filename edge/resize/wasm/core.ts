/**
 * The in-Worker JPEG resizer's pipeline, independent of how the WASM module is loaded (workerd
 * bundles it: ../wasm-jpeg.ts; Node compiles it from the file: tests and the benchmark).
 *
 *   DCT-domain scaled decode (libjpeg-turbo, 1/1..1/8: never a full-size decode of a large photo)
 *   → RGB (grey, YCbCr, RGB, CMYK/YCCK with Adobe inversion) → embedded ICC profile to sRGB
 *   (matrix/TRC and grey profiles, icc.ts) → antialiased bicubic resize to the target → EXIF
 *   orientation → baseline JPEG, JFIF APP0 only.
 */

import { clipCrop } from "../../../imaging/clip.ts";
import {
  type IccStatus,
  iccToSrgb,
  type JpegColour,
  type SrgbConversion,
} from "../../../imaging/icc.ts";
import {
  ColorSpace,
  type JpegHeader,
  JpegWasm,
  JpegWasmError,
  type WasmModule,
} from "../../../imaging/jpeg/codec.ts";
import { countScans, readExifOrientation, readIccProfile } from "../../../imaging/jpeg/markers.ts";
import { resizeRgb } from "../../../imaging/resample/pillow-bicubic.ts";
import { cmykToRgb, cropRgb, orient, type Rgb } from "../../../imaging/resample/pixels.ts";
import { HttpError } from "../../errors.ts";
import type { ResizedImage, ResizeInput, ResizeOptions, Resizer } from "../resizer.ts";
import { targetSize } from "../resizer.ts";

const MiB = 1024 * 1024;

/** Input that may carry the EXIF orientation already read by validation. */
export type WasmResizeInput = ResizeInput & { readonly orientation?: number };

export interface WasmJpegLimits {
  /** libjpeg's cap for a progressive file's whole-image coefficient buffer (default 64 MiB). */
  readonly libjpegBytes?: number;
  /** Cap for the scaled decode's pixels (default 24 MiB; only extreme aspect ratios reach it). */
  readonly decodedBytes?: number;
  /** Most SOS markers accepted (default 500, as TurboJPEG's TJFLAG_LIMITSCANS). */
  readonly maxScans?: number;
  /** Drop the WASM instance after a call that grew its memory past this (default 32 MiB). */
  readonly recycleAboveBytes?: number;
}

/** What the last `resize` did; for Server-Timing, logs, tests and the benchmark. */
export interface WasmJpegRun {
  /** DCT scale denominator used for the decode: 1, 2, 4 or 8. */
  readonly denom: number;
  readonly decodedWidth: number;
  readonly decodedHeight: number;
  readonly orientation: number;
  readonly progressive: boolean;
  /** What became of the embedded ICC profile (see icc.ts). */
  readonly icc: IccStatus;
  /** WASM linear memory after the call (it only grows while an instance lives). */
  readonly wasmMemoryBytes: number;
  readonly decodeMs: number;
  /** Colour conversion (when any) and resize. */
  readonly resizeMs: number;
  readonly encodeMs: number;
}

export interface WasmJpegResizer extends Resizer {
  readonly name: "wasm";
  resize(input: WasmResizeInput, options: ResizeOptions): Promise<ResizedImage>;
  /** Details of the last successful `resize`. */
  readonly lastRun: WasmJpegRun | undefined;
  /** Largest WASM linear memory seen by any `resize` of this resizer (bytes). */
  readonly peakMemoryBytes: number;
}

/** The largest denominator in 8, 4, 2, 1 whose scaled short side still covers `targetShort`. */
export function chooseDenom(
  width: number,
  height: number,
  targetShort: number,
  channels: number,
  maxDecodedBytes: number,
): 1 | 2 | 4 | 8 {
  const short = Math.min(width, height);
  const denoms = [8, 4, 2, 1] as const;
  let pick: 1 | 2 | 4 | 8 = 1;
  for (const d of denoms) {
    if (Math.ceil(short / d) >= targetShort) {
      pick = d;
      break;
    }
  }
  // Extreme aspect ratios: shrink further rather than allocate past the cap.
  for (const d of denoms.slice().reverse()) {
    if (d < pick) continue;
    pick = d;
    if (Math.ceil(width / d) * Math.ceil(height / d) * channels <= maxDecodedBytes) break;
  }
  return pick;
}

function now(): number {
  return typeof performance !== "undefined" ? performance.now() : Date.now();
}

function jpegColour(colorSpace: number): JpegColour {
  if (colorSpace === ColorSpace.GRAY) return "gray";
  return colorSpace === ColorSpace.CMYK || colorSpace === ColorSpace.YCCK ? "cmyk" : "rgb";
}

/** The profile read from APP2 before decoding, matched against the JPEG's colour once known. */
function conversionFor(
  profile: ReturnType<typeof readIccProfile>,
  colorSpace: number,
): SrgbConversion {
  if (profile === undefined) return { status: "none" };
  if (profile === "malformed") return { status: "ignored:malformed" };
  return iccToSrgb(profile, jpegColour(colorSpace));
}

/**
 * The last stage of every in-Worker resize: EXIF orientation, the optional 224x224 centre crop
 * (crop-224), then the metadata-free JPEG. `toError` words an encoder failure for the client.
 */
export async function orientCropEncode(
  stored: Rgb,
  orientation: number,
  crop: ReturnType<typeof clipCrop>,
  codec: JpegWasm,
  quality: number,
  toError: (e: unknown) => unknown,
): Promise<{ out: Rgb; jpeg: Uint8Array }> {
  const oriented = orient(stored, orientation);
  const out = crop ? cropRgb(oriented, crop.left, crop.top, crop.size, crop.size) : oriented;
  try {
    return { out, jpeg: await codec.encode(out.data, out.width, out.height, quality) };
  } catch (e) {
    throw toError(e);
  }
}

function toHttpError(e: unknown): unknown {
  if (!(e instanceof JpegWasmError)) return e;
  switch (e.kind) {
    case "unsupported":
      return new HttpError(
        415,
        "unsupported_media_type",
        `JPEG variant not supported by the in-Worker resizer (${e.message}); it decodes 8-bit baseline, extended, progressive and arithmetic-coded JPEG`,
        { cause: e },
      );
    case "too_large":
      return new HttpError(
        422,
        "unprocessable_image",
        `JPEG too large to decode within the Worker's memory (${e.message})`,
        { cause: e },
      );
    default:
      return new HttpError(422, "unprocessable_image", `corrupt or truncated JPEG: ${e.message}`, {
        cause: e,
      });
  }
}

/** The in-Worker resizer for JPEG over a compiled jpeg.wasm module. */
export function createJpegWasmResizer(
  module: WasmModule,
  limits: WasmJpegLimits = {},
  /** An instance to share (the multi-format resizer encodes its output with the same one). */
  shared?: JpegWasm,
): WasmJpegResizer {
  const libjpegBytes = limits.libjpegBytes ?? 64 * MiB;
  const decodedBytes = limits.decodedBytes ?? 24 * MiB;
  const maxScans = limits.maxScans ?? 500;
  const codec =
    shared ?? new JpegWasm(module, { recycleAboveBytes: limits.recycleAboveBytes ?? 32 * MiB });
  let lastRun: WasmJpegRun | undefined;
  let peak = 0;

  async function resize(input: WasmResizeInput, options: ResizeOptions): Promise<ResizedImage> {
    if (input.format !== "jpeg") {
      throw new HttpError(
        415,
        "unsupported_media_type",
        `the in-Worker resizer decodes JPEG only, not ${input.format}`,
      );
    }
    const bytes = input.bytes;
    if (countScans(bytes, maxScans + 1) > maxScans) {
      throw new HttpError(422, "unprocessable_image", `JPEG has more than ${maxScans} scans`);
    }
    const given = input.orientation;
    const orientation =
      given !== undefined && Number.isInteger(given) && given >= 1 && given <= 8
        ? given
        : readExifOrientation(bytes);
    const swap = orientation >= 5;
    const profile = readIccProfile(bytes);
    let icc: IccStatus = "none";

    // The oriented output size: the short-side target, or (crop-224) open_clip's resize, cut
    // to its 224x224 centre after orienting.
    let crop: ReturnType<typeof clipCrop>;
    const target = (h: JpegHeader) => {
      const oriented = swap ? { w: h.height, h: h.width } : { w: h.width, h: h.height };
      crop = options.crop224 ? clipCrop(oriented.w, oriented.h) : undefined;
      return crop
        ? { width: crop.resizeWidth, height: crop.resizeHeight }
        : targetSize(oriented.w, oriented.h, options.shortSide);
    };

    codec.resetPeak();
    const t0 = now();
    let t1 = t0;
    let header: JpegHeader | undefined;
    let denom = 1;
    let decoded = { width: 0, height: 0 };
    let stored: Rgb;
    try {
      stored = await codec.decode(
        bytes,
        (h) => {
          header = h;
          const t = target(h);
          const channels = h.colorSpace === ColorSpace.CMYK || h.colorSpace === ColorSpace.YCCK;
          denom = chooseDenom(
            h.width,
            h.height,
            Math.min(t.width, t.height),
            channels ? 4 : 3,
            decodedBytes,
          );
          return denom as 1 | 2 | 4 | 8;
        },
        { libjpegBytes, outputBytes: decodedBytes },
        (px, h) => {
          t1 = now();
          decoded = { width: px.width, height: px.height };
          const t = target(h);
          const tw = swap ? t.height : t.width;
          const th = swap ? t.width : t.height;
          const conversion = conversionFor(profile, h.colorSpace);
          icc = conversion.status;
          // In place: px.data is libjpeg's output buffer, read once more by the resize below.
          const rgb =
            px.channels === 4 ? cmykToRgb(px.data, px.width, px.height, h.adobe).data : px.data;
          conversion.apply?.(rgb);
          // The decoded image spans width/denom source pixels exactly; its last block may be partial.
          return resizeRgb(rgb, px.width, px.height, tw, th, h.width / denom, h.height / denom);
        },
      );
    } catch (e) {
      throw toHttpError(e);
    }
    const t2 = now();
    const { out, jpeg } = await orientCropEncode(
      stored,
      orientation,
      crop,
      codec,
      options.quality,
      toHttpError,
    );
    const t3 = now();
    const runPeak = codec.peakMemoryBytes;
    peak = Math.max(peak, runPeak);
    lastRun = {
      denom,
      decodedWidth: decoded.width,
      decodedHeight: decoded.height,
      orientation,
      progressive: header?.progressive ?? false,
      icc,
      wasmMemoryBytes: runPeak,
      decodeMs: t1 - t0,
      resizeMs: t2 - t1,
      encodeMs: t3 - t2,
    };
    return { bytes: jpeg, width: out.width, height: out.height };
  }

  return {
    name: "wasm",
    supports: (format) => format === "jpeg",
    resize,
    get lastRun() {
      return lastRun;
    },
    get peakMemoryBytes() {
      return Math.max(peak, codec.peakMemoryBytes);
    },
  };
}
