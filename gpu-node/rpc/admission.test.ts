import { describe, expect, it } from "vitest";
import { Semaphore } from "./admission.ts";

describe("Semaphore", () => {
  it("refuses without waiting when full, and frees on release", () => {
    const s = new Semaphore(3);
    expect(s.tryAcquire(2)).toBe(true);
    expect(s.tryAcquire(2)).toBe(false);
    expect(s.inUse).toBe(2);
    s.release(2);
    expect(s.tryAcquire(3)).toBe(true);
  });

  it("serves waiters first come, first served", async () => {
    const s = new Semaphore(2);
    s.tryAcquire(2);
    const order: string[] = [];
    const a = s.acquire(2).then(() => order.push("a"));
    const b = s.acquire(1).then(() => order.push("b"));
    // b fits after one release, but must not overtake a.
    s.release(1);
    await Promise.resolve();
    expect(order).toEqual([]);
    expect(s.tryAcquire(1)).toBe(false); // waiters come first
    s.release(1);
    await a;
    s.release(2);
    await b;
    expect(order).toEqual(["a", "b"]);
  });

  it("drops an aborted waiter and lets the next one through", async () => {
    const s = new Semaphore(2);
    s.tryAcquire(2);
    const ac = new AbortController();
    const big = s.acquire(2, ac.signal);
    const small = s.acquire(1);
    s.release(1);
    ac.abort(new Error("gone"));
    await expect(big).rejects.toThrow("gone");
    await small;
    expect(s.inUse).toBe(2);
  });

  it("rejects impossible requests and over-release", async () => {
    const s = new Semaphore(1);
    await expect(s.acquire(2)).rejects.toThrow(RangeError);
    expect(() => s.release(1)).toThrow();
  });
});
