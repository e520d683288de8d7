/** Turns Triton's cumulative ModelStatistics into what dashboards need: time per inference request spent in Triton's queue, input copy, model and output copy, over the last poll window and in total. */
import type { ModelStatistics } from "../../../proto/gen/inference/grpc_service_pb.js";

/** Microseconds in each phase inside Triton. */
export interface TritonPhasesUs {
  readonly queue: number;
  readonly computeInput: number;
  readonly computeInfer: number;
  readonly computeOutput: number;
}

export interface TritonStats {
  /** When the statistics were read (ms since the epoch). */
  readonly at: number;
  readonly model: string;
  readonly version: string;
  /** Cumulative since Triton loaded the model (reset when Triton restarts). */
  readonly total: {
    /** Requests that succeeded / failed. */
    readonly success: number;
    readonly fail: number;
    /** Images (batch elements) inferred, and model executions after Triton's own batching. */
    readonly inferences: number;
    readonly executions: number;
    readonly us: TritonPhasesUs & { readonly success: number };
  };
  /** Since the previous read; null on the first read or after Triton restarted. */
  readonly window: {
    readonly ms: number;
    readonly requests: number;
    readonly inferences: number;
    readonly executions: number;
    /**
     * Mean µs per inference request in each phase (Triton counts a request, whatever its batch
     * size, as one); null when no request finished in the window.
     */
    readonly perInferenceUs: TritonPhasesUs | null;
  } | null;
}

const n = (v: bigint | undefined) => Number(v ?? 0n);
const us = (ns: bigint | undefined) => n(ns) / 1000;

/** `previous` is the last snapshot read from the same model (for the window), if any. */
export function readStats(
  s: ModelStatistics,
  at: number,
  previous: TritonStats | undefined,
): TritonStats {
  const st = s.inferenceStats;
  const total = {
    success: n(st?.success?.count),
    fail: n(st?.fail?.count),
    inferences: n(s.inferenceCount),
    executions: n(s.executionCount),
    us: {
      success: us(st?.success?.ns),
      queue: us(st?.queue?.ns),
      computeInput: us(st?.computeInput?.ns),
      computeInfer: us(st?.computeInfer?.ns),
      computeOutput: us(st?.computeOutput?.ns),
    },
  };
  const counts = {
    queue: n(st?.queue?.count),
    computeInput: n(st?.computeInput?.count),
    computeInfer: n(st?.computeInfer?.count),
    computeOutput: n(st?.computeOutput?.count),
  };
  let window: TritonStats["window"] = null;
  const prev = previous;
  // Counters only grow; a smaller one means Triton restarted and started from zero.
  if (prev && prev.model === s.name && total.success >= prev.total.success) {
    const requests = total.success - prev.total.success;
    const per = (key: keyof TritonPhasesUs) => {
      const dCount = counts[key] - (phaseCounts.get(prev)?.[key] ?? 0);
      return dCount > 0 ? (total.us[key] - prev.total.us[key]) / dCount : 0;
    };
    window = {
      ms: at - prev.at,
      requests,
      inferences: total.inferences - prev.total.inferences,
      executions: total.executions - prev.total.executions,
      perInferenceUs:
        requests > 0
          ? {
              queue: per("queue"),
              computeInput: per("computeInput"),
              computeInfer: per("computeInfer"),
              computeOutput: per("computeOutput"),
            }
          : null,
    };
  }
  const snapshot: TritonStats = { at, model: s.name, version: s.version, total, window };
  phaseCounts.set(snapshot, counts);
  return snapshot;
}

/** Each snapshot's per-phase request counts, kept out of its public shape for the next window. */
const phaseCounts = new WeakMap<TritonStats, Record<keyof TritonPhasesUs, number>>();
