/**
 * The in-Worker resizer for every phone format (name "wasm"): a validated JPEG, HEIC, PNG or WebP
 * in; the same small metadata-free sRGB JPEG the other resizers send out. JPEG goes to the
 * libjpeg-turbo pipeline (core.ts); the others decode at reduced scale into 8-bit RGB here, then
 * share its tail: embedded ICC → sRGB, Pillow bicubic to the target, EXIF/irot/imir orientation,
 * baseline JPEG from the same jpeg.wasm.
 *
 *   HEIC/HEIF  container.ts plans the tiles; hevc.wasm (libde265) decodes one tile at a time into
 *              a box-reduced image (1/k), so a 48 MP grid never exists at full size.
 *   PNG        png.ts: streaming inflate (DecompressionStream) with the inflated size capped by the
 *              header, rows unfiltered and box-reduced as they arrive (16-bit, palette, Adam7,
 *              alpha dropped as the gpu-node drops it, the default image of an APNG).
 *   WebP       webp.wasm (libwebp) decodes straight to the reduced size with its own scaler.
 *
 * Each decoder is instantiated the first time its format arrives, never before.
 */

import { ImageHeaderError } from "../../../imaging/bytes.ts";
import { clipCrop } from "../../../imaging/clip.ts";
import { DecodeError } from "../../../imaging/decode-error.ts";
import { HevcWasm } from "../../../imaging/heif/codec.ts";
import { planHeif } from "../../../imaging/heif/container.ts";
import { type IccStatus, iccToSrgb } from "../../../imaging/icc.ts";
import { JpegWasm, JpegWasmError, type WasmModule } from "../../../imaging/jpeg/codec.ts";
import { decodePngReduced } from "../../../imaging/png/decode.ts";
import { resizeRgb } from "../../../imaging/resample/pillow-bicubic.ts";
import { WebpWasm } from "../../../imaging/webp/codec.ts";
import { HttpError } from "../../errors.ts";
import { eventLoopWasIdle, turn } from "../../event-loop.ts";
import type { ImageFormat } from "../../validate/index.ts";
import type { ResizedImage, ResizeOptions } from "../resizer.ts";
import { targetSize } from "../resizer.ts";
import {
  createJpegWasmResizer,
  orientCropEncode,
  type WasmJpegLimits,
  type WasmJpegResizer,
  type WasmJpegRun,
  type WasmResizeInput,
} from "./core.ts";

const MiB = 1024 * 1024;

/** The compiled modules: workerd's bundled imports, or Node's `compileWasm` of the files. */
export interface WasmModules {
  readonly jpeg: WasmModule;
  readonly hevc: WasmModule;
  readonly webp: WasmModule;
}

export interface WasmLimits extends WasmJpegLimits {
  /** Largest image the container may declare, whatever the header said (default 100 MP). */
  readonly maxPixels?: number;
  /** Cap on a PNG's inflated image data (default 512 MiB: a 48 MP 16-bit RGB is 288 MiB). */
  readonly pngInflatedBytes?: number;
}

/** What the last `resize` did: the JPEG pipeline's fields, with `denom` the reduction factor. */
export interface WasmRun extends WasmJpegRun {
  readonly format: ImageFormat;
}

export interface WasmResizer extends Omit<WasmJpegResizer, "lastRun"> {
  readonly lastRun: WasmRun | undefined;
}

const FORMATS: ReadonlySet<ImageFormat> = new Set(["jpeg", "heic", "png", "webp"]);

/** The reduced-scale decode of one format: stored orientation, 8-bit RGB, `k` source pixels per cell. */
interface Reduced {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
  /** Source pixels per reduced pixel along each axis (the decode's true extent is size / k). */
  readonly k: number;
  readonly icc: Uint8Array | undefined;
  readonly grey?: boolean;
  /** The reduced image's extent in its own pixels, when not exactly the source size / k. */
  readonly extentWidth?: number;
  readonly extentHeight?: number;
}

/**
 * The reduction factor: the largest k whose reduced short side still covers `targetShort`, made
 * larger while the reduced image would exceed `maxBytes` (extreme aspect ratios).
 */
export function reductionFactor(
  width: number,
  height: number,
  targetShort: number,
  bytesPerCell: number,
  maxBytes: number,
): number {
  let k = Math.max(1, Math.floor(Math.min(width, height) / Math.max(1, targetShort)));
  const longest = Math.max(width, height);
  while (k < longest && Math.ceil(width / k) * Math.ceil(height / k) * bytesPerCell > maxBytes) {
    k = Math.min(longest, Math.max(k + 1, Math.ceil(k * 1.25)));
  }
  return k;
}

function now(): number {
  return typeof performance !== "undefined" ? performance.now() : Date.now();
}

const NAMES: Partial<Record<ImageFormat, string>> = { heic: "HEIC", png: "PNG", webp: "WebP" };

/** Decoder failures to the edge's errors: corrupt 422, unsupported variant 415, over memory 422. */
function toHttpError(format: ImageFormat, e: unknown): unknown {
  const name = NAMES[format] ?? format;
  if (e instanceof ImageHeaderError) {
    return new HttpError(422, "unprocessable_image", `corrupt or truncated ${name}: ${e.message}`, {
      cause: e,
    });
  }
  if (e instanceof DecodeError) {
    if (e.kind === "unsupported") {
      return new HttpError(
        415,
        "unsupported_media_type",
        `${name} variant not supported by the in-Worker resizer (${e.message})`,
        { cause: e },
      );
    }
    return new HttpError(
      422,
      "unprocessable_image",
      e.kind === "too_large"
        ? `${name} too large to decode within the Worker's memory (${e.message})`
        : `corrupt or truncated ${name}: ${e.message}`,
      { cause: e },
    );
  }
  if (e instanceof JpegWasmError) {
    return new HttpError(422, "unprocessable_image", `JPEG encode failed: ${e.message}`, {
      cause: e,
    });
  }
  return e;
}

/** The in-Worker resizer for JPEG, HEIC, PNG and WebP. */
export function createWasmResizer(modules: WasmModules, limits: WasmLimits = {}): WasmResizer {
  const recycleAboveBytes = limits.recycleAboveBytes ?? 32 * MiB;
  const decodedBytes = limits.decodedBytes ?? 24 * MiB;
  const maxPixels = limits.maxPixels ?? 100_000_000;
  const pngInflatedBytes = limits.pngInflatedBytes ?? 512 * MiB;
  const jpegCodec = new JpegWasm(modules.jpeg, { recycleAboveBytes });
  const jpeg = createJpegWasmResizer(modules.jpeg, limits, jpegCodec);
  // Instantiated on first use: a Worker that never sees a HEIC never grows libde265's memory.
  let hevc: HevcWasm | undefined;
  let webp: WebpWasm | undefined;
  let lastRun: WasmRun | undefined;

  async function decode(
    input: WasmResizeInput,
    targetShort: number,
  ): Promise<Reduced & { wasmMemoryBytes: number }> {
    const { bytes, format } = input;
    if (format === "heic") {
      const plan = planHeif(bytes, maxPixels);
      const k = reductionFactor(plan.width, plan.height, targetShort, 15, decodedBytes);
      hevc ??= new HevcWasm(modules.hevc, { recycleAboveBytes });
      const r = await hevc.decodeReduced(plan, k);
      return { ...r, icc: plan.colour.icc };
    }
    if (format === "png") {
      const r = await decodePngReduced(bytes, {
        maxPixels,
        maxInflatedBytes: pngInflatedBytes,
        factor: (w, h) => reductionFactor(w, h, targetShort, 15, decodedBytes),
      });
      return { ...r, wasmMemoryBytes: 0 };
    }
    webp ??= new WebpWasm(modules.webp, { recycleAboveBytes });
    return webp.decodeReduced(bytes, (w, h) => reductionFactor(w, h, targetShort, 4, decodedBytes));
  }

  async function resize(input: WasmResizeInput, options: ResizeOptions): Promise<ResizedImage> {
    if (input.format === "jpeg") {
      const out = await jpeg.resize(input, options);
      lastRun = jpeg.lastRun && { ...jpeg.lastRun, format: "jpeg" };
      return out;
    }
    if (!FORMATS.has(input.format)) {
      throw new HttpError(
        415,
        "unsupported_media_type",
        `the in-Worker resizer decodes JPEG, HEIC, PNG and WebP, not ${input.format}`,
      );
    }
    // Orientation from validation: EXIF for PNG/WebP, irot/imir folded into one for HEIC.
    const given = input.orientation;
    const orientation =
      given !== undefined && Number.isInteger(given) && given >= 1 && given <= 8 ? given : 1;
    const swap = orientation >= 5;
    const oriented = swap
      ? { w: input.height, h: input.width }
      : { w: input.width, h: input.height };
    const crop = options.crop224 ? clipCrop(oriented.w, oriented.h) : undefined;
    const target = crop
      ? { width: crop.resizeWidth, height: crop.resizeHeight }
      : targetSize(oriented.w, oriented.h, options.shortSide);
    const tw = swap ? target.height : target.width;
    const th = swap ? target.width : target.height;

    jpegCodec.resetPeak();
    const t0 = now();
    let reduced: Reduced & { wasmMemoryBytes: number };
    try {
      reduced = await decode(input, Math.min(tw, th));
    } catch (e) {
      throw toHttpError(input.format, e);
    }
    const t1 = now();
    let icc: IccStatus = "none";
    if (reduced.icc) {
      const conversion = iccToSrgb(reduced.icc, reduced.grey ? "gray" : "rgb");
      icc = conversion.status;
      conversion.apply?.(reduced.data);
    }
    // The reduced image spans width / k source pixels exactly; its last cell may be partial.
    const stored = resizeRgb(
      reduced.data,
      reduced.width,
      reduced.height,
      tw,
      th,
      reduced.extentWidth ?? input.width / reduced.k,
      reduced.extentHeight ?? input.height / reduced.k,
    );
    const t2 = now();
    const { out, jpeg: bytes } = await orientCropEncode(
      stored,
      orientation,
      crop,
      jpegCodec,
      options.quality,
      (e) => toHttpError(input.format, e),
    );
    const t3 = now();
    // Both instances live side by side: the decoder and the encoder.
    const memory = reduced.wasmMemoryBytes + jpegCodec.peakMemoryBytes;
    lastRun = {
      format: input.format,
      denom: reduced.k,
      decodedWidth: reduced.width,
      decodedHeight: reduced.height,
      orientation,
      progressive: false,
      icc,
      wasmMemoryBytes: memory,
      decodeMs: t1 - t0,
      resizeMs: t2 - t1,
      encodeMs: t3 - t2,
    };
    return { bytes, width: out.width, height: out.height };
  }

  // One resize at a time, in arrival order, with a turn of the event loop before each (see
  // ../../event-loop.ts). They all run on the isolate's one thread: started side by side, a
  // batch's PNG decodes only interleaved at each inflate read, every image finished near the end,
  // and the request's first gpu-node call waited for its last resize (seed workload, batch 32:
  // resize 83 ms, then the calls). In order, the first images go out while the later ones
  // resize, and `lastRun` and the codecs' peak memory are one image's.
  let tail: Promise<unknown> = Promise.resolve();
  let queued = 0;
  const inTurn = (input: WasmResizeInput, options: ResizeOptions): Promise<ResizedImage> => {
    // Nothing ahead of it: the isolate has been waiting for I/O since the last resize.
    if (queued++ === 0) eventLoopWasIdle();
    const run = tail.then(turn).then(() => resize(input, options));
    tail = run
      .catch(() => {})
      .then(() => {
        queued--;
      });
    return run;
  };

  return {
    name: "wasm",
    supports: (format) => FORMATS.has(format),
    resize: inTurn,
    get lastRun() {
      return lastRun;
    },
    /** All WASM linear memory this resizer's instances reached (they live side by side). */
    get peakMemoryBytes() {
      return jpeg.peakMemoryBytes + (hevc?.peakMemoryBytes ?? 0) + (webp?.peakMemoryBytes ?? 0);
    },
  };
}
