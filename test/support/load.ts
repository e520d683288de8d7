/**
 * Load for tests and benchmarks, in this process: closed-loop callers that run until stopped
 * (closedLoop; the gpu-node's Embed mix and the edge's clients are built on it), a benchmark's
 * closed loop with a warm-up and a measured window (runLoad), and an HTTP load on the edge over
 * keep-alive connections, closed loop or at a fixed rate (runHttpLoad, autocannon).
 */
import { setTimeout as sleep } from "node:timers/promises";
import autocannon from "autocannon";
import { embedderClient, maxAbsDiff } from "./gpu-node-client.ts";
import { randomBytes } from "./images.ts";

// ---------------------------------------------------------------------------------------------
// Closed-loop callers until stopped

/** What a closed-loop caller is told about the call it is to make. */
export interface LoopCall {
  /** Which caller (0 … workers − 1), and how many calls it has made before. */
  readonly worker: number;
  readonly k: number;
  /** Calls started before this one, over all callers. */
  readonly seq: number;
  /** Aborted when the loop's `maxMs` has passed (unless abortAtMaxMs is false). */
  readonly signal: AbortSignal;
}

export interface ClosedLoop {
  /** Starts no more calls and resolves once those in flight have finished. */
  stop(): Promise<void>;
  /** Resolves once every caller has stopped (after stop() or maxMs). */
  readonly done: Promise<void>;
}

/**
 * `workers` callers, each calling `call` back to back until stop() or, as a safety net, `maxMs`
 * (which by default also aborts the calls in flight). `call` records its own outcomes; it must not
 * throw (a throw ends that caller's loop and rejects `done`).
 */
export function closedLoop(opts: {
  readonly workers: number;
  readonly call: (c: LoopCall) => Promise<void>;
  readonly maxMs?: number;
  readonly abortAtMaxMs?: boolean;
}): ClosedLoop {
  const abort = new AbortController();
  let running = true;
  const timer =
    opts.maxMs === undefined
      ? undefined
      : setTimeout(() => {
          running = false;
          if (opts.abortAtMaxMs !== false) abort.abort();
        }, opts.maxMs);
  let seq = 0;
  const done = Promise.all(
    Array.from({ length: opts.workers }, async (_, worker) => {
      for (let k = 0; running; k++)
        await opts.call({ worker, k, seq: seq++, signal: abort.signal });
    }),
  ).then(
    () => clearTimeout(timer),
    (error: unknown) => {
      clearTimeout(timer);
      throw error;
    },
  );
  return {
    done,
    stop() {
      running = false;
      return done;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The gpu-node: concurrent Embed calls of 1–4 images, some EmbedStreams, a trickle of bad images

export interface EmbedLoadOptions {
  readonly url: string;
  readonly images: readonly Uint8Array[];
  /** Calls in flight at once. */
  readonly concurrency: number;
  /** Hard stop: calls still in flight then are cancelled. */
  readonly maxMs: number;
  /** Every n-th call carries a corrupt image (invalid_argument); 0 = never. */
  readonly badEvery?: number;
  /** Every n-th call is an EmbedStream of 3 images (one of them corrupt); 0 = never. */
  readonly streamEvery?: number;
}

export interface EmbedLoad {
  /** Starts no more calls, lets those in flight finish, and resolves with what it did. */
  stop(): Promise<EmbedLoadResult>;
  readonly done: Promise<EmbedLoadResult>;
}

export interface EmbedLoadResult {
  readonly calls: number;
  readonly failedCalls: number;
  readonly imagesEmbedded: number;
}

export function startEmbedLoad(opts: EmbedLoadOptions): EmbedLoad {
  const client = embedderClient(opts.url);
  const result = { calls: 0, failedCalls: 0, imagesEmbedded: 0 };
  const pick = (i: number) => opts.images[i % opts.images.length]!;

  const one = async (i: number, signal: AbortSignal) => {
    if (opts.streamEvery && i % opts.streamEvery === opts.streamEvery - 1) {
      async function* items() {
        yield { image: { id: `s${i}a`, data: pick(i) } };
        yield { image: { id: `s${i}b`, data: randomBytes(400, i + 1) } };
        yield { image: { id: `s${i}c`, data: pick(i + 1) } };
      }
      for await (const r of client.embedStream(items(), { signal })) {
        if (r.result.case === "vector") result.imagesEmbedded++;
      }
      return;
    }
    const count = 1 + (i % 4);
    const images = Array.from({ length: count }, (_, k) => ({
      id: `${i}-${k}`,
      data: pick(i + k),
    }));
    if (opts.badEvery && i % opts.badEvery === opts.badEvery - 1) {
      images[count - 1] = { id: "corrupt", data: randomBytes(500, i + 1) };
    }
    const res = await client.embed({ images }, { signal });
    result.imagesEmbedded += res.embeddings.length;
  };

  const loop = closedLoop({
    workers: opts.concurrency,
    maxMs: opts.maxMs,
    async call({ seq, signal }) {
      result.calls++;
      await one(seq, signal).catch(() => {
        result.failedCalls++;
      });
    },
  });
  const done = loop.done.then(() => ({ ...result }));
  return {
    done,
    async stop() {
      await loop.stop();
      return done;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The edge: clients posting one image after another, every outcome kept and checkable

export interface EdgeOutcome {
  /** Which image was sent. */
  readonly i: number;
  /** performance.now() when sent, and the round trip in ms. */
  readonly t0: number;
  readonly ms: number;
  /** HTTP status, or 0 when no HTTP answer came at all. */
  readonly status: number;
  readonly retryAfter: string | null;
  readonly errorCode?: string;
  readonly vector?: Float32Array;
}

export interface EdgeLoad {
  readonly outcomes: EdgeOutcome[];
  ok(): number;
  /** Starts no new requests, waits for those in flight. */
  stop(): Promise<EdgeOutcome[]>;
}

export function startEdgeLoad(opts: {
  readonly url: string;
  readonly apiKey: string;
  readonly images: readonly Uint8Array[];
  readonly workers: number;
  /** Safety net: starts no more requests after this long. */
  readonly maxMs?: number;
}): EdgeLoad {
  const outcomes: EdgeOutcome[] = [];
  const loop = closedLoop({
    workers: opts.workers,
    maxMs: opts.maxMs ?? 60_000,
    // Requests in flight at the safety net's time finish: their outcomes are kept.
    abortAtMaxMs: false,
    async call({ worker, k }) {
      const i = (worker * 7 + k) % opts.images.length;
      const t0 = performance.now();
      try {
        const res = await fetch(`${opts.url}/v1/embeddings`, {
          method: "POST",
          headers: { authorization: `Bearer ${opts.apiKey}`, "content-type": "image/jpeg" },
          body: opts.images[i] as Uint8Array<ArrayBuffer>,
        });
        const text = await res.text();
        const ms = performance.now() - t0;
        if (res.status === 200) {
          const body = JSON.parse(text) as { data: { embedding: number[] }[] };
          outcomes.push({
            i,
            t0,
            ms,
            status: 200,
            retryAfter: null,
            vector: Float32Array.from(body.data[0]!.embedding),
          });
        } else {
          let errorCode: string | undefined;
          try {
            errorCode = (JSON.parse(text) as { error: { code: string } }).error.code;
          } catch {
            errorCode = "not-json";
          }
          outcomes.push({
            i,
            t0,
            ms,
            status: res.status,
            retryAfter: res.headers.get("retry-after"),
            errorCode,
          });
          await sleep(20);
        }
      } catch {
        outcomes.push({ i, t0, ms: performance.now() - t0, status: 0, retryAfter: null });
        await sleep(20);
      }
    },
  });
  return {
    outcomes,
    ok: () => outcomes.filter((o) => o.status === 200).length,
    async stop() {
      await loop.stop();
      return outcomes;
    },
  };
}

export interface Verified {
  readonly requests: number;
  readonly byStatus: Record<string, number>;
  /** 200s whose vector is the reference of the image sent. */
  readonly verified: number;
  /** 200s whose vector is not (zero, or the test fails). */
  readonly misrouted: number;
  /** Of those, how many equal another image's reference (an answer routed to the wrong caller). */
  readonly belongToAnotherImage: number;
}

/** Checks every 200 against `references[i]` (max |diff| ≤ 1e-5, batching's float noise). */
export function verifyOutcomes(
  outcomes: readonly EdgeOutcome[],
  references: readonly Float32Array[],
): Verified {
  const byStatus: Record<string, number> = {};
  let verified = 0;
  let misrouted = 0;
  let other = 0;
  for (const o of outcomes) {
    byStatus[o.status] = (byStatus[o.status] ?? 0) + 1;
    if (o.status !== 200) continue;
    if (maxAbsDiff(o.vector!, references[o.i]!) <= 1e-5) {
      verified++;
      continue;
    }
    misrouted++;
    if (references.some((r, j) => j !== o.i && maxAbsDiff(o.vector!, r) <= 1e-5)) other++;
  }
  return { requests: outcomes.length, byStatus, verified, misrouted, belongToAnotherImage: other };
}

// ---------------------------------------------------------------------------------------------
// A benchmark's closed loop: warm-up, then a measured window

export interface WindowedLoadOptions<T> {
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

export interface WindowedLoadResult<T> {
  /** Completions inside the measured window. */
  readonly calls: number;
  readonly images: number;
  readonly elapsedMs: number;
  readonly imagesPerSecond: number;
  /** Round trips (ms) and values of the calls that both started and finished inside the window. */
  readonly rttMs: readonly number[];
  readonly values: readonly T[];
}

export async function runLoad<T>(opts: WindowedLoadOptions<T>): Promise<WindowedLoadResult<T>> {
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

// ---------------------------------------------------------------------------------------------
// HTTP load on the edge (autocannon)

export interface LoadBody {
  readonly body: Buffer;
  readonly contentType: string;
}

export interface HttpLoadOptions {
  readonly url: string;
  readonly path: string;
  readonly apiKey: string;
  readonly bodies: readonly LoadBody[];
  readonly connections: number;
  readonly durationSeconds: number;
  /** Requests per second over all connections (open loop); omitted = as fast as answers come. */
  readonly overallRate?: number;
  /** Called with every response: which body it was for, its status, body and headers. */
  readonly check?: (
    index: number,
    status: number,
    body: string,
    headers: Record<string, string>,
  ) => void;
  /** Seconds before a request counts as timed out. */
  readonly timeoutSeconds?: number;
}

export interface HttpLoadResult {
  readonly requests: number;
  readonly durationSeconds: number;
  /** Responses per second over the run (all statuses). */
  readonly rps: number;
  readonly statuses: Record<string, number>;
  /** Latencies in ms by status. */
  readonly latencies: Record<string, number[]>;
  /** Connection errors and timeouts (no HTTP answer at all). */
  readonly errors: number;
  readonly timeouts: number;
}

export async function runHttpLoad(opts: HttpLoadOptions): Promise<HttpLoadResult> {
  const latencies: Record<string, number[]> = {};
  const statuses: Record<string, number> = {};
  const requests = opts.bodies.map((b, index) => ({
    method: "POST" as const,
    path: opts.path,
    headers: { "content-type": b.contentType, authorization: `Bearer ${opts.apiKey}` },
    body: b.body,
    onResponse: (
      status: number,
      body: string,
      _context: unknown,
      headers?: Record<string, unknown>,
    ) => {
      // Header names arrive as the server cased them.
      const lower = Object.fromEntries(
        Object.entries(headers ?? {}).map(([k, v]) => [k.toLowerCase(), String(v)]),
      );
      opts.check?.(index, status, body, lower);
    },
  }));
  // Without a callback autocannon returns its instance, which is also a promise of the result.
  const instance = autocannon({
    url: opts.url,
    connections: opts.connections,
    duration: opts.durationSeconds,
    timeout: opts.timeoutSeconds ?? 30,
    ...(opts.overallRate !== undefined ? { overallRate: opts.overallRate } : {}),
    // autocannon's typings predate onResponse's headers argument.
    requests: requests as unknown as autocannon.Request[],
  }) as unknown as autocannon.Instance & PromiseLike<autocannon.Result>;
  instance.on("response", (_client: unknown, status: number, _bytes: number, ms: number) => {
    const k = String(status);
    statuses[k] = (statuses[k] ?? 0) + 1;
    latencies[k] ??= [];
    latencies[k].push(ms);
  });
  const result = await instance;
  const total = Object.values(statuses).reduce((a, b) => a + b, 0);
  return {
    requests: total,
    durationSeconds: result.duration,
    rps: total / result.duration,
    statuses,
    latencies,
    errors: result.errors,
    timeouts: result.timeouts,
  };
}
