// In workerd (this file runs there): the two turns after a subrequest wait on a real 1 ms timer (a
// socket poll); the others on a 0 ms timer, which costs nothing but polls nothing.
import { afterEach, describe, expect, it, vi } from "vitest";
import { eventLoopWasIdle, subrequestBodyRead, subrequestStarted, turn } from "./event-loop.ts";

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
  eventLoopWasIdle();
});

/** The delays of the timers set from now on. */
function timerDelays(): () => unknown[] {
  const spy = vi.spyOn(globalThis, "setTimeout");
  return () => spy.mock.calls.map((c) => c[1]);
}

describe("event loop turns in workerd", () => {
  it("waits on a 1 ms timer twice after a subrequest, then turns for free again", async () => {
    const delays = timerDelays();
    await turn();
    subrequestStarted();
    await turn();
    await turn();
    await turn();
    subrequestStarted();
    subrequestStarted();
    await turn();
    await turn();
    await turn();
    expect(delays()).toEqual([0, 1, 1, 0, 1, 1, 0]);
  });

  it("takes no wait for a subrequest the runtime polled while idle", async () => {
    const delays = timerDelays();
    subrequestStarted();
    eventLoopWasIdle();
    await turn();
    expect(delays()).toEqual([0]);
  });

  it("ends a poll once the subrequest's body has been read, not at its timer", async () => {
    vi.useFakeTimers();
    subrequestStarted();
    let read!: () => void;
    subrequestBodyRead(
      new Promise<void>((resolve) => {
        read = resolve;
      }),
    );
    let done = false;
    const first = turn().then(() => {
      done = true;
    });
    await Promise.resolve();
    expect(done).toBe(false);
    read();
    await first;
    // Without the clock moving: the read ended it, and its timer is gone.
    expect(vi.getTimerCount()).toBe(0);
    // The body is read: the second poll due for it has nothing to wait for.
    await turn();
    expect(vi.getTimerCount()).toBe(0);
  });

  it("falls back on the timer when the body is never read, or read for an earlier call", async () => {
    vi.useFakeTimers();
    subrequestBodyRead(Promise.resolve());
    subrequestStarted();
    let done = false;
    const poll = turn().then(() => {
      done = true;
    });
    subrequestBodyRead(new Promise(() => {}));
    await Promise.resolve();
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await poll;
    expect(done).toBe(true);
  });

  it("ends a poll when the body's read fails (the call was refused or aborted)", async () => {
    vi.useFakeTimers();
    subrequestStarted();
    subrequestBodyRead(Promise.reject(new Error("aborted")));
    await turn();
    expect(vi.getTimerCount()).toBe(0);
  });
});
