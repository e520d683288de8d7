/** Generated embedding sets for the duplicates tests and the benchmark: unit vectors spread like photo embeddings (a few hundred "scenes", different photos at cosine ~0.4 like real CLIP), with planted near-duplicates at cosine ~0.99. Deterministic per seed. */
import type { VectorSet } from "./vectors.ts";

/** xorshift32 → a standard normal (Box–Muller): fast enough for 5e8 draws. */
function gaussian(seed: number): () => number {
  let s = seed >>> 0 || 1;
  const u = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) + 0.5) / 2 ** 32;
  };
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

function normalise(v: Float32Array, at: number, d: number): void {
  let s = 0;
  for (let k = 0; k < d; k++) s += v[at + k]! ** 2;
  const inv = 1 / Math.sqrt(s);
  for (let k = 0; k < d; k++) v[at + k]! *= inv;
}

export interface Planted {
  readonly vectors: VectorSet;
  /** Rows planted as near-duplicates of an earlier row: [copy, original]. */
  readonly twins: readonly (readonly [number, number])[];
}

/**
 * `count` vectors; every `twinEvery`-th row is a near-duplicate of the row before it (the same
 * direction plus noise of relative size `twinNoise`: 0.1 gives cosine ≈ 0.995).
 */
export function plantedVectors(
  count: number,
  opts: {
    dimension?: number;
    seed?: number;
    twinEvery?: number;
    twinNoise?: number;
    scenes?: number;
  } = {},
): Planted {
  const d = opts.dimension ?? 512;
  const rnd = gaussian(opts.seed ?? 1);
  const scenes = opts.scenes ?? 256;
  const centres = new Float32Array(scenes * d);
  for (let i = 0; i < centres.length; i++) centres[i] = rnd();
  for (let c = 0; c < scenes; c++) normalise(centres, c * d, d);
  const data = new Float32Array(count * d);
  const twins: [number, number][] = [];
  const every = opts.twinEvery ?? 50;
  const noise = opts.twinNoise ?? 0.1;
  for (let i = 0; i < count; i++) {
    const at = i * d;
    if (i > 0 && i % every === 0) {
      for (let k = 0; k < d; k++) data[at + k] = data[at - d + k]! + (noise * rnd()) / Math.sqrt(d);
      twins.push([i, i - 1]);
    } else {
      // Scene direction plus a larger private part: cosine between two photos of one scene ≈ 0.5.
      const c = (Math.imul(i, 2654435761) >>> 0) % scenes;
      for (let k = 0; k < d; k++) data[at + k] = centres[c * d + k]! + rnd() / Math.sqrt(d);
    }
    normalise(data, at, d);
  }
  const paths = Array.from({ length: count }, (_, i) => `/gen/${String(i).padStart(8, "0")}.jpg`);
  return {
    vectors: {
      model: { model: "generated", version: "1" },
      dimension: d,
      count,
      paths,
      sha256: paths.map((p) => `sha:${p}`),
      data,
    },
    twins,
  };
}
