// On Node (the Node edge's WASM fallback): every turn is a setImmediate, which polls sockets.
import { describe, expect, it, vi } from "vitest";
import { subrequestStarted, turn } from "./event-loop.ts";

describe("event loop turns on Node", () => {
  it("never waits on a timer, subrequest or not", async () => {
    const timers = vi.spyOn(globalThis, "setTimeout");
    const immediates = vi.spyOn(globalThis, "setImmediate");
    subrequestStarted();
    await turn();
    await turn();
    expect(timers).not.toHaveBeenCalled();
    expect(immediates).toHaveBeenCalledTimes(2);
    vi.restoreAllMocks();
  });
});
