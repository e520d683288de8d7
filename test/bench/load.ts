/** A bounded closed-loop load driver: N workers call back to back; throughput is measured between completions, after a warm-up. */

export interface LoadOptions<T> {
  /** Calls in flight at once (one worker each). */
  readonly concurrency: number;
  /** Images each call carries (for img/s). */
  readonly imagesPerCall: number;
  /**
   * The warm-up ends at the first completion once both are reached (so at least one call is
   * discarded), unless `countFromStart` is set: then the window opens when the first call starts.
   */
  readonly warmupCalls?: number;
  readonly countFromStart?: boolean;
  readonly warmupMs?: number;
  /** The measurement ends at the first completion where `calls` are counted, or where `ms` have passed and `minCalls` are counted. */
  readonly calls?: number;
  readonly ms?: number;
  readonly minCalls?: number;
  /** Safety net: the whole run stops by this time however few calls completed. */
  readonly hardLimitMs?: number;
  /** Called at the start and at the end of the measured window (e.g. to read CPU counters). */
  readonly onWindow?: (edge: "start" | "end") => void;
  /** One call; `seq` counts calls from 0 across workers. */
  readonly call: (seq: number) => Promise<T>;
}

export interface LoadResult<T> {
  /** Completions inside the measured window. */
  readonly calls: number;
  readonly images: number;
  readonly elapsedMs: number;
  readonly imagesPerSecond: number;
  /** Round trips (ms) and values of the calls that both started and finished inside the window. */
  readonly rttMs: readonly number[];
  readonly values: readonly T[];
}

export async function runLoad<T>(opts: LoadOptions<T>): Promise<LoadResult<T>> {
  const warmupCalls = opts.warmupCalls ?? 0;
  const warmupMs = opts.warmupMs ?? 0;
  const maxCalls = opts.calls ?? Number.POSITIVE_INFINITY;
  const maxMs = opts.ms ?? Number.POSITIVE_INFINITY;
  const minCalls = opts.minCalls ?? 1;
  if (!Number.isFinite(maxCalls) && !Number.isFinite(maxMs)) {
    throw new Error("runLoad needs a bound: calls or ms");
  }
  const t0 = performance.now();
  const hardEnd = t0 + (opts.hardLimitMs ?? 600_000);

  let seq = 0;
  let completed = 0;
  let windowStart: number | undefined;
  if (opts.countFromStart) {
    if (warmupCalls > 0 || warmupMs > 0) throw new Error("countFromStart excludes a warm-up");
    windowStart = t0;
    opts.onWindow?.("start");
  }
  let windowEnd: number | undefined;
  let counted = 0;
  const rttMs: number[] = [];
  const values: T[] = [];

  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (windowEnd === undefined && failure === undefined) {
      const started = performance.now();
      if (started > hardEnd) {
        throw new Error(`load run passed its hard limit with ${counted} calls measured`);
      }
      let value: T;
      try {
        value = await opts.call(seq++);
      } catch (error) {
        failure ??= { error }; // stops every worker: a benchmark with failing calls is void
        break;
      }
      const done = performance.now();
      if (windowEnd !== undefined || failure !== undefined) break; // after the window: not counted
      completed++;
      if (windowStart === undefined) {
        if (completed >= warmupCalls && done - t0 >= warmupMs) {
          windowStart = done;
          opts.onWindow?.("start");
        }
        continue;
      }
      counted++;
      if (started >= windowStart) {
        rttMs.push(done - started);
        values.push(value);
      }
      const elapsed = done - windowStart;
      if (counted >= maxCalls || (elapsed >= maxMs && counted >= minCalls)) {
        windowEnd = done;
        opts.onWindow?.("end");
      }
    }
  };
  const settled = await Promise.allSettled(Array.from({ length: opts.concurrency }, worker));
  for (const s of settled) if (s.status === "rejected") failure ??= { error: s.reason };
  if (failure !== undefined) throw failure.error;
  const elapsedMs = windowEnd! - windowStart!;
  const images = counted * opts.imagesPerCall;
  return {
    calls: counted,
    images,
    elapsedMs,
    imagesPerSecond: (images * 1000) / elapsedMs,
    rttMs,
    values,
  };
}
