/**
 * An ONNX Runtime session on a worker thread, behind the few members of InferenceSession the
 * backend uses: tensors in, tensors out, by message. onnxruntime-node runs `session.run`
 * synchronously on the calling thread (6–35 ms a batch on a GPU, measured on an H100), which
 * would stop the owning process from reading the next images and forming the next batch while the
 * GPU computes; on its own thread it does not. A stuck run can also be ended (terminate), which a
 * native call on the main thread cannot.
 */
import { Worker } from "node:worker_threads";
import type * as ort from "onnxruntime-node";

/** What crosses to the thread and back: plain tensors. */
interface WireTensor {
  readonly type: ort.Tensor.Type;
  readonly dims: readonly number[];
  readonly data: ArrayBufferView;
}

type Reply =
  | {
      readonly t: "opened";
      readonly inputNames: readonly string[];
      readonly outputNames: readonly string[];
      readonly inputMetadata: ort.InferenceSession.ValueMetadata[];
      readonly outputMetadata: ort.InferenceSession.ValueMetadata[];
    }
  | { readonly t: "result"; readonly id: number; readonly outputs: Record<string, WireTensor> }
  | { readonly t: "error"; readonly id: number; readonly message: string };

/** The thread's code: opens one session, runs what it is sent, one message at a time. */
const THREAD = `
const { parentPort, workerData } = require("node:worker_threads");
const ort = require(workerData.ort);
(async () => {
  let session;
  try {
    session = await ort.InferenceSession.create(workerData.modelPath, workerData.options);
  } catch (err) {
    parentPort.postMessage({ t: "error", id: 0, message: err && err.message ? err.message : String(err) });
    return;
  }
  parentPort.postMessage({
    t: "opened",
    inputNames: session.inputNames,
    outputNames: session.outputNames,
    inputMetadata: session.inputMetadata,
    outputMetadata: session.outputMetadata,
  });
  parentPort.on("message", async (m) => {
    if (m.t === "release") {
      await session.release().catch(() => {});
      parentPort.close();
      return;
    }
    try {
      const feeds = {};
      for (const [name, x] of Object.entries(m.feeds)) feeds[name] = new ort.Tensor(x.type, x.data, x.dims);
      const out = await session.run(feeds, m.fetches);
      const outputs = {};
      for (const [name, t] of Object.entries(out)) outputs[name] = { type: t.type, dims: t.dims, data: t.data };
      parentPort.postMessage({ t: "result", id: m.id, outputs });
    } catch (err) {
      parentPort.postMessage({ t: "error", id: m.id, message: err && err.message ? err.message : String(err) });
    }
  });
})();
`;

export interface ThreadSession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  readonly outputMetadata: readonly ort.InferenceSession.ValueMetadata[];
  run(
    feeds: Record<string, ort.Tensor>,
    fetches: readonly string[],
  ): Promise<Record<string, { readonly data: unknown }>>;
  release(): Promise<void>;
}

/** Opens `modelPath` with `options` on a new thread; rejects with ONNX Runtime's own message. */
export function openSessionOnThread(
  ortModule: string,
  modelPath: string,
  options: ort.InferenceSession.SessionOptions,
): Promise<ThreadSession> {
  const worker = new Worker(THREAD, {
    eval: true,
    workerData: { ort: ortModule, modelPath, options },
  });
  const pending = new Map<
    number,
    { resolve: (o: Record<string, { data: unknown }>) => void; reject: (e: Error) => void }
  >();
  let next = 1;
  let dead: Error | undefined;
  const failAll = (err: Error) => {
    dead ??= err;
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };
  return new Promise((resolveOpen, rejectOpen) => {
    worker.on("error", (err) => {
      failAll(err);
      rejectOpen(err);
    });
    worker.on("exit", (code) => {
      const err = new Error(`the ONNX Runtime thread exited (${code})`);
      failAll(err);
      rejectOpen(err);
    });
    worker.on("message", (m: Reply) => {
      if (m.t === "opened") {
        resolveOpen({
          inputNames: m.inputNames,
          outputNames: m.outputNames,
          inputMetadata: m.inputMetadata,
          outputMetadata: m.outputMetadata,
          run(feeds, fetches) {
            if (dead) return Promise.reject(dead);
            const id = next++;
            const wire: Record<string, WireTensor> = {};
            const transfer: ArrayBuffer[] = [];
            for (const [name, t] of Object.entries(feeds)) {
              // A compact copy, handed over: the batcher reuses its (max-batch-sized) buffer as
              // soon as this call returns, and cloning a view would copy that whole buffer.
              const view = t.data as Uint8Array | Float32Array;
              const data = view.slice();
              transfer.push(data.buffer as ArrayBuffer);
              wire[name] = { type: t.type, dims: t.dims, data };
            }
            return new Promise((resolve, reject) => {
              pending.set(id, { resolve, reject });
              worker.postMessage({ t: "run", id, feeds: wire, fetches }, transfer);
            });
          },
          async release() {
            dead ??= new Error("the session was released");
            // A run that never returns would keep the thread forever: end it outright.
            await worker.terminate();
          },
        });
        return;
      }
      if (m.t === "error" && m.id === 0) {
        rejectOpen(new Error(m.message));
        void worker.terminate();
        return;
      }
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      if (m.t === "result") p.resolve(m.outputs);
      else p.reject(new Error(m.message));
    });
  });
}
