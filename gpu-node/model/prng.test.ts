import { describe, expect, it } from "vitest";
import { Rng, streamFor } from "./prng.ts";

describe("Rng", () => {
  it("repeats per seed and differs across seeds and names", () => {
    const draw = (rng: Rng) => Array.from({ length: 8 }, () => rng.nextU32());
    expect(draw(new Rng(1))).toEqual(draw(new Rng(1)));
    expect(draw(new Rng(1))).not.toEqual(draw(new Rng(2)));
    expect(draw(streamFor(0, "a"))).not.toEqual(draw(streamFor(0, "b")));
    expect(draw(streamFor(0, "a"))).not.toEqual(draw(streamFor(1, "a")));
  });

  it("fillUniform gives exactly what range gives, within bounds", () => {
    const filled = new Float32Array(1000);
    new Rng(5).fillUniform(filled, -0.5, 2);
    const one = new Rng(5);
    const ranged = Float32Array.from({ length: 1000 }, () => one.range(-0.5, 2));
    expect(filled).toEqual(ranged);
    expect(Math.min(...filled)).toBeGreaterThanOrEqual(-0.5);
    expect(Math.max(...filled)).toBeLessThan(2);
  });
});
