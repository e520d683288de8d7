import { describe, expect, it, vi } from "vitest";
import { type BatchRunner, MicroBatcher } from "./batcher.ts";

/** A runner whose vector for an image is [first pixel]: shows which row went where. */
function recordingRunner(delayMs = 5) {
  const batches: number[][] = [];
  const run: BatchRunner = async (images) => {
    batches.push(images.map((p) => p[0]!));
    await new Promise((r) => setTimeout(r, delayMs));
    return { vectors: images.map((p) => Float32Array.of(p[0]!)), packUs: 1, inferUs: 2 };
  };
  return { batches, run };
}

const img = (v: number) => Uint8Array.of(v);

describe("MicroBatcher", () => {
  it("coalesces concurrent images up to the max batch size and routes every row back", async () => {
    const { batches, run } = recordingRunner();
    const b = new MicroBatcher({ maxBatchSize: 4, maxWaitMs: 20, maxConcurrentBatches: 1, run });
    b.expect(10); // ten images admitted and decoding
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => {
        const p = b.embed(img(i));
        b.expect(-1);
        return p;
      }),
    );
    expect(results.map((r) => r.vector[0])).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(batches.flat()).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(batches.map((x) => x.length)).toEqual([4, 4, 2]);
    expect(results[0]!.batchSize).toBe(4);
  });

  it("with maxWaitMs 0 runs a lone image at once", async () => {
    const { batches, run } = recordingRunner(0);
    const b = new MicroBatcher({ maxBatchSize: 32, maxWaitMs: 0, maxConcurrentBatches: 1, run });
    const t0 = performance.now();
    await b.embed(img(7));
    expect(performance.now() - t0).toBeLessThan(500);
    expect(batches).toEqual([[7]]);
  });

  it("waits for images still on their way, then runs them together", async () => {
    const { batches, run } = recordingRunner(0);
    // A wait far longer than any stall of a loaded machine: the batch runs when the second image
    // comes, not when the wait ends.
    const b = new MicroBatcher({
      maxBatchSize: 32,
      maxWaitMs: 60_000,
      maxConcurrentBatches: 1,
      run,
    });
    b.expect(2);
    const first = b.embed(img(1));
    b.expect(-1);
    await new Promise((r) => setTimeout(r, 5));
    const second = b.embed(img(2));
    b.expect(-1);
    await Promise.all([first, second]);
    expect(batches).toEqual([[1, 2]]);
  });

  it("waits at most maxWaitMs for an expected image that is slow to come", async () => {
    const { batches, run } = recordingRunner(0);
    const b = new MicroBatcher({ maxBatchSize: 32, maxWaitMs: 20, maxConcurrentBatches: 1, run });
    b.expect(2);
    const t0 = performance.now();
    const first = b.embed(img(1));
    b.expect(-1);
    await first;
    const waited = performance.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(15);
    expect(waited).toBeLessThan(500);
    expect(batches).toEqual([[1]]);
  });

  it("never makes a lone image wait, whatever maxWaitMs says", async () => {
    const { batches, run } = recordingRunner(0);
    const b = new MicroBatcher({ maxBatchSize: 32, maxWaitMs: 5000, maxConcurrentBatches: 1, run });
    const t0 = performance.now();
    await b.embed(img(3));
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(batches).toEqual([[3]]);
  });

  it("runs at once when the last expected image drops out", async () => {
    const { batches, run } = recordingRunner(0);
    const b = new MicroBatcher({ maxBatchSize: 32, maxWaitMs: 5000, maxConcurrentBatches: 1, run });
    b.expect(2);
    const first = b.embed(img(4));
    b.expect(-1);
    setTimeout(() => b.expect(-1), 10); // the other image failed to decode
    const t0 = performance.now();
    await first;
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(batches).toEqual([[4]]);
  });

  it("never runs more batches at once than allowed", async () => {
    let running = 0;
    let peak = 0;
    const run: BatchRunner = async (images) => {
      peak = Math.max(peak, ++running);
      await new Promise((r) => setTimeout(r, 5));
      running--;
      return { vectors: images.map(() => Float32Array.of(1)), packUs: 0, inferUs: 0 };
    };
    const b = new MicroBatcher({ maxBatchSize: 2, maxWaitMs: 0, maxConcurrentBatches: 2, run });
    await Promise.all(Array.from({ length: 12 }, (_, i) => b.embed(img(i))));
    expect(peak).toBe(2);
  });

  it("a cancelled image leaves the queue and is never run", async () => {
    const { batches, run } = recordingRunner(20);
    const b = new MicroBatcher({ maxBatchSize: 1, maxWaitMs: 0, maxConcurrentBatches: 1, run });
    const first = b.embed(img(1)); // occupies the backend
    const ac = new AbortController();
    const second = b.embed(img(2), ac.signal);
    const third = b.embed(img(3));
    expect(b.queued).toBe(2);
    ac.abort(new Error("client went away"));
    await expect(second).rejects.toThrow("client went away");
    expect(b.queued).toBe(1);
    await Promise.all([first, third]);
    expect(batches).toEqual([[1], [3]]);
  });

  it("an already aborted signal is refused without queueing", async () => {
    const { batches, run } = recordingRunner();
    const b = new MicroBatcher({ maxBatchSize: 4, maxWaitMs: 0, maxConcurrentBatches: 1, run });
    await expect(b.embed(img(1), AbortSignal.abort(new Error("late")))).rejects.toThrow("late");
    expect(batches).toEqual([]);
  });

  it("a failing batch fails only its own images", async () => {
    let call = 0;
    const run: BatchRunner = async (images) => {
      if (call++ === 0) throw new Error("backend fell over");
      return { vectors: images.map((p) => Float32Array.of(p[0]!)), packUs: 0, inferUs: 0 };
    };
    const b = new MicroBatcher({ maxBatchSize: 2, maxWaitMs: 0, maxConcurrentBatches: 1, run });
    const r = await Promise.allSettled([1, 2, 3, 4].map((v) => b.embed(img(v))));
    expect(r.map((x) => x.status)).toEqual(["rejected", "fulfilled", "fulfilled", "fulfilled"]);
  });

  it("a runner that returns the wrong number of rows fails its batch", async () => {
    const run: BatchRunner = async () => ({ vectors: [], packUs: 0, inferUs: 0 });
    const b = new MicroBatcher({ maxBatchSize: 2, maxWaitMs: 0, maxConcurrentBatches: 1, run });
    await expect(b.embed(img(1))).rejects.toThrow(/0 rows for a batch of 1/);
  });
});

describe("MicroBatcher cancellation reaches the backend", () => {
  it("aborts a running batch's signal only when every caller of it has gone", async () => {
    const signals: AbortSignal[] = [];
    const run: BatchRunner = (images, signal) =>
      new Promise((resolve) => {
        signals.push(signal!);
        setTimeout(
          () => resolve({ vectors: images.map(() => Float32Array.of(1)), packUs: 0, inferUs: 0 }),
          50,
        );
      });
    const b = new MicroBatcher({ maxBatchSize: 2, maxWaitMs: 50, maxConcurrentBatches: 1, run });
    const a1 = new AbortController();
    const a2 = new AbortController();
    b.expect(2);
    const p1 = b.embed(img(1), a1.signal);
    const p2 = b.embed(img(2), a2.signal);
    b.expect(-2);
    await vi.waitUntil(() => signals.length === 1);
    a1.abort(new Error("first left"));
    await expect(p1).rejects.toThrow("first left");
    expect(signals[0]!.aborted).toBe(false); // the second caller still waits for it
    a2.abort(new Error("second left"));
    await expect(p2).rejects.toThrow("second left");
    expect(signals[0]!.aborted).toBe(true);
  });
});
