import { describe, expect, it } from "vitest";
import { decodeInRounds } from "./decode-rounds.ts";

/** A scheduler the test drives: rounds run only when it says so. */
function manualRounds() {
  const pending: (() => void)[] = [];
  return {
    schedule: (round: () => void) => {
      pending.push(round);
    },
    /** Runs the rounds scheduled so far; answers how many. */
    run(): number {
      const rounds = pending.splice(0);
      for (const round of rounds) round();
      return rounds.length;
    },
  };
}

const bytes = (n: number) => Uint8Array.of(n);

describe("decodeInRounds", () => {
  it("starts the decodes asked for in one turn together, in one round, each answer to its caller", async () => {
    const rounds = manualRounds();
    const started: number[] = [];
    const decode = decodeInRounds(async (data: Uint8Array, limits: number) => {
      started.push(data[0]!);
      return data[0]! * limits;
    }, rounds.schedule);
    const answers = [decode(bytes(1), 10), decode(bytes(2), 100), decode(bytes(3), 1000)];
    await Promise.resolve();
    expect(started).toEqual([]); // nothing before the round
    expect(rounds.run()).toBe(1); // three decodes, one round
    expect(started).toEqual([1, 2, 3]);
    expect(await Promise.all(answers)).toEqual([10, 200, 3000]);
  });

  it("puts a decode asked for after a round began into the next round", async () => {
    const rounds = manualRounds();
    const started: number[] = [];
    let decode: (d: Uint8Array, l: number) => Promise<number> = async () => 0;
    decode = decodeInRounds(async (data: Uint8Array) => {
      started.push(data[0]!);
      // A decoder that asks for another decode while its round runs.
      if (data[0] === 1) void decode(bytes(9), 0);
      return data[0]!;
    }, rounds.schedule);
    const first = decode(bytes(1), 0);
    expect(rounds.run()).toBe(1);
    expect(started).toEqual([1]);
    expect(rounds.run()).toBe(1);
    expect(started).toEqual([1, 9]);
    expect(await first).toBe(1);
  });

  it("keeps a failing decode to its own caller, thrown or rejected", async () => {
    const rounds = manualRounds();
    const decode = decodeInRounds((data: Uint8Array) => {
      if (data[0] === 1) throw new Error("thrown");
      if (data[0] === 2) return Promise.reject(new Error("rejected"));
      return Promise.resolve("pixels");
    }, rounds.schedule);
    const answers = [decode(bytes(1), 0), decode(bytes(2), 0), decode(bytes(3), 0)];
    rounds.run();
    const settled = await Promise.allSettled(answers);
    expect(
      settled.map((s) => (s.status === "fulfilled" ? s.value : (s.reason as Error).message)),
    ).toEqual(["thrown", "rejected", "pixels"]);
  });

  it("does not decode for a call that was cancelled before its round, and says why", async () => {
    const rounds = manualRounds();
    const started: number[] = [];
    const decode = decodeInRounds(async (data: Uint8Array) => {
      started.push(data[0]!);
      return data[0]!;
    }, rounds.schedule);
    const call = new AbortController();
    const gone = decode(bytes(1), 0, call.signal);
    const kept = decode(bytes(2), 0, new AbortController().signal);
    call.abort(new Error("client went away"));
    rounds.run();
    await expect(gone).rejects.toThrow("client went away");
    expect(await kept).toBe(2);
    expect(started).toEqual([2]);
  });

  it("runs its rounds on setImmediate by default: after the turn's other callbacks", async () => {
    const order: string[] = [];
    const decode = decodeInRounds(async (data: Uint8Array) => {
      order.push(`decode ${data[0]}`);
      return data[0]!;
    });
    const answer = decode(bytes(1), 0);
    queueMicrotask(() => order.push("microtask"));
    await answer;
    expect(order).toEqual(["microtask", "decode 1"]);
  });
});
