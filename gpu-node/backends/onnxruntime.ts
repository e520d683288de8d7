/**
 * The embedded backend: runs the ONNX model in-process with ONNX Runtime, on the GPU through its
 * CUDA or WebGPU provider where one is available (or asked for), else on the CPU. Receives packed
 * batches, hands on raw embedding rows.
 */
import { createRequire } from "node:module";
import * as ort from "onnxruntime-node";
import type { OrtProvider } from "../config.ts";
import type { Logger } from "../logger.ts";
import type { Backend, BatchTensor, ModelDescription } from "./backend.ts";
import { CPU_MAX_BATCH, INPUT_SIZE } from "./backend.ts";
import { detectLayout } from "./input-layout.ts";
import {
  autoCandidates,
  deviceName,
  type GpuProvider,
  missingFor,
  type ProviderName,
  type ProviderSurvey,
  surveyProviders,
} from "./ort-providers.ts";
import { openSessionOnThread } from "./ort-thread.ts";

/** Batch limits when none is configured: a GPU wants large batches, the CPU gains nothing past 32. */
export const ORT_DEFAULT_MAX_BATCH: Readonly<Record<ProviderName, number>> = {
  cpu: CPU_MAX_BATCH,
  webgpu: 256,
  cuda: 256,
};

export interface OnnxRuntimeOptions {
  readonly modelPath: string;
  readonly name: string;
  readonly version: string;
  /** Intra-op threads (CPU provider); ORT's own default used a single thread on these machines. */
  readonly threads: number;
  readonly provider: OrtProvider;
  /** Undefined: the provider's default (ORT_DEFAULT_MAX_BATCH). */
  readonly maxBatchSize?: number;
  /** A batch that takes longer than this on a GPU counts as a lost device (never a hang). */
  readonly runTimeoutMs?: number;
  readonly log?: Logger;
  /** Tests: what the machine offers, instead of reading it. */
  readonly survey?: ProviderSurvey;
  /** Called when the GPU is lost for good (recovery failed): the process should stop. */
  readonly onFatal?: (err: Error) => void;
  /** Tests: opens the session for a provider instead of ONNX Runtime doing it. */
  readonly openSession?: (provider: ProviderName) => Promise<OrtSession>;
}

/** What the backend uses of a session: the same on the main thread and on a worker thread. */
type OrtSession = Pick<
  ort.InferenceSession,
  "inputNames" | "outputNames" | "inputMetadata" | "outputMetadata" | "release"
> & {
  run(
    feeds: Record<string, ort.Tensor>,
    fetches: readonly string[],
  ): Promise<Record<string, { readonly data: unknown }>>;
};

const ORT_MODULE = createRequire(import.meta.url).resolve("onnxruntime-node");

/** A provider that was asked for by name and cannot run: the start stops with this message. */
export class ProviderUnavailableError extends Error {
  override name = "ProviderUnavailableError";
}

const RECOVERY_ATTEMPTS = 3;

function sessionOptions(
  provider: ProviderName,
  threads: number,
): ort.InferenceSession.SessionOptions {
  const common = { graphOptimizationLevel: "all" as const, logSeverityLevel: 3 as const };
  if (provider === "cuda") {
    return { ...common, executionProviders: [{ name: "cuda", deviceId: 0 }, "cpu"] };
  }
  if (provider === "webgpu") {
    return {
      ...common,
      executionProviders: [{ name: "webgpu", preferredLayout: "NHWC", validationMode: "basic" }],
    };
  }
  return {
    ...common,
    executionProviders: ["cpu"],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: "sequential",
    // Spinning intra-op threads burn the cores that sharp needs to decode the next images:
    // measured on 2 cores, vit-tiny through the RPC went from ~250 to ~310 img/s without it.
    extra: { session: { intra_op: { allow_spinning: "0" } } },
  };
}

/** ORT's words for a provider that did not come up, with what to do about the common causes. */
function explain(provider: GpuProvider, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if (provider === "webgpu" && /adapter/i.test(message)) {
    return `${message} — Dawn found no usable GPU adapter: check the GPU driver's Vulkan support (vulkaninfo), VK_DRIVER_FILES, and in a container NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics`;
  }
  if (provider === "cuda" && /libcu|cudnn|cublas|CUDA/i.test(message)) {
    return `${message} — the CUDA provider needs the CUDA 12 runtime, cuBLAS and cuDNN 9 on the library path`;
  }
  return message;
}

export function createOnnxRuntimeBackend(opts: OnnxRuntimeOptions): Backend {
  let session: OrtSession | undefined;
  let provider: ProviderName = "cpu";
  let description: ModelDescription | undefined;
  let inputName = "";
  let outputName = "";
  let healthy = false;
  let notReady: string | undefined = "starting";
  let recovering: Promise<void> | undefined;
  let closed = false;
  const runTimeoutMs = opts.runTimeoutMs ?? 60_000;

  async function open(p: ProviderName): Promise<OrtSession> {
    if (opts.openSession) return opts.openSession(p);
    const options = sessionOptions(p, opts.threads);
    // A GPU provider runs on its own thread (ort-thread.ts): the GPU computes one batch while
    // this thread takes in the next images. The CPU provider stays here: it needs the cores.
    if (p !== "cpu") return openSessionOnThread(ORT_MODULE, opts.modelPath, options);
    return ort.InferenceSession.create(opts.modelPath, options);
  }

  /** The session for the configured provider: by name it must load; auto falls back to cpu. */
  async function openConfigured(
    survey: ProviderSurvey,
  ): Promise<{ s: OrtSession; p: ProviderName }> {
    if (opts.provider !== "auto") {
      const p = opts.provider;
      if (p !== "cpu") {
        const missing = missingFor(p, survey);
        if (missing) throw new ProviderUnavailableError(`--ort-provider ${p}: ${missing}`);
      }
      try {
        return { s: await open(p), p };
      } catch (err) {
        if (p === "cpu") throw err;
        throw new ProviderUnavailableError(
          `--ort-provider ${p} failed to start: ${explain(p, err)}`,
        );
      }
    }
    for (const p of autoCandidates(survey)) {
      try {
        return { s: await open(p), p };
      } catch (err) {
        if (p === "cpu") throw err;
        opts.log?.warn(
          { provider: p, reason: explain(p, err) },
          "ONNX Runtime provider unavailable: trying the next",
        );
      }
    }
    throw new Error("unreachable: the cpu provider ends the candidates");
  }

  function tensorFor(batch: BatchTensor, layout: ModelDescription["layout"]): ort.Tensor {
    const per = INPUT_SIZE * INPUT_SIZE * 3;
    const dims =
      layout === "uint8-nhwc"
        ? [batch.count, INPUT_SIZE, INPUT_SIZE, 3]
        : [batch.count, 3, INPUT_SIZE, INPUT_SIZE];
    return batch.layout === "uint8-nhwc"
      ? new ort.Tensor("uint8", batch.data.subarray(0, batch.count * per), dims)
      : new ort.Tensor("float32", batch.data.subarray(0, batch.count * per), dims);
  }

  /** One session.run, bounded by runTimeoutMs on a GPU: a lost device must not hang callers. */
  async function run(s: OrtSession, tensor: ort.Tensor): Promise<Float32Array> {
    const running = s.run({ [inputName]: tensor }, [outputName]);
    let timer: NodeJS.Timeout | undefined;
    const out =
      provider === "cpu"
        ? await running
        : await Promise.race([
            running,
            new Promise<never>((_, reject) => {
              timer = setTimeout(
                () =>
                  reject(new Error(`the ${provider} device did not answer in ${runTimeoutMs} ms`)),
                runTimeoutMs,
              );
            }),
          ]).finally(() => clearTimeout(timer));
    const result = out[outputName];
    if (!result || !(result.data instanceof Float32Array)) {
      throw new Error(`model output '${outputName}' is not float32`);
    }
    return result.data;
  }

  /** A GPU failed: not ready until a fresh session answers; after RECOVERY_ATTEMPTS, fatal. */
  function recover(cause: unknown): void {
    if (recovering || closed || provider === "cpu") return;
    const reason = cause instanceof Error ? cause.message : String(cause);
    notReady = `${provider} device failed: ${reason}; recovering`;
    opts.log?.error(
      { provider, err: reason },
      "ONNX Runtime device failed: recreating the session",
    );
    const lost = session;
    session = undefined;
    recovering = (async () => {
      // A run that never returned still holds the old session: abandon it, do not wait.
      void lost?.release().catch(() => {});
      let last: unknown = cause;
      for (let attempt = 1; attempt <= RECOVERY_ATTEMPTS && !closed; attempt++) {
        await new Promise((r) => setTimeout(r, 500 * 2 ** (attempt - 1)));
        try {
          const fresh = await open(provider);
          await probe(fresh);
          session = fresh;
          healthy = true;
          notReady = undefined;
          opts.log?.info({ provider, attempt }, "ONNX Runtime session recreated");
          return;
        } catch (err) {
          last = err;
        }
      }
      if (closed) return;
      const err = new Error(
        `the ${provider} device is lost and did not come back: ${last instanceof Error ? last.message : String(last)}`,
      );
      notReady = err.message;
      opts.onFatal?.(err);
    })().finally(() => {
      recovering = undefined;
    });
  }

  /** One run of a blank image: proves the session answers, and learns a symbolic output size. */
  async function probe(s: OrtSession): Promise<number> {
    const layout = description!.layout;
    const blank: BatchTensor =
      layout === "uint8-nhwc"
        ? { layout, data: new Uint8Array(INPUT_SIZE * INPUT_SIZE * 3), count: 1 }
        : { layout, data: new Float32Array(INPUT_SIZE * INPUT_SIZE * 3), count: 1 };
    const row = await run(s, tensorFor(blank, layout));
    return row.length;
  }

  return {
    async start() {
      // Read once: it opens libvulkan, lists the driver manifests and /proc's GPUs.
      const survey = opts.survey ?? surveyProviders();
      const opened = await openConfigured(survey);
      session = opened.s;
      provider = opened.p;
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
      description = {
        name: opts.name,
        version: opts.version,
        dimension: 0,
        layout,
        maxBatchSize: opts.maxBatchSize ?? ORT_DEFAULT_MAX_BATCH[provider],
        backend: "onnxruntime",
        provider,
        device: deviceName(provider, survey),
      };
      description = { ...description, dimension: await probe(session) };
      healthy = true;
      notReady = undefined;
      return description;
    },

    async infer(batch: BatchTensor, signal?: AbortSignal) {
      if (!description) throw new Error("onnxruntime backend is not started");
      signal?.throwIfAborted();
      const s = session;
      if (!s) throw new Error(notReady ?? "onnxruntime backend is not ready");
      let rows: Float32Array;
      try {
        rows = await run(s, tensorFor(batch, description.layout));
      } catch (err) {
        healthy = false;
        recover(err);
        throw err;
      }
      // A device that misbehaves must not hand out a wrong vector: refuse non-finite rows.
      if (
        rows.length !== batch.count * description.dimension ||
        rows.some((x) => !Number.isFinite(x))
      ) {
        healthy = false;
        const err = new Error(`the ${provider} provider returned a malformed batch`);
        recover(err);
        throw err;
      }
      healthy = true;
      return rows;
    },

    async ready() {
      return session !== undefined && healthy;
    },

    notReadyReason() {
      return session !== undefined && healthy ? undefined : notReady;
    },

    async close() {
      closed = true;
      healthy = false;
      const s = session;
      session = undefined;
      await s?.release();
    },
  };
}
