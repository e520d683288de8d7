/** A seeded, bounded mutation fuzzer for JPEGs: a source file in, a mutated file and the mutations applied out (byte flips, chunk splices, length-field and header corruption, marker insertion, truncation). Pure: runs in workerd and Node. */

export type Mutation =
  | "bit-flip"
  | "byte-set"
  | "header-bytes"
  | "chunk-splice"
  | "chunk-delete"
  | "chunk-duplicate"
  | "length-field"
  | "sof-fields"
  | "marker-insert"
  | "truncate";

export const MUTATIONS: readonly Mutation[] = [
  "bit-flip",
  "byte-set",
  "header-bytes",
  "chunk-splice",
  "chunk-delete",
  "chunk-duplicate",
  "length-field",
  "sof-fields",
  "marker-insert",
  "truncate",
];

export interface Mutant {
  readonly bytes: Uint8Array;
  readonly mutations: readonly Mutation[];
  /** Index of the source it came from. */
  readonly source: number;
}

/** Seeded PRNG (mulberry32): the same seed gives the same mutants everywhere. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Segment {
  /** Offset of the 0xFF of the marker. */
  readonly at: number;
  readonly marker: number;
  /** Value of the 2-byte length field (absent for SOI/EOI/RSTn). */
  readonly length?: number;
}

/** The marker segments up to and including the first SOS (tolerant: stops at anything odd). */
export function jpegSegments(b: Uint8Array): Segment[] {
  const out: Segment[] = [];
  if (b.length < 2 || b[0] !== 0xff || b[1] !== 0xd8) return out;
  out.push({ at: 0, marker: 0xd8 });
  let p = 2;
  while (p + 4 <= b.length && b[p] === 0xff && out.length < 256) {
    const marker = b[p + 1]!;
    const length = (b[p + 2]! << 8) | b[p + 3]!;
    out.push({ at: p, marker, length });
    if (marker === 0xda || length < 2) break;
    p += 2 + length;
  }
  return out;
}

/** Where the entropy-coded data starts (after the first SOS header), or the length if none. */
function scanStart(b: Uint8Array, segments: readonly Segment[]): number {
  const sos = segments.find((s) => s.marker === 0xda);
  return sos?.length === undefined ? b.length : Math.min(b.length, sos.at + 2 + sos.length);
}

function splice(b: Uint8Array, at: number, remove: number, insert: Uint8Array): Uint8Array {
  const out = new Uint8Array(b.length - remove + insert.length);
  out.set(b.subarray(0, at), 0);
  out.set(insert, at);
  out.set(b.subarray(at + remove), at + insert.length);
  return out;
}

/**
 * Applies 1-3 random mutations to `sources[i]` (one of them), splicing chunks from any source.
 * Output is bounded: never more than the largest source plus 64 KB.
 */
export function mutate(sources: readonly Uint8Array[], rnd: () => number): Mutant {
  const int = (n: number) => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const source = int(sources.length);
  let b: Uint8Array = new Uint8Array(sources[source]!);
  const applied: Mutation[] = [];
  const count = 1 + int(3);
  for (let k = 0; k < count && b.length > 0; k++) {
    const m = pick(MUTATIONS);
    const segments = jpegSegments(b);
    const header = Math.max(2, scanStart(b, segments));
    switch (m) {
      case "bit-flip": {
        const flips = 1 + int(8);
        for (let i = 0; i < flips; i++) b[int(b.length)]! ^= 1 << int(8);
        break;
      }
      case "byte-set": {
        const n = 1 + int(16);
        const value = pick([0x00, 0xff, 0x7f, 0x80, int(256)]);
        const at = int(b.length);
        for (let i = at; i < Math.min(b.length, at + n); i++) b[i] = value;
        break;
      }
      case "header-bytes": {
        // The tables and frame header: where parsers make decisions.
        const n = 1 + int(6);
        for (let i = 0; i < n; i++) b[2 + int(header - 2)] = int(256);
        break;
      }
      case "chunk-splice": {
        const donor = pick(sources);
        const len = 1 + int(Math.min(4096, donor.length));
        const from = int(donor.length - len + 1);
        const chunk = donor.subarray(from, from + len);
        const at = int(b.length);
        b =
          rnd() < 0.5
            ? splice(b, at, 0, chunk)
            : splice(b, at, Math.min(len, b.length - at), chunk);
        break;
      }
      case "chunk-delete": {
        const at = int(b.length);
        b = splice(b, at, Math.min(b.length - at, 1 + int(2048)), new Uint8Array(0));
        break;
      }
      case "chunk-duplicate": {
        const at = int(b.length);
        const len = Math.min(b.length - at, 1 + int(2048));
        b = splice(b, at, 0, b.slice(at, at + len));
        break;
      }
      case "length-field": {
        const withLength = segments.filter((s) => s.length !== undefined);
        if (withLength.length === 0) {
          b[int(b.length)] = int(256);
          break;
        }
        const s = pick(withLength);
        const value = pick([0, 1, 2, 3, s.length! - 1, s.length! + 1, 0xffff, int(0x10000)]);
        if (s.at + 3 < b.length) {
          b[s.at + 2] = (value >> 8) & 0xff;
          b[s.at + 3] = value & 0xff;
        }
        break;
      }
      case "sof-fields": {
        const sof = segments.find((s) => s.marker >= 0xc0 && s.marker <= 0xcf && s.marker !== 0xc4);
        if (sof === undefined || sof.at + 10 > b.length) {
          b[int(b.length)] = int(256);
          break;
        }
        // precision, height, width, component count
        const field = pick([4, 5, 7, 9]);
        if (field === 4) b[sof.at + 4] = pick([0, 1, 12, 16, 255]);
        else if (field === 9) b[sof.at + 9] = pick([0, 2, 4, 255]);
        else {
          const v = pick([0, 1, 65535, 65500, int(0x10000)]);
          b[sof.at + field] = v >> 8;
          b[sof.at + field + 1] = v & 0xff;
        }
        break;
      }
      case "marker-insert": {
        const marker = pick([0xd8, 0xd9, 0xda, 0xc4, 0xdb, 0xdd, 0xd0 + int(8), 0xe1, 0xfe]);
        const bytes =
          marker >= 0xd0 && marker <= 0xd9
            ? new Uint8Array([0xff, marker])
            : new Uint8Array([0xff, marker, 0, pick([2, 3, 8, 64, 255])]);
        b = splice(b, int(b.length), 0, bytes);
        break;
      }
      case "truncate":
        b = b.subarray(0, int(b.length));
        break;
    }
    applied.push(m);
  }
  return { bytes: b, mutations: applied, source };
}

/** Mutation counts, for the report. */
export function tally(
  mutants: readonly { mutations: readonly Mutation[] }[],
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of mutants) for (const k of m.mutations) out[k] = (out[k] ?? 0) + 1;
  return out;
}
