import { duplexPair } from "node:stream";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it, vi } from "vitest";
import { type BatchRunner, MicroBatcher } from "../batching/batcher.ts";
import { createRemoteBatcher, hostChannel } from "./channel.ts";

const IMAGE = 150_528;

/** An image whose every byte is `v` (real 224x224 size: frames span several socket chunks). */
const image = (v: number) => new Uint8Array(IMAGE).fill(v);

/** A batcher whose vector for an image is [first byte, batch size]; records what ran. */
function setup(opts: { delayMs?: number; run?: BatchRunner; maxWaitMs?: number } = {}) {
  const ran: number[] = [];
  const run: BatchRunner =
    opts.run ??
    (async (images, signal) => {
      ran.push(...images.map((p) => p[0]!));
      await new Promise((r) => setTimeout(r, opts.delayMs ?? 2));
      signal?.throwIfAborted();
      return {
        vectors: images.map((p) => Float32Array.of(p[0]!, images.length)),
        packUs: 3,
        inferUs: 4,
      };
    });
  const batcher = new MicroBatcher({
    maxBatchSize: 8,
    maxWaitMs: opts.maxWaitMs ?? 5,
    maxConcurrentBatches: 1,
    run,
  });
  const [workerSide, primarySide] = duplexPair();
  const internal: unknown[] = [];
  const host = hostChannel(primarySide, {
    batcher,
    ready: async () => ({ ready: false, reason: "model warming up" }),
    onInternalError: (e) => internal.push(e),
  });
  const remote = createRemoteBatcher(workerSide);
  return { batcher, host, remote, ran, internal, workerSide, primarySide };
}

describe("pixel channel (worker ↔ primary batcher)", () => {
  it("routes every image's vector back to its caller, batched across callers", async () => {
    const { remote, ran } = setup();
    remote.expect(40);
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => {
        const p = remote.embed(image(i));
        remote.expect(-1);
        return p;
      }),
    );
    expect(results.map((r) => r.vector[0])).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(results.every((r) => r.vector instanceof Float32Array && r.vector.length === 2)).toBe(
      true,
    );
    expect(Math.max(...results.map((r) => r.batchSize))).toBeGreaterThan(1);
    expect(results[0]).toMatchObject({ packUs: 3, inferUs: 4 });
    expect(ran.sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(remote.pending).toBe(0);
  });

  it("a cancelled image leaves the primary's queue and is never run", async () => {
    let release!: () => void;
    const busy = new Promise<void>((r) => {
      release = r;
    });
    const ran: number[] = [];
    const { remote, batcher } = setup({
      maxWaitMs: 0,
      run: async (images) => {
        ran.push(...images.map((p) => p[0]!));
        await busy; // the backend stays busy until released
        return { vectors: images.map((p) => Float32Array.of(p[0]!)), packUs: 0, inferUs: 0 };
      },
    });
    const first = remote.embed(image(1));
    await vi.waitUntil(() => ran.length === 1, { timeout: 10_000 });
    const control = new AbortController();
    const second = remote.embed(image(2), control.signal);
    await vi.waitUntil(() => batcher.queued === 1, { timeout: 10_000 });
    control.abort(new ConnectError("deadline", Code.DeadlineExceeded));
    await expect(second).rejects.toMatchObject({ code: Code.DeadlineExceeded });
    await vi.waitUntil(() => batcher.queued === 0, { timeout: 10_000 });
    release();
    await first;
    await new Promise((r) => setTimeout(r, 50));
    expect(ran).toEqual([1]);
  });

  it("passes a ConnectError's code through, and turns unknown failures into a generic Internal", async () => {
    let fail: unknown = new ConnectError("triton unreachable", Code.Unavailable);
    const { remote, internal } = setup({
      run: async () => {
        throw fail;
      },
    });
    await expect(remote.embed(image(1))).rejects.toMatchObject({
      code: Code.Unavailable,
      rawMessage: "triton unreachable",
    });
    fail = new Error("secret detail /opt/model.onnx");
    const err = await remote.embed(image(2)).catch((e: unknown) => e as ConnectError);
    expect(err).toMatchObject({ code: Code.Internal, rawMessage: "internal error" });
    expect(internal).toHaveLength(1); // the detail went to the primary's log only
  });

  it("when the primary goes away, pending and later images fail with Unavailable", async () => {
    const { remote, primarySide } = setup({ delayMs: 1000 });
    const pending = remote.embed(image(1));
    await new Promise((r) => setTimeout(r, 20));
    primarySide.end(); // what the worker sees when the primary's process dies
    await expect(pending).rejects.toMatchObject({ code: Code.Unavailable });
    await expect(remote.embed(image(2))).rejects.toMatchObject({ code: Code.Unavailable });
    expect(await remote.ready()).toMatchObject({ ready: false });
  });

  it("when the worker goes away, its queued images are cancelled and its expected count withdrawn", async () => {
    let release!: () => void;
    const busy = new Promise<void>((r) => {
      release = r;
    });
    const ran: number[] = [];
    const { remote, batcher, workerSide, host } = setup({
      maxWaitMs: 300,
      run: async (images) => {
        ran.push(...images.map((p) => p[0]!));
        if (ran.length === 1) await busy; // the first batch holds the backend
        return { vectors: images.map((p) => Float32Array.of(p[0]!)), packUs: 0, inferUs: 0 };
      },
    });
    void remote.embed(image(1)).catch(() => {});
    await vi.waitUntil(() => ran.length === 1, { timeout: 10_000 });
    for (let i = 2; i < 6; i++) void remote.embed(image(i)).catch(() => {});
    remote.expect(10); // ten more admitted and still "decoding" when it died
    await vi.waitUntil(() => batcher.queued === 4, { timeout: 10_000 });
    workerSide.end();
    await vi.waitUntil(() => batcher.queued === 0, { timeout: 10_000 });
    expect(host.pending).toBe(0); // the running one included: its row will be dropped
    release();
    await vi.waitUntil(() => host.pending === 0 && batcher.running === 0, { timeout: 10_000 });
    // Another worker's lone image runs at once: nobody waits for the dead worker's ten.
    const [w2, p2] = duplexPair();
    hostChannel(p2, { batcher, ready: async () => ({ ready: true }), onInternalError: () => {} });
    const other = createRemoteBatcher(w2);
    const t0 = performance.now();
    other.expect(1);
    const done = other.embed(image(9));
    other.expect(-1);
    await done;
    expect(performance.now() - t0).toBeLessThan(250);
    expect(ran).toEqual([1, 9]);
  });

  it("answers readiness questions with the primary's backend state", async () => {
    const { remote } = setup();
    expect(await remote.ready()).toEqual({ ready: false, reason: "model warming up" });
  });
});
