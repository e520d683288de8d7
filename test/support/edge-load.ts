/** Closed-loop clients of the edge for fault tests: each worker posts one image after another until stopped, every outcome kept (status, time, Retry-After, the returned vector) so that each answer can be checked against the reference for its image. */
import { maxAbsDiff } from "./gpu-node-client.ts";

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
  /** Safety net: stops by itself after this long. */
  readonly maxMs?: number;
}): EdgeLoad {
  const outcomes: EdgeOutcome[] = [];
  let running = true;
  const hardStop = setTimeout(() => {
    running = false;
  }, opts.maxMs ?? 60_000);
  const loops = Array.from({ length: opts.workers }, async (_, w) => {
    for (let k = 0; running; k++) {
      const i = (w * 7 + k) % opts.images.length;
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
          await new Promise((r) => setTimeout(r, 20));
        }
      } catch {
        outcomes.push({ i, t0, ms: performance.now() - t0, status: 0, retryAfter: null });
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  });
  return {
    outcomes,
    ok: () => outcomes.filter((o) => o.status === 200).length,
    async stop() {
      running = false;
      await Promise.all(loops);
      clearTimeout(hardStop);
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

/** Polls `probe` every 20 ms until it is true; the ms it took, or throws after `timeoutMs`. */
export async function timeUntil(probe: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    if (await probe().catch(() => false)) return performance.now() - t0;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`not true within ${timeoutMs} ms`);
}

export const statusOf = async (url: string): Promise<number> => {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
    await res.body?.cancel();
    return res.status;
  } catch {
    return 0;
  }
};
