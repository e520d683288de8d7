/** A sub-millisecond one-shot timer for the WAN link: a worker thread sleeps in Atomics.wait (futex, ns resolution) and wakes the event loop with a message. Node's setTimeout takes whole milliseconds and fires up to ~1 ms late, which would add ~2 ms to every emulated round trip. */
import { once } from "node:events";
import { Worker } from "node:worker_threads";

/** Milliseconds on a clock both threads share. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

// [0] generation (bumped on every change), [1] stop flag; then the deadline as a float64.
const WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const flags = new Int32Array(workerData, 0, 2);
const deadline = new Float64Array(workerData, 8, 1);
const now = () => performance.timeOrigin + performance.now();
while (Atomics.load(flags, 1) === 0) {
  const generation = Atomics.load(flags, 0);
  const target = deadline[0];
  const wait = target - now();
  if (wait <= 0) {
    deadline[0] = Infinity;
    parentPort.postMessage(target);
    Atomics.wait(flags, 0, generation);
  } else {
    Atomics.wait(flags, 0, generation, Number.isFinite(wait) ? wait : undefined);
  }
}
`;

export interface PreciseTimer {
  /** Fires `onFire` once at `atMs` (nowMs() clock); replaces any earlier setting. */
  set(atMs: number): void;
  close(): Promise<void>;
}

/** Resolves once the clock thread runs (a thread takes tens of ms to start). */
export async function createPreciseTimer(onFire: () => void): Promise<PreciseTimer> {
  const shared = new SharedArrayBuffer(16);
  const flags = new Int32Array(shared, 0, 2);
  const deadline = new Float64Array(shared, 8, 1);
  deadline[0] = Number.POSITIVE_INFINITY;
  const worker = new Worker(WORKER, { eval: true, workerData: shared });
  worker.unref();
  worker.on("message", onFire);
  await once(worker, "online");
  const bump = () => {
    Atomics.add(flags, 0, 1);
    Atomics.notify(flags, 0);
  };
  return {
    set(atMs) {
      deadline[0] = atMs;
      bump();
    },
    async close() {
      Atomics.store(flags, 1, 1);
      bump();
      await worker.terminate();
    },
  };
}
