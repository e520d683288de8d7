/** The one interface every inference backend implements: a batch tensor in, raw embeddings out. */

/** How the model wants its input: what the preprocessing stage packs. */
export type InputLayout = "uint8-nhwc" | "float32-nchw";

/** The model's input size (224) and one image's bytes, for the backends: imaging/clip.ts's. */
export { IMAGE_BYTES, INPUT_SIZE } from "../../imaging/clip.ts";

/** Batch limit on a CPU (more gains nothing there), for noop, and for Triton models whose config does not say. */
export const CPU_MAX_BATCH = 32;

/** Whether inference runs on a GPU provider of the embedded backend (not the CPU, not elsewhere). */
export function onOrtGpu(model: Pick<ModelDescription, "backend" | "provider">): boolean {
  return model.backend === "onnxruntime" && (model.provider ?? "cpu") !== "cpu";
}

export interface ModelDescription {
  /** e.g. "vit-b32" or the ONNX file's name. */
  readonly name: string;
  /** A stable fingerprint of the weights (e.g. a hash prefix), so clients can tell models apart. */
  readonly version: string;
  readonly dimension: number;
  readonly layout: InputLayout;
  /** The largest batch the backend accepts in one `infer` call. */
  readonly maxBatchSize: number;
  /** "onnxruntime", "triton" or "noop". */
  readonly backend: string;
  /** Where the model runs, for onnxruntime: its execution provider ("cpu", "webgpu", "cuda"). */
  readonly provider?: string;
  /** The device behind the provider when it says (e.g. the GPU adapter's name). */
  readonly device?: string;
}

/** A packed batch: `count` images in the model's layout, row-major, no padding. */
export type BatchTensor =
  | { readonly layout: "uint8-nhwc"; readonly data: Uint8Array; readonly count: number }
  | { readonly layout: "float32-nchw"; readonly data: Float32Array; readonly count: number };

export interface Backend {
  /** Loads or connects; resolves once the model can answer. */
  start(): Promise<ModelDescription>;
  /**
   * Runs one batch of at most `maxBatchSize` images and returns `count * dimension` floats,
   * one row per image in input order. Rows need not be normalised: the caller L2-normalises.
   */
  infer(batch: BatchTensor, signal?: AbortSignal): Promise<Float32Array>;
  /** True only when the model answers right now (used by /readyz). */
  ready(): Promise<boolean>;
  /** Why the backend is not ready, for operators reading /readyz (optional). */
  notReadyReason?(): string | undefined;
  close(): Promise<void>;
}
