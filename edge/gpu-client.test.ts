// The gpu-node client's failover and shedding, on stand-ins and a hand-driven clock: a full
// gpu-node is skipped for GPU_NODE_SHED_MS, the next one is tried at once, and when every one is
// full the caller hears 503 without another call.
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, it, vi } from "vitest";
import { HttpError } from "./errors.ts";
import { eventLoopWasIdle, turn } from "./event-loop.ts";
import { createGpuClient } from "./gpu-client.ts";
import { createStandIn, type StandIn } from "./testing/gpu-stand-in.ts";

/** A stand-in that refuses as full while `full.value` is true. */
function fullable() {
  const full = { value: true };
  const standIn = createStandIn({
    async embed(req) {
      if (full.value) throw new ConnectError("queue full", Code.ResourceExhausted);
      return { embeddings: req.images.map((im, index) => ({ id: im.id, index })) };
    },
  });
  // The override replaces the counting embed: count at the fetch.
  const counted: StandIn & { embeds: number } = Object.assign(standIn, { embeds: 0 });
  const inner = standIn.fetch;
  counted.fetch = async (input, init) => {
    if (new Request(input, init).url.endsWith("/Embed")) counted.embeds++;
    return inner(input, init);
  };
  return { standIn: counted, full };
}

function client(standIns: StandIn[], shedMs: number) {
  const clock = { ms: 1_000_000 };
  const gpu = createGpuClient({
    urls: standIns.map((_, i) => `http://gpu-${i}.test`),
    token: "",
    timeoutMs: 5_000,
    shedMs,
    now: () => clock.ms,
    fetch: async (input, init) => {
      const host = new URL(new Request(input, init).url).hostname;
      return standIns[Number(host.slice(4, -5))]!.fetch(input, init);
    },
  });
  return { gpu, clock };
}

const image = new Uint8Array([1, 2, 3]);

async function status(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 200;
  } catch (err) {
    if (err instanceof HttpError) return err.status;
    throw err;
  }
}

describe("gpu-node client: shedding while gpu-nodes are full", () => {
  it("after a refusal, answers 503 without calling until GPU_NODE_SHED_MS passes", async () => {
    const a = fullable();
    const { gpu, clock } = client([a.standIn], 50);
    expect(gpu.saturated()).toBe(false);
    expect(await status(gpu.embed([image], "r1"))).toBe(503);
    expect(a.standIn.embeds).toBe(1);

    expect(gpu.saturated()).toBe(true);
    clock.ms += 49;
    const shed = await gpu.embed([image], "r2").catch((e: unknown) => e);
    expect(shed).toBeInstanceOf(HttpError);
    expect(shed).toMatchObject({ status: 503, code: "overloaded", retryAfter: 1 });
    expect(a.standIn.embeds).toBe(1);

    // Past the hold it is asked again; an answer clears the mark at once.
    clock.ms += 2;
    a.full.value = false;
    expect(gpu.saturated()).toBe(false);
    expect(await status(gpu.embed([image], "r3"))).toBe(200);
    expect(a.standIn.embeds).toBe(2);
  });

  it("tries the next gpu-node at once and skips the full one while it is marked", async () => {
    const a = fullable();
    const b = fullable();
    b.full.value = false;
    const { gpu, clock } = client([a.standIn, b.standIn], 50);
    // The first request starts at gpu-0 (full), then gpu-1 answers — no pause between them: the
    // clock does not move, so a pause would have to come from somewhere else.
    const first = await gpu.embed([image], "r1");
    expect(first).toMatchObject({ url: "http://gpu-1.test", attempts: 2 });
    // Requests that would start at gpu-0 skip it while it is marked full.
    for (let i = 0; i < 4; i++) await gpu.embed([image], `r${i + 2}`);
    expect(a.standIn.embeds).toBe(1);
    expect(b.standIn.embeds).toBe(5);
    expect(gpu.saturated()).toBe(false);
    // Both full: one refusal each, then 503s without calls.
    b.full.value = true;
    clock.ms += 51;
    expect(await status(gpu.embed([image], "r6"))).toBe(503);
    expect(await status(gpu.embed([image], "r7"))).toBe(503);
    expect(gpu.saturated()).toBe(true);
    expect(a.standIn.embeds + b.standIn.embeds).toBe(1 + 5 + 2);
  });

  it("with GPU_NODE_SHED_MS=0 every request asks the gpu-node", async () => {
    const a = fullable();
    const { gpu } = client([a.standIn], 0);
    for (let i = 0; i < 3; i++) expect(await status(gpu.embed([image], `r${i}`))).toBe(503);
    expect(a.standIn.embeds).toBe(3);
    expect(gpu.saturated()).toBe(false);
  });

  it("does not mark a gpu-node full for other failures", async () => {
    const failing = createStandIn({
      async embed() {
        throw new ConnectError("down", Code.Unavailable);
      },
    });
    const { gpu } = client([failing], 50);
    expect(await status(gpu.embed([image], "r1"))).toBe(503);
    expect(gpu.saturated()).toBe(false);
  });
});

describe("gpu-node client: the request body in workerd", () => {
  afterEach(() => {
    vi.restoreAllMocks();
    eventLoopWasIdle();
  });

  it("goes as a stream of the same bytes, and the polls due for it end once it is read", async () => {
    // The polls' 1 ms timers never fire here: a poll that ends was ended by the read.
    const realSetTimeout = globalThis.setTimeout;
    const polls = vi
      .spyOn(globalThis, "setTimeout")
      .mockImplementation(((fn: () => void, ms?: number) =>
        ms === 1 ? 0 : realSetTimeout(fn, ms)) as typeof setTimeout);
    const standIn = createStandIn();
    let fetched!: () => void;
    const called = new Promise<void>((resolve) => {
      fetched = resolve;
    });
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    let streamed: boolean | undefined;
    const gpu = createGpuClient({
      urls: ["http://gpu-0.test"],
      token: "",
      timeoutMs: 5_000,
      fetch: async (input, init) => {
        streamed = init?.body instanceof ReadableStream;
        fetched();
        await gate;
        return standIn.fetch(input, init);
      },
    });
    const call = gpu.embed([image, new Uint8Array([4, 5])], "r1");
    await called;
    let polled = false;
    const poll = turn().then(() => {
      polled = true;
    });
    await new Promise((resolve) => realSetTimeout(resolve, 20));
    expect(polled).toBe(false);
    // The gpu-node reads the body (and decodes both images from it): the poll ends.
    open();
    await poll;
    expect(polls.mock.calls.filter((c) => c[1] === 1)).toHaveLength(1);
    expect(streamed).toBe(true);
    expect((await call).vectors).toHaveLength(2);
    // The second poll due for the call has nothing left to wait for.
    await turn();
  });
});
