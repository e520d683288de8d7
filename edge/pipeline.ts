/** The ingest pipeline for one request: validate every upload, resize each to a small clean JPEG, gpu-node calls of up to GPU_CALL_MAX_IMAGES images as they are resized, per-stage times recorded. */
import type { Admission } from "./admission.ts";
import type { EdgeConfig } from "./config.ts";
import { HttpError, imageLabel } from "./errors.ts";
import { type EmbeddedImages, type GpuClient, gpuNodesFull } from "./gpu-client.ts";
import {
  MAX_JPEG_SIDE,
  orientedClipCrop,
  orientedTargetSize,
  type Resizer,
} from "./resize/resizer.ts";
import { stripJpegMetadata } from "./strip-metadata.ts";
import type { Upload } from "./upload.ts";
import { readHeader, type ValidatedImage, validateImage } from "./validate/index.ts";

export interface ImageReport {
  /** Only when the route asked for it (PipelineDeps.hashOriginals). */
  readonly sha256?: string;
  readonly original: { format: string; width: number; height: number; bytes: number };
  readonly sent: { width: number; height: number; bytes: number };
}

export interface PipelineResult {
  readonly images: ImageReport[];
  readonly embedded: EmbeddedImages;
}

/** Stage timer: the route turns these into Server-Timing entries. */
export type StageTimer = <T>(
  stage: "validate" | "resize" | "gpu",
  work: () => Promise<T>,
) => Promise<T>;

export interface PipelineDeps {
  readonly config: EdgeConfig;
  readonly resizer: Resizer;
  readonly gpu: GpuClient;
  readonly time: StageTimer;
  readonly requestId: string;
  readonly signal?: AbortSignal;
  /** This isolate's adaptive admission (ADAPTIVE_ADMISSION); absent: everything is let in. */
  readonly admission?: Admission;
  /**
   * Report each original's SHA-256 (POST /v1/embeddings returns it). Routes that return no
   * hashes skip it: hashing a 150 KB original cost ~0.35 ms of CPU per image.
   */
  readonly hashOriginals: boolean;
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function runPipeline(
  uploads: readonly Upload[],
  deps: PipelineDeps,
): Promise<PipelineResult> {
  const { config, resizer, gpu, time } = deps;
  const label = (i: number) => imageLabel(i, uploads[i]?.name);

  // Validate everything before any decode: one bad file fails fast and cheaply.
  const valid = await time("validate", async () =>
    uploads.map((u, i) => {
      const v = validateImage(
        u.bytes,
        { maxBytes: config.maxImageBytes, maxPixels: config.maxImagePixels },
        label(i),
      );
      if (!resizer.supports(v.format)) {
        throw new HttpError(
          415,
          "unsupported_media_type",
          `${label(i)}: ${v.format.toUpperCase()} is not supported by the ${resizer.name} resizer`,
        );
      }
      // Nothing is upscaled, so a 65535x1 strip would stay 65535 px long: no JPEG can carry it,
      // and the resizer's failure would read "could not be decoded". Say what is wrong instead.
      const cropped = config.resizeMode === "crop-224" && orientedClipCrop(v) !== undefined;
      const out = orientedTargetSize(v, config.targetShortSide);
      if (!cropped && Math.max(out.width, out.height) > MAX_JPEG_SIDE) {
        throw new HttpError(
          422,
          "unprocessable_image",
          `${label(i)}: ${v.orientedWidth}x${v.orientedHeight} has an extreme aspect ratio: ` +
            `resized to a ${config.targetShortSide}-px short side it would be ` +
            `${out.width}x${out.height}, over the JPEG limit of ${MAX_JPEG_SIDE} px per side`,
        );
      }
      return v;
    }),
  );

  // Every gpu-node refused work moments ago, or this isolate already has as many requests in
  // flight as they took before refusing: answer now, before the resize (the edge's costliest
  // stage), instead of spending it on a call that would be refused too.
  if (gpu.saturated()) throw gpuNodesFull();
  const leave = deps.admission?.enter();
  if (deps.admission && !leave) throw gpuNodesFull();

  let resized: SentImage[];
  let embedded: EmbeddedImages;
  try {
    ({ resized, embedded } = await resizeAndEmbed(valid, deps, label));
  } catch (err) {
    leave?.(err instanceof HttpError && err.code === "overloaded" ? "full" : "other");
    throw err;
  }
  leave?.("answered");
  if (embedded.vectors.length !== uploads.length) {
    throw new HttpError(
      502,
      "bad_gateway",
      "the embedding service returned the wrong number of vectors",
    );
  }

  const images = await Promise.all(
    valid.map(async (v, i) => ({
      ...(deps.hashOriginals ? { sha256: await sha256Hex(v.bytes) } : {}),
      original: {
        format: v.format,
        width: v.orientedWidth,
        height: v.orientedHeight,
        bytes: v.bytes.length,
      },
      sent: {
        width: resized[i]!.width,
        height: resized[i]!.height,
        bytes: resized[i]!.bytes.length,
      },
    })),
  );
  return { images, embedded };
}

/**
 * `n` images in ⌈n / perCall⌉ calls of near-equal size (GPU_CALL_MAX_IMAGES): [first, end) each.
 * Each call is sent as soon as its images are resized, so that the later images resize while the
 * first cross the link and are decoded (on a multi-process gpu-node, by other processes: each call
 * may take its own connection). One call for all of them ran resize, transfer, decode and
 * inference one after the other: at batch 32 of the seed's workload their sum was the call's time.
 */
export function gpuCallRanges(n: number, perCall: number): [number, number][] {
  const calls = Math.max(1, Math.ceil(n / perCall));
  return Array.from({ length: calls }, (_, k) => [
    Math.floor((k * n) / calls),
    Math.floor(((k + 1) * n) / calls),
  ]);
}

/**
 * Resizes every image and embeds them in calls of GPU_CALL_MAX_IMAGES, each call starting once
 * its own images are resized. The first failure (a resize's 422, a call's error) aborts the
 * calls still running and is what the client hears. Server-Timing's `resize` spans until the
 * last image is resized and `gpu` from the first call's start to the last answer: they overlap.
 */
async function resizeAndEmbed(
  valid: readonly ValidatedImage[],
  deps: PipelineDeps,
  label: (i: number) => string,
): Promise<{ resized: SentImage[]; embedded: EmbeddedImages }> {
  const { gpu, time } = deps;
  const abort = new AbortController();
  const onAbort = () => abort.abort(deps.signal?.reason);
  deps.signal?.addEventListener("abort", onAbort);
  try {
    const resizing = resizeAll(valid, deps, label);
    const all = time("resize", () => Promise.all(resizing));
    const ranges = gpuCallRanges(valid.length, deps.config.gpuCallMaxImages);
    const embedRange = async ([first, end]: [number, number]) => {
      const mine = await Promise.all(resizing.slice(first, end));
      return gpu.embed(
        mine.map((r) => r.bytes),
        deps.requestId,
        abort.signal,
        first,
      );
    };
    // `gpu` starts with the first call, once its images are resized.
    const calls = Promise.all(resizing.slice(...ranges[0]!)).then(() =>
      time("gpu", () => Promise.all(ranges.map(embedRange))),
    );
    const [resized, parts] = await Promise.all([all, calls]).catch((err: unknown) => {
      abort.abort(err);
      throw err;
    });
    return { resized, embedded: mergeCalls(parts) };
  } finally {
    deps.signal?.removeEventListener("abort", onAbort);
  }
}

/** The calls' answers as one: vectors in order; per stage the slowest call's time. */
function mergeCalls(parts: readonly EmbeddedImages[]): EmbeddedImages {
  const first = parts[0]!;
  if (parts.length === 1) return first;
  // Calls of one request may land on different gpu-nodes: never mix two models' vectors.
  if (parts.some((p) => p.model !== first.model || p.modelVersion !== first.modelVersion)) {
    throw new HttpError(
      503,
      "unavailable",
      "the embedding service is changing models; retry shortly",
      { retryAfter: 1 },
    );
  }
  const timings = parts.every((p) => p.timings)
    ? {
        ...first.timings!,
        decodeUs: Math.max(...parts.map((p) => p.timings!.decodeUs)),
        preprocessUs: Math.max(...parts.map((p) => p.timings!.preprocessUs)),
        queueUs: Math.max(...parts.map((p) => p.timings!.queueUs)),
        inferenceUs: Math.max(...parts.map((p) => p.timings!.inferenceUs)),
        totalUs: Math.max(...parts.map((p) => p.timings!.totalUs)),
      }
    : undefined;
  return {
    ...first,
    vectors: parts.flatMap((p) => p.vectors),
    timings,
    attempts: Math.max(...parts.map((p) => p.attempts)),
  };
}

interface SentImage {
  readonly bytes: Uint8Array;
  readonly width: number;
  readonly height: number;
}

/** Each validated upload to the small metadata-free JPEG the gpu-node gets, all started at once. */
function resizeAll(
  valid: readonly ValidatedImage[],
  { config, resizer }: PipelineDeps,
  label: (i: number) => string,
): Promise<SentImage>[] {
  return valid.map(async (v, i) => {
    try {
      const out = await resizer.resize(
        {
          bytes: v.bytes,
          format: v.format,
          width: v.width,
          height: v.height,
          orientation: v.orientation,
        },
        {
          shortSide: config.targetShortSide,
          quality: config.jpegQuality,
          crop224: config.resizeMode === "crop-224",
        },
      );
      const bytes = stripJpegMetadata(out.bytes);
      const header = readHeader(bytes, "jpeg");
      return { bytes, width: header.width, height: header.height };
    } catch (err) {
      if (err instanceof HttpError && err.status < 500) {
        throw new HttpError(err.status, err.code, `${label(i)}: ${err.message}`, {
          cause: err,
        });
      }
      throw err;
    }
  });
}
