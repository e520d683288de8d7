// In workerd (this file runs there): the two turns after a subrequest wait on a real 1 ms timer (a
// socket poll); the others on a 0 ms timer, which costs nothing but polls nothing.
import { afterEach, describe, expect, it, vi } from "vitest";
import { eventLoopWasIdle, subrequestStarted, turn } from "./event-loop.ts";

afterEach(() => {
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
});
