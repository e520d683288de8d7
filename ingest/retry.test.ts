// Retries: transient failures are retried with back-off or the server's Retry-After (shared by
// every photo), permanent and fatal ones are not, and the count of attempts is kept.
import { describe, expect, it } from "vitest";
import { delayBefore, Gate, GaveUp, withRetries } from "./retry.ts";
import {
  failureOfConnectCode,
  failureOfStatus,
  parseRetryAfter,
  SourceError,
} from "./sources/source.ts";

const policy = { retries: 3, baseMs: 1, maxMs: 50 };
const never = new AbortController().signal;

describe("retry policy", () => {
  it("waits the longer of back-off and Retry-After, capped at the maximum", () => {
    const t = (ms?: number) => new SourceError("transient", "429", "x", ms);
    const p = { retries: 5, baseMs: 100, maxMs: 1000 };
    expect(delayBefore(1, t(), p, () => 1)).toBe(100);
    expect(delayBefore(3, t(), p, () => 1)).toBe(400);
    expect(delayBefore(3, t(), p, () => 0)).toBe(200); // jitter: half to full
    expect(delayBefore(9, t(), p, () => 1)).toBe(1000);
    expect(delayBefore(1, t(700), p, () => 1)).toBe(700);
    expect(delayBefore(1, t(60_000), p, () => 1)).toBe(1000);
  });

  it("reads Retry-After as seconds or an HTTP date", () => {
    expect(parseRetryAfter("2")).toBe(2000);
    expect(parseRetryAfter("Thu, 01 Jan 1970 00:00:05 GMT", 1000)).toBe(4000);
    expect(parseRetryAfter(null)).toBeUndefined();
    expect(parseRetryAfter("soon")).toBeUndefined();
  });

  it("sorts statuses and Connect codes into retry, this photo, or stop", () => {
    expect([429, 503, 502, 504].map(failureOfStatus)).toEqual(Array(4).fill("transient"));
    expect([400, 413, 415, 422].map(failureOfStatus)).toEqual(Array(4).fill("permanent"));
    expect(failureOfStatus(401)).toBe("fatal");
    expect(
      ["unavailable", "resource_exhausted", "deadline_exceeded"].map(failureOfConnectCode),
    ).toEqual(Array(3).fill("transient"));
    expect(failureOfConnectCode("invalid_argument")).toBe("permanent");
    expect(failureOfConnectCode("unauthenticated")).toBe("fatal");
  });

  it("retries transient failures until one succeeds", async () => {
    let n = 0;
    const r = await withRetries(
      async () => {
        if (++n < 3) throw new SourceError("transient", "unavailable", "down");
        return "ok";
      },
      policy,
      new Gate(),
      never,
    );
    expect(r).toEqual({ value: "ok", attempts: 3 });
  });

  it("gives up after the last retry, and at once on permanent or fatal failures", async () => {
    const failing = (failure: "transient" | "permanent" | "fatal") => async () => {
      throw new SourceError(failure, "c", failure);
    };
    for (const [failure, attempts] of [
      ["transient", 4],
      ["permanent", 1],
      ["fatal", 1],
    ] as const) {
      const e = await withRetries(failing(failure), policy, new Gate(), never).catch(
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(GaveUp);
      expect((e as GaveUp).attempts).toBe(attempts);
      expect((e as GaveUp).error.failure).toBe(failure);
    }
  });

  it("holds every later attempt back for a Retry-After", async () => {
    const gate = new Gate();
    const starts: number[] = [];
    let n = 0;
    await withRetries(
      async () => {
        starts.push(Date.now());
        if (++n === 1) throw new SourceError("transient", "429", "slow down", 250);
        return 1;
      },
      { retries: 1, baseMs: 1, maxMs: 1000 },
      gate,
      never,
    );
    const t0 = Date.now();
    // Another photo, started just after, passes at once: the 250 ms are over, and it does not
    // wait them again (a pause that long leaves room for a loaded machine's stalls).
    await gate.pass(never);
    expect(starts[1]! - starts[0]!).toBeGreaterThanOrEqual(249);
    expect(Date.now() - t0).toBeLessThan(250);
  });
});
