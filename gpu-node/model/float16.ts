/**
 * float32 → IEEE 754 binary16 bits, rounding to nearest, ties to even (as a hardware convert
 * does): the fp16 models store their weights as FLOAT16 raw_data.
 *
 * Hand-written rather than a dependency: nothing in the tree converts to half, and the few
 * lines below are easy to check exhaustively (float16.test.ts compares every half and every
 * midpoint between two halves with the engine's own Float16Array where it has one). Not
 * Float16Array / Math.f16round themselves: package.json allows Node 22, which lacks them.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The binary16 bit pattern nearest to Math.fround(value) (NaN stays a quiet NaN). */
export function float16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  const mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa === 0 ? 0 : 0x200 | (mantissa >>> 13));
  // Rebias from float32's 127 to float16's 15.
  const e = exponent - 112;
  if (e >= 0x1f) return sign | 0x7c00; // past 65520 after rounding: infinity
  if (e <= 0) {
    // A half subnormal, m * 2^-24: shift the full significand (implicit 1 included) right.
    // Below 2^-25 (and float32 subnormals) that rounds to a signed zero.
    if (e < -10) return sign;
    const full = mantissa | 0x800000;
    const shift = 14 - e;
    return sign | roundShift(full, shift);
  }
  // A normal half: drop 13 mantissa bits. A carry out of the mantissa correctly bumps the
  // exponent (and 65504 < x < 65520 stays finite while 65520 rounds up to infinity).
  return sign | ((e << 10) + roundShift(mantissa, 13));
}

/** value >> shift, rounded to nearest, ties to even. */
function roundShift(value: number, shift: number): number {
  const kept = value >>> shift;
  const rest = value & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  return rest > halfway || (rest === halfway && (kept & 1) === 1) ? kept + 1 : kept;
}

/** Every value of `values` as binary16 bits (the raw_data of an ONNX FLOAT16 tensor). */
export function toFloat16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float16Bits(values[i]!);
  return out;
}

/** binary16 bits → the number they stand for (exact). */
export function float16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
