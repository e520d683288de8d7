// Progress: the line carries done/total, img/s over recent answers, ETA and errors; log mode writes
// whole lines, bar mode redraws one line in place and clears it before a warning.
import { describe, expect, it } from "vitest";
import { formatDuration, Progress } from "./progress.ts";

function capture() {
  const text: string[] = [];
  return { write: (t: string) => void text.push(t), text };
}

describe("progress", () => {
  it("shows done/total, the recent rate, the ETA and the errors", () => {
    let now = 0;
    const out = capture();
    const p = new Progress("log", out, capture(), 1000, () => now);
    p.start();
    p.counts.total = 100;
    for (let i = 0; i < 20; i++) {
      now += 100; // 10 img/s
      p.sent();
    }
    p.failed();
    p.unchanged();
    p.draw();
    p.stop();
    expect(out.text.at(-1)).toBe("progress 22/100 22% 10.0 img/s ETA 0:08 errors 1 unchanged 1\n");
  });

  it("redraws a bar in place and keeps warnings off it", () => {
    const out = capture();
    const err = capture();
    const p = new Progress("bar", out, err, 1000);
    p.counts.total = 4;
    p.sent();
    p.draw();
    p.warn("warning: x");
    p.stop();
    expect(out.text[0]!.startsWith("\r\x1b[2K[######------------------] 1/4 25%")).toBe(true);
    expect(out.text[1]).toBe("\r\x1b[2K");
    expect(err.text).toEqual(["warning: x\n"]);
    expect(out.text.at(-1)).toBe("\n");
  });

  it("formats durations", () => {
    expect([
      formatDuration(5),
      formatDuration(125),
      formatDuration(3725),
      formatDuration(Number.POSITIVE_INFINITY),
    ]).toEqual(["0:05", "2:05", "1:02:05", "?"]);
  });
});
