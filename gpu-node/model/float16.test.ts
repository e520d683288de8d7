import { describe, expect, it } from "vitest";
import { float16Bits, float16Value, toFloat16 } from "./float16.ts";

/** The engine's own conversion where it has one (Node 24: Float16Array), to check against. */
const NativeFloat16 = (globalThis as { Float16Array?: new (n: number) => ArrayLike<number> })
  .Float16Array;

describe("float16Bits", () => {
  it("converts known values, rounding to nearest even", () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.1, 0x2e66],
      [65504, 0x7bff], // largest finite half
      [65519.99, 0x7bff],
      [65520, 0x7c00], // halfway to 65536: ties to even, which is infinity
      [1e6, 0x7c00],
      [-1e6, 0xfc00],
      [Number.POSITIVE_INFINITY, 0x7c00],
      [Number.NEGATIVE_INFINITY, 0xfc00],
      [1 + 2 ** -11, 0x3c00], // tie, even stays
      [1 + 3 * 2 ** -11, 0x3c02], // tie, odd rounds up
      [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just past the tie
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -14 - 2 ** -25, 0x0400], // tie between the largest subnormal (odd) and it
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // tie between 0 and it: even, 0
      [1.5 * 2 ** -25, 0x0001],
      [-3 * 2 ** -25, 0x8002], // tie between 1 and 2 subnormal steps: even, 2
      [2 ** -26, 0x0000],
      [1e-45, 0x0000], // a float32 subnormal
    ];
    for (const [value, bits] of cases) {
      expect([value, float16Bits(value)]).toEqual([value, bits]);
    }
    expect(float16Bits(Number.NaN) & 0x7e00).toBe(0x7e00);
  });

  it("round-trips every half, and decodes each one exactly", () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const value = float16Value(bits);
      if (Number.isNaN(value)) continue;
      expect(float16Bits(value)).toBe(bits);
    }
  });

  it.skipIf(NativeFloat16 === undefined)(
    "agrees with the engine's Float16Array on every half, midpoint and near-midpoint",
    () => {
      const probes: number[] = [];
      for (let bits = 0; bits < 0x7c00; bits++) {
        const a = float16Value(bits);
        const b = float16Value(bits + 1);
        const mid = (a + b) / 2;
        // The midpoint is exact in float32 (one bit more than a half); its float32 neighbours
        // sit just either side of the tie.
        const f = Float32Array.of(mid);
        const u = new Uint32Array(f.buffer);
        const below = new Float32Array(new Uint32Array([u[0]! - 1]).buffer)[0]!;
        const above = new Float32Array(new Uint32Array([u[0]! + 1]).buffer)[0]!;
        for (const v of [a, mid, below, above]) probes.push(v, -v);
      }
      const native = new NativeFloat16!(probes.length) as unknown as Float32Array;
      const nativeBits = new Uint16Array((native as unknown as { buffer: ArrayBuffer }).buffer);
      for (let i = 0; i < probes.length; i++) native[i] = probes[i]!;
      const ours = toFloat16(Float32Array.from(probes));
      let mismatches = 0;
      for (let i = 0; i < probes.length; i++) if (ours[i] !== nativeBits[i]) mismatches++;
      expect(mismatches).toBe(0);
    },
  );
});
