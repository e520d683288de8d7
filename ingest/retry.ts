/** One attempt function in, its answer out after as many attempts as the policy allows: transient failures wait (exponential back-off with jitter, or the server's Retry-After when longer, which also holds back every other photo: a 429 speaks for the whole client), permanent and fatal ones are thrown at once. */
import { setTimeout as sleep } from "node:timers/promises";
import { SourceError } from "./sources/source.ts";

export interface RetryPolicy {
  /** Further attempts after the first. */
  readonly retries: number;
  readonly baseMs: number;
  readonly maxMs: number;
}

/** The time before which no attempt starts, shared by all the photos of a run. */
export class Gate {
  #notBefore = 0;

  holdFor(ms: number): void {
    this.#notBefore = Math.max(this.#notBefore, Date.now() + ms);
  }

  async pass(signal: AbortSignal): Promise<void> {
    const wait = this.#notBefore - Date.now();
    if (wait > 0) await sleep(wait, undefined, { signal });
  }
}

/** The wait before attempt `n + 1` (n ≥ 1 attempts done): the longer of back-off and Retry-After, at most maxMs. */
export function delayBefore(
  n: number,
  error: SourceError,
  policy: RetryPolicy,
  random = Math.random,
): number {
  const backoff = Math.min(policy.maxMs, policy.baseMs * 2 ** (n - 1)) * (0.5 + random() / 2);
  return Math.min(policy.maxMs, Math.max(backoff, error.retryAfterMs ?? 0));
}

export interface Attempted<T> {
  readonly value: T;
  readonly attempts: number;
}

/** Thrown when the attempts ran out or the failure was not transient; `attempts` says how many were made. */
export class GaveUp extends Error {
  readonly error: SourceError;
  readonly attempts: number;
  constructor(error: SourceError, attempts: number) {
    super(error.message);
    this.error = error;
    this.attempts = attempts;
  }
}

export async function withRetries<T>(
  attempt: (signal: AbortSignal) => Promise<T>,
  policy: RetryPolicy,
  gate: Gate,
  signal: AbortSignal,
): Promise<Attempted<T>> {
  for (let n = 1; ; n++) {
    await gate.pass(signal);
    try {
      return { value: await attempt(signal), attempts: n };
    } catch (error) {
      const e =
        error instanceof SourceError
          ? error
          : new SourceError("transient", "unknown", (error as Error).message);
      if (signal.aborted || e.failure !== "transient" || n > policy.retries) throw new GaveUp(e, n);
      if (e.retryAfterMs !== undefined) gate.holdFor(Math.min(e.retryAfterMs, policy.maxMs));
      await sleep(delayBefore(n, e, policy), undefined, { signal });
    }
  }
}
