/** The EmbedderService handlers: admit a call, decode its images, queue them for the micro-batcher, answer with vectors and timings. */
import { Readable } from "node:stream";
import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type EmbedderService,
  type EmbedRequest,
  type EmbedResponse,
  EmbedResponseSchema,
  type EmbedStreamRequest,
  type EmbedStreamResponse,
  EmbedStreamResponseSchema,
  GetModelInfoResponseSchema,
  type Image,
  InputLayout,
  type Timings,
  TimingsSchema,
} from "../../proto/gen/embedder/v1/embedder_pb.js";
import type { ModelDescription } from "../backends/backend.ts";
import { INPUT_SIZE } from "../backends/backend.ts";
import type { ImageBatcher, ImageResult } from "../batching/batcher.ts";
import type { Config } from "../config.ts";
import { ImageError } from "../preprocess/image-errors.ts";
import { Semaphore } from "./admission.ts";
import { imageFailure, overloaded } from "./errors.ts";

/**
 * Decodes one encoded image to the model's 224x224 RGB pixels (preprocess/decode.ts in
 * production). `signal` is the call's: a decoder may skip the work once it has aborted.
 */
export type Decoder = (
  data: Uint8Array,
  limits: { readonly maxPixels: number; readonly maxBytes: number },
  signal?: AbortSignal,
) => Promise<{ readonly pixels: Uint8Array }>;

export interface EmbedServiceDeps {
  readonly config: Config;
  readonly model: ModelDescription;
  readonly batcher: ImageBatcher;
  /** Images admitted at once across all calls (config.maxQueuedImages). */
  readonly admission: Semaphore;
  /** Images being decoded at once (config.decodeConcurrency). */
  readonly decodeSlots: Semaphore;
  readonly decode: Decoder;
  /**
   * Hands an image's pixels back to the decoder's pool once the batcher has settled it. Only for a
   * batcher that is done with the pixels by then (the in-process MicroBatcher copies them into its
   * batch tensor at dispatch); absent when they travel to another process.
   */
  readonly releasePixels?: (pixels: Uint8Array) => void;
  readonly now?: () => number;
}

interface ImageOutcome extends ImageResult {
  readonly decodeUs: number;
}

const us = (ms: number) => Math.max(0, Math.round(ms * 1000));

/** The call's own signal, plus `fallbackMs` when the client set no deadline of its own. */
function withDefaultDeadline(ctx: HandlerContext, fallbackMs: number): AbortSignal {
  return ctx.timeoutMs() === undefined
    ? AbortSignal.any([ctx.signal, AbortSignal.timeout(fallbackMs)])
    : ctx.signal;
}

export function createEmbedService(deps: EmbedServiceDeps): ServiceImpl<typeof EmbedderService> {
  const { config, model, batcher, admission, decodeSlots, decode } = deps;
  const now = deps.now ?? (() => performance.now());
  const limits = { maxPixels: config.maxImagePixels, maxBytes: config.maxImageBytes };

  /**
   * Decode then batch one image; an ImageError becomes InvalidArgument naming the image. The
   * batcher was told the image is coming (`batcher.expect(1)`) when it was admitted; this says
   * when it arrives or drops out.
   */
  async function embedOne(image: Image, index: number, signal: AbortSignal): Promise<ImageOutcome> {
    const t0 = now();
    let pixels: Uint8Array;
    try {
      ({ pixels } = await decodeSlots.with(1, signal, () => decode(image.data, limits, signal)));
      signal.throwIfAborted();
    } catch (err) {
      batcher.expect(-1);
      if (err instanceof ImageError) throw imageFailure(index, image.id, err);
      throw err;
    }
    const decodeUs = us(now() - t0);
    const queued = batcher.embed(pixels, signal);
    batcher.expect(-1);
    try {
      return { ...(await queued), decodeUs };
    } finally {
      deps.releasePixels?.(pixels);
    }
  }

  function checkSize(image: Image, index: number): void {
    if (image.data.byteLength > config.maxImageBytes) {
      throw imageFailure(
        index,
        image.id,
        new ImageError(
          "too_large",
          `image is ${image.data.byteLength} bytes; the limit is ${config.maxImageBytes}`,
        ),
      );
    }
  }

  function timings(outcomes: readonly ImageOutcome[], totalMs: number): Timings {
    const max = (f: (o: ImageOutcome) => number) => outcomes.reduce((m, o) => Math.max(m, f(o)), 0);
    return create(TimingsSchema, {
      decodeUs: max((o) => o.decodeUs),
      preprocessUs: max((o) => o.packUs),
      queueUs: max((o) => o.queueUs),
      inferenceUs: max((o) => o.inferUs),
      totalUs: us(totalMs),
    });
  }

  const vectorBytes = (v: Float32Array) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

  async function embed(req: EmbedRequest, ctx: HandlerContext): Promise<EmbedResponse> {
    const started = now();
    const n = req.images.length;
    if (n === 0) throw new ConnectError("request has no images", Code.InvalidArgument);
    if (n > config.maxImagesPerRequest) {
      throw new ConnectError(
        `request has ${n} images; the limit is ${config.maxImagesPerRequest} per request`,
        Code.InvalidArgument,
      );
    }
    req.images.forEach(checkSize);
    if (!admission.tryAcquire(n)) {
      throw overloaded(`${admission.inUse} of ${admission.capacity} image slots in use`);
    }
    batcher.expect(n);
    // One failing image cancels the rest of its call, and nothing else.
    const call = new AbortController();
    const signal = AbortSignal.any([
      withDefaultDeadline(ctx, config.defaultDeadlineMs),
      call.signal,
    ]);
    const tasks = req.images.map((image, i) => embedOne(image, i, signal));
    try {
      const outcomes = await Promise.all(tasks);
      return create(EmbedResponseSchema, {
        embeddings: outcomes.map((o, i) => ({
          id: req.images[i]!.id,
          index: i,
          vector: vectorBytes(o.vector),
        })),
        model: model.name,
        modelVersion: model.version,
        dimension: model.dimension,
        timings: timings(outcomes, now() - started),
      });
    } catch (err) {
      call.abort(err);
      // Hold the slots until every image of this call has stopped using CPU or memory.
      await Promise.allSettled(tasks);
      throw err;
    } finally {
      admission.release(n);
    }
  }

  async function* embedStream(
    requests: AsyncIterable<EmbedStreamRequest>,
    ctx: HandlerContext,
  ): AsyncIterable<EmbedStreamResponse> {
    const stream = new AbortController();
    // A bulk stream may legitimately run long: without a client deadline it gets the maximum.
    const signal = AbortSignal.any([withDefaultDeadline(ctx, config.maxDeadlineMs), stream.signal]);
    // Results in the order they finish. highWaterMark only sizes the buffer hint; the real
    // bound on memory is maxStreamInFlight, enforced before reading the next request.
    const out = new Readable({ objectMode: true, read() {} });
    const inFlight = new Semaphore(config.maxStreamInFlight);

    const one = async (image: Image, index: number): Promise<EmbedStreamResponse> => {
      const started = now();
      const base = { id: image.id, index, dimension: model.dimension };
      try {
        checkSize(image, index);
        await admission.acquire(1, signal);
        batcher.expect(1);
        try {
          const o = await embedOne(image, index, signal);
          return create(EmbedStreamResponseSchema, {
            ...base,
            result: { case: "vector", value: vectorBytes(o.vector) },
            timings: timings([o], now() - started),
          });
        } finally {
          admission.release(1);
        }
      } catch (err) {
        // A bad image is a per-item error; anything else (cancelled, deadline) ends the stream.
        if (err instanceof ConnectError && err.code === Code.InvalidArgument && !signal.aborted) {
          return create(EmbedStreamResponseSchema, {
            ...base,
            result: { case: "error", value: { code: "invalid_argument", message: err.rawMessage } },
          });
        }
        throw err;
      }
    };

    const pump = async () => {
      let index = 0;
      for await (const req of requests) {
        await inFlight.acquire(1, signal);
        const i = index++;
        const image = req.image ?? ({ id: "", data: new Uint8Array() } as Image);
        one(image, i).then(
          (res) => {
            inFlight.release(1);
            out.push(res);
          },
          (err: unknown) => {
            inFlight.release(1);
            stream.abort(err);
            out.destroy(err instanceof Error ? err : new Error(String(err)));
          },
        );
      }
      // Every request is read: wait for the last results, then end the stream.
      await inFlight.acquire(config.maxStreamInFlight, signal);
      out.push(null);
    };
    pump().catch((err: unknown) => {
      stream.abort(err);
      out.destroy(err instanceof Error ? err : new Error(String(err)));
    });

    try {
      for await (const res of out) yield res as EmbedStreamResponse;
    } finally {
      // The client went away or the stream failed: stop the work still queued for it.
      stream.abort(new ConnectError("stream ended", Code.Canceled));
    }
  }

  return {
    embed,
    embedStream,
    async getModelInfo() {
      return create(GetModelInfoResponseSchema, {
        model: model.name,
        modelVersion: model.version,
        dimension: model.dimension,
        inputSize: INPUT_SIZE,
        inputLayout:
          model.layout === "uint8-nhwc" ? InputLayout.UINT8_NHWC : InputLayout.FLOAT32_NCHW,
        backend: model.backend,
        maxBatchSize: model.maxBatchSize,
        maxImagesPerRequest: config.maxImagesPerRequest,
        maxImageBytes: BigInt(config.maxImageBytes),
        maxImagePixels: BigInt(config.maxImagePixels),
        maxMessageBytes: BigInt(config.maxMessageBytes),
        executionProvider: model.provider ?? "",
        device: model.device ?? "",
      });
    },
  };
}
