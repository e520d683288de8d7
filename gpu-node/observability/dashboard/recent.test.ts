import { describe, expect, it } from "vitest";
import { RecentHistory, STAGES, type StageSeconds } from "./recent.ts";

const stages = (totalMs: number): StageSeconds => ({
  decode: totalMs / 4000,
  preprocess: 0.0001,
  queue: 0,
  inference: totalMs / 2000,
  total: totalMs / 1000,
});

/** A history on a hand-driven clock starting at a whole second. */
function setup(seconds = 10) {
  let nowMs = 1_000_000_000_000;
  const h = new RecentHistory({ seconds, now: () => nowMs });
  return { h, advance: (ms: number) => (nowMs += ms), start: nowMs };
}

describe("RecentHistory", () => {
  it("summarises each completed second: counts, throughput and percentiles within a bucket (±5%)", () => {
    const { h, advance, start } = setup();
    for (let i = 1; i <= 100; i++) h.call(stages(i), 2); // totals 1..100 ms
    h.batch(8);
    h.batch(4);
    h.failedImages(3);
    h.error();
    expect(h.series(start)).toEqual([]); // the current second is not complete yet
    advance(1000);
    const [s] = h.series(start);
    expect(s).toMatchObject({ calls: 100, images: 200, failedImages: 3, errors: 1, batches: 2 });
    expect(s!.meanBatchSize).toBe(6);
    const total = s!.stages.total!;
    expect(total.p50 / 50).toBeCloseTo(1, 1);
    expect(total.p95 / 95).toBeCloseTo(1, 1);
    expect(total.p99 / 99).toBeCloseTo(1, 1);
    expect(s!.stages.queue).toEqual({ p50: 0, p95: 0, p99: 0 });
  });

  it("merges seconds exactly in a window summary and reports idle seconds as empty", () => {
    const { h, advance, start } = setup();
    h.call(stages(10), 1);
    advance(1000);
    advance(1000); // an idle second
    h.call(stages(20), 3);
    h.call(stages(20), 3);
    advance(1000);
    const series = h.series(start);
    expect(series.map((s) => s.calls)).toEqual([1, 0, 2]);
    expect(series[1]!.stages.total).toBeNull();
    const sum = h.summary(60, start);
    expect(sum).toMatchObject({ seconds: 3, calls: 3, images: 7, imagesPerSecond: 7 / 3 });
    expect(sum.stages.total!.count).toBe(3);
    expect(sum.stages.total!.mean).toBeCloseTo(50 / 3, 6);
    expect(sum.stages.total!.p99 / 20).toBeCloseTo(1, 1);
    for (const stage of STAGES) expect(sum.stages[stage]).not.toBeNull();
  });

  it("forgets what is older than its capacity, and never reports before `since`", () => {
    const { h, advance, start } = setup(5);
    h.call(stages(10), 1);
    advance(3000);
    h.call(stages(10), 1);
    advance(1000);
    expect(h.summary(60, start).calls).toBe(2);
    advance(3000);
    // The first call's second is out of the ring now; the slot it used was reused.
    expect(h.series(start).length).toBe(4);
    expect(h.summary(60, start).calls).toBe(1);
    expect(h.summary(60, start + 5000).calls).toBe(0);
  });
});
