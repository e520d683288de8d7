import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ModelStatisticsSchema } from "../../../proto/gen/inference/grpc_service_pb.js";
import { readStats } from "./stats.ts";

/** Cumulative statistics after `requests` requests of `batch` images with fixed phase times. */
const cumulative = (requests: number, batch: number, us = { q: 100, i: 20, c: 900, o: 10 }) => {
  const d = (perUs: number) => ({ count: BigInt(requests), ns: BigInt(requests * perUs * 1000) });
  return create(ModelStatisticsSchema, {
    name: "m",
    version: "1",
    inferenceCount: BigInt(requests * batch),
    executionCount: BigInt(requests),
    inferenceStats: {
      success: d(us.q + us.i + us.c + us.o),
      fail: { count: 0n, ns: 0n },
      queue: d(us.q),
      computeInput: d(us.i),
      computeInfer: d(us.c),
      computeOutput: d(us.o),
    },
  });
};

describe("readStats", () => {
  it("gives totals at once and per-inference phase times over the window", () => {
    const first = readStats(cumulative(10, 8), 1000, undefined);
    expect(first.window).toBeNull();
    expect(first.total).toMatchObject({ success: 10, inferences: 80, executions: 10 });
    expect(first.total.us.computeInfer).toBe(9000);

    // 30 more requests, slower in the queue: the window shows the new requests only.
    const prevTotals = cumulative(10, 8).inferenceStats!;
    const next = cumulative(40, 8);
    next.inferenceStats!.queue = {
      $typeName: "inference.StatisticDuration",
      count: 40n,
      ns: prevTotals.queue!.ns + 30n * 400_000n,
    };
    const second = readStats(next, 3000, first);
    expect(second.window).toMatchObject({ ms: 2000, requests: 30, inferences: 240 });
    expect(second.window!.perInferenceUs).toEqual({
      queue: 400,
      computeInput: 20,
      computeInfer: 900,
      computeOutput: 10,
    });
  });

  it("starts over when Triton restarted (counters went down), and reports an idle window as null times", () => {
    const before = readStats(cumulative(50, 1), 0, undefined);
    const idle = readStats(cumulative(50, 1), 1000, before);
    expect(idle.window).toMatchObject({ requests: 0, perInferenceUs: null });
    const restarted = readStats(cumulative(3, 1), 2000, idle);
    expect(restarted.window).toBeNull();
    expect(restarted.total.success).toBe(3);
  });
});
