/** Micro-batcher: takes preprocessed images from concurrent calls, hands the backend full batches, routes each row back to its caller. */

/** What one backend batch returns: one vector per input image, same order. */
export interface BatchOutput {
  readonly vectors: readonly Float32Array[];
  /** Time spent packing the tensor. */
  readonly packUs: number;
  /** Time spent in the backend. */
  readonly inferUs: number;
}

/** Runs one backend batch; `signal` aborts once every caller of the batch has gone. */
export type BatchRunner = (
  images: readonly Uint8Array[],
  signal?: AbortSignal,
) => Promise<BatchOutput>;

export interface BatcherOptions {
  readonly maxBatchSize: number;
  /**
   * How long the oldest image may wait for company while the backend is idle; 0 = never. It
   * waits only while more images are on their way (see `expect`): a lone call never waits.
   */
  readonly maxWaitMs: number;
  /** Backend batches running at once (1 for an in-process CPU backend). */
  readonly maxConcurrentBatches: number;
  readonly run: BatchRunner;
  readonly now?: () => number;
}

export interface ImageResult {
  readonly vector: Float32Array;
  readonly queueUs: number;
  readonly packUs: number;
  readonly inferUs: number;
  /** Images in the backend batch that carried this one. */
  readonly batchSize: number;
}

/**
 * What the embed service queues images with: the MicroBatcher in this process, or (cluster
 * workers with the onnxruntime backend) a proxy for the one in the primary process.
 */
export interface ImageBatcher {
  embed(pixels: Uint8Array, signal?: AbortSignal): Promise<ImageResult>;
  expect(delta: number): void;
  /** Images waiting for a batch, and backend batches running (0 where another process batches). */
  readonly queued: number;
  readonly running: number;
}

interface Pending {
  readonly pixels: Uint8Array;
  readonly enqueuedAt: number;
  readonly resolve: (r: ImageResult) => void;
  readonly reject: (e: unknown) => void;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: () => void;
  settled: boolean;
  /** Set once dispatched: the batch it runs in. */
  batch?: RunningBatch;
}

interface RunningBatch {
  /** Callers of the batch still waiting for it. */
  waiting: number;
  readonly controller: AbortController;
}

export class MicroBatcher implements ImageBatcher {
  readonly #opts: Required<BatcherOptions>;
  readonly #queue: Pending[] = [];
  #running = 0;
  #expected = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: BatcherOptions) {
    this.#opts = { now: () => performance.now(), ...opts };
  }

  /** Images waiting for a batch. */
  get queued(): number {
    return this.#queue.length;
  }

  /**
   * Announces `delta` images that are admitted but still being decoded (negative when one
   * arrives or drops out). A partial batch waits for them, up to maxWaitMs, and for nothing else.
   */
  expect(delta: number): void {
    this.#expected = Math.max(0, this.#expected + delta);
    if (delta < 0) this.#pump();
  }

  /** Backend batches running now. */
  get running(): number {
    return this.#running;
  }

  /**
   * Queues one image. Rejects with the signal's reason as soon as it aborts: a queued image
   * leaves the queue and is never run; a running one's row is discarded.
   */
  embed(pixels: Uint8Array, signal?: AbortSignal): Promise<ImageResult> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<ImageResult>((resolve, reject) => {
      const item: Pending = {
        pixels,
        enqueuedAt: this.#opts.now(),
        resolve,
        reject,
        signal,
        settled: false,
        onAbort: () => {
          const i = this.#queue.indexOf(item);
          if (i >= 0) this.#queue.splice(i, 1);
          // The last caller of a running batch leaving cancels the batch in the backend.
          if (item.batch && !item.settled && --item.batch.waiting === 0) {
            item.batch.controller.abort(signal?.reason);
          }
          this.#settle(item, () => reject(signal?.reason));
        },
      };
      signal?.addEventListener("abort", item.onAbort, { once: true });
      this.#queue.push(item);
      this.#pump();
    });
  }

  #settle(item: Pending, fn: () => void): void {
    if (item.settled) return;
    item.settled = true;
    item.signal?.removeEventListener("abort", item.onAbort);
    fn();
  }

  #pump(): void {
    const { maxBatchSize, maxWaitMs, maxConcurrentBatches } = this.#opts;
    while (this.#running < maxConcurrentBatches && this.#queue.length > 0) {
      const waited = this.#opts.now() - this.#queue[0]!.enqueuedAt;
      if (this.#queue.length < maxBatchSize && this.#expected > 0 && waited < maxWaitMs) {
        // Not full, more images are on their way, and the oldest may still wait: come back
        // when its wait is over (or sooner, when an expected image arrives).
        this.#timer ??= setTimeout(
          () => {
            this.#timer = undefined;
            this.#pump();
          },
          Math.max(0, maxWaitMs - waited),
        );
        return;
      }
      this.#dispatch(this.#queue.splice(0, maxBatchSize));
    }
  }

  #dispatch(batch: Pending[]): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#running++;
    const startedAt = this.#opts.now();
    const running: RunningBatch = { waiting: batch.length, controller: new AbortController() };
    for (const item of batch) item.batch = running;
    const done = () => {
      this.#running--;
      this.#pump();
    };
    this.#opts
      .run(
        batch.map((p) => p.pixels),
        running.controller.signal,
      )
      .then(
        (out) => {
          if (out.vectors.length !== batch.length) {
            const err = new Error(
              `backend returned ${out.vectors.length} rows for a batch of ${batch.length}`,
            );
            for (const item of batch) this.#settle(item, () => item.reject(err));
            return done();
          }
          batch.forEach((item, i) => {
            const result: ImageResult = {
              vector: out.vectors[i]!,
              queueUs: Math.round((startedAt - item.enqueuedAt) * 1000),
              packUs: out.packUs,
              inferUs: out.inferUs,
              batchSize: batch.length,
            };
            this.#settle(item, () => item.resolve(result));
          });
          done();
        },
        (err: unknown) => {
          for (const item of batch) this.#settle(item, () => item.reject(err));
          done();
        },
      );
  }
}
