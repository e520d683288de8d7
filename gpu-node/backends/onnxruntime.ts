/** The embedded backend: runs the ONNX model in-process with ONNX Runtime (CPU). */
import * as ort from "onnxruntime-node";
import type { Backend, BatchTensor, ModelDescription } from "./backend.ts";
import { INPUT_SIZE } from "./backend.ts";
import { detectLayout } from "./input-layout.ts";

export interface OnnxRuntimeOptions {
  readonly modelPath: string;
  readonly name: string;
  readonly version: string;
  /** Intra-op threads; ORT's own default used a single thread on these machines. */
  readonly threads: number;
  readonly maxBatchSize: number;
}

export function createOnnxRuntimeBackend(opts: OnnxRuntimeOptions): Backend {
  let session: ort.InferenceSession | undefined;
  let description: ModelDescription | undefined;
  let inputName = "";
  let outputName = "";
  let healthy = false;

  return {
    async start() {
      session = await ort.InferenceSession.create(opts.modelPath, {
        intraOpNumThreads: opts.threads,
        interOpNumThreads: 1,
        executionMode: "sequential",
        graphOptimizationLevel: "all",
        // Spinning intra-op threads burn the cores that sharp needs to decode the next images:
        // measured on 2 cores, vit-tiny through the RPC went from ~250 to ~310 img/s without it.
        extra: { session: { intra_op: { allow_spinning: "0" } } },
      });
      const input = session.inputMetadata[0];
      const output = session.outputMetadata[0];
      if (session.inputNames.length !== 1 || !input?.isTensor || !output?.isTensor) {
        throw new Error(
          `model ${opts.name} must have one tensor input and a tensor output, has inputs [${session.inputNames.join(", ")}]`,
        );
      }
      inputName = input.name;
      outputName = output.name;
      const layout = detectLayout(input.name, input.type, input.shape);
      const outDim = output.shape[output.shape.length - 1];
      description = {
        name: opts.name,
        version: opts.version,
        dimension: typeof outDim === "number" && outDim > 0 ? outDim : 0,
        layout,
        maxBatchSize: opts.maxBatchSize,
        backend: "onnxruntime",
      };
      // One warm-up run: proves the model answers (readiness) and learns a symbolic output size.
      const probe: BatchTensor =
        layout === "uint8-nhwc"
          ? { layout, data: new Uint8Array(INPUT_SIZE * INPUT_SIZE * 3), count: 1 }
          : { layout, data: new Float32Array(INPUT_SIZE * INPUT_SIZE * 3), count: 1 };
      const row = await this.infer(probe);
      description = { ...description, dimension: row.length };
      healthy = true;
      return description;
    },

    async infer(batch: BatchTensor, signal?: AbortSignal) {
      if (!session || !description) throw new Error("onnxruntime backend is not started");
      signal?.throwIfAborted();
      const per = INPUT_SIZE * INPUT_SIZE * 3;
      const dims =
        description.layout === "uint8-nhwc"
          ? [batch.count, INPUT_SIZE, INPUT_SIZE, 3]
          : [batch.count, 3, INPUT_SIZE, INPUT_SIZE];
      const tensor =
        batch.layout === "uint8-nhwc"
          ? new ort.Tensor("uint8", batch.data.subarray(0, batch.count * per), dims)
          : new ort.Tensor("float32", batch.data.subarray(0, batch.count * per), dims);
      try {
        const out = await session.run({ [inputName]: tensor }, [outputName]);
        const result = out[outputName];
        if (!result || !(result.data instanceof Float32Array)) {
          throw new Error(`model output '${outputName}' is not float32`);
        }
        healthy = true;
        return result.data;
      } catch (err) {
        healthy = false;
        throw err;
      }
    },

    async ready() {
      return session !== undefined && healthy;
    },

    async close() {
      healthy = false;
      const s = session;
      session = undefined;
      await s?.release();
    },
  };
}
