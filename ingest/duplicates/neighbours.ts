/** A vector set in; the pairs of rows whose cosine is at or above the threshold out, found among each row's k nearest neighbours — by exact (brute-force) search while the set is small, by an HNSW index (usearch) above that, with the index's recall measured against brute force on a sample of queries. Every reported similarity is recomputed exactly from the float32 vectors. */
import { exactSearch, Index, MetricKind, ScalarKind } from "usearch";
import { similarity, type VectorSet } from "./vectors.ts";

export interface Pair {
  readonly a: number;
  readonly b: number;
  readonly similarity: number;
}

export interface SearchOptions {
  readonly threshold: number;
  readonly neighbours: number;
  readonly exactMax: number;
  readonly recallSample: number;
  readonly connectivity: number;
  readonly expansionAdd: number;
  readonly expansionSearch: number;
  readonly threads: number;
}

export interface Recall {
  readonly queries: number;
  /** Mean share of the exact k nearest neighbours that the index returned. */
  readonly atK: number;
  /** Share of the exact pairs at or above the threshold (from the sampled rows) that the index found; null when the sample held none. */
  readonly pairs: number | null;
  readonly exactPairs: number;
}

export interface SearchResult {
  readonly pairs: Pair[];
  readonly index: "exact" | "hnsw";
  readonly recall: Recall | null;
  readonly buildMs: number;
  readonly searchMs: number;
}

/**
 * Queries per search call. The HNSW search's results are k keys (8 bytes) and distances (4) per
 * query; the exact search also holds a distance per query and row, so it takes fewer at once (all
 * 10,000 queries of a 10,000-vector set in one call peaked at 1.7 GB).
 */
const HNSW_CHUNK = 16_384;
const EXACT_CHUNK = 512;
/** The f16 index's distances are approximate: candidates this close below the threshold are rescored exactly. */
const MARGIN = 0.01;

type Knn = (
  queries: Float32Array,
  k: number,
) => { keys: BigUint64Array; distances: Float32Array; counts?: BigUint64Array; k?: number };

/** Each row's neighbours (in chunks) → pairs at or above the threshold, a < b, each once. */
function collect(v: VectorSet, k: number, threshold: number, knn: Knn, chunk: number): Pair[] {
  const seen = new Set<number>();
  const pairs: Pair[] = [];
  const d = v.dimension;
  for (let start = 0; start < v.count; start += chunk) {
    const end = Math.min(v.count, start + chunk);
    const m = knn(v.data.subarray(start * d, end * d), k);
    const width = m.keys.length / (end - start);
    for (let q = 0; q < end - start; q++) {
      const i = start + q;
      for (let r = 0; r < width; r++) {
        const dist = m.distances[q * width + r]!;
        if (!Number.isFinite(dist) || 1 - dist < threshold - MARGIN) continue;
        const j = Number(m.keys[q * width + r]!);
        if (j === i || j >= v.count) continue;
        const a = Math.min(i, j);
        const b = Math.max(i, j);
        // a * count + b fits a double exactly up to ~9e7 rows: far past any photo library.
        const key = a * v.count + b;
        if (seen.has(key)) continue;
        seen.add(key);
        const sim = similarity(v, a, b);
        if (sim >= threshold) pairs.push({ a, b, similarity: sim });
      }
    }
  }
  return pairs;
}

export function nearPairs(v: VectorSet, o: SearchOptions): SearchResult {
  const k = Math.min(o.neighbours + 1, Math.max(1, v.count)); // +1: a row finds itself
  if (v.count === 0) return { pairs: [], index: "exact", recall: null, buildMs: 0, searchMs: 0 };
  // usearch's exactSearch reads a typed array from the start of its buffer, ignoring byteOffset
  // (its Index.search does not): views are copied before they reach it.
  const own = (a: Float32Array) => (a.byteOffset === 0 ? a : new Float32Array(a));
  const dataset = own(v.data);
  const exact: Knn = (queries, kk) =>
    exactSearch(
      dataset,
      own(queries),
      v.dimension,
      kk,
      MetricKind.Cos,
      o.threads,
    ) as ReturnType<Knn>;
  if (v.count <= o.exactMax) {
    const t0 = performance.now();
    const pairs = collect(v, k, o.threshold, exact, EXACT_CHUNK);
    return { pairs, index: "exact", recall: null, buildMs: 0, searchMs: performance.now() - t0 };
  }
  const t0 = performance.now();
  const index = new Index({
    dimensions: v.dimension,
    metric: MetricKind.Cos,
    // Half precision halves the index's memory (1M × 512 → 1 GiB); pairs are rescored in float32.
    quantization: ScalarKind.F16,
    connectivity: o.connectivity,
    expansion_add: o.expansionAdd,
    expansion_search: Math.max(o.expansionSearch, k),
    multi: false,
  });
  const keys = new BigUint64Array(v.count);
  for (let i = 0; i < v.count; i++) keys[i] = BigInt(i);
  index.add(keys, v.data, o.threads);
  const buildMs = performance.now() - t0;
  const t1 = performance.now();
  const ann: Knn = (queries, kk) =>
    index.search(queries, kk, o.threads) as unknown as ReturnType<Knn>;
  const pairs = collect(v, k, o.threshold, ann, HNSW_CHUNK);
  const searchMs = performance.now() - t1;
  const recall = o.recallSample > 0 ? measureRecall(v, k, o, ann, exact) : null;
  return { pairs, index: "hnsw", recall, buildMs, searchMs };
}

/** Evenly spaced rows (deterministic) asked of both searches; the exact answer is the truth. */
export function measureRecall(
  v: VectorSet,
  k: number,
  o: SearchOptions,
  ann: Knn,
  exact: Knn,
): Recall {
  const n = Math.min(o.recallSample, v.count);
  const d = v.dimension;
  const queries = new Float32Array(n * d);
  const rows: number[] = [];
  for (let q = 0; q < n; q++) {
    const i = Math.floor((q * v.count) / n);
    rows.push(i);
    queries.set(v.data.subarray(i * d, (i + 1) * d), q * d);
  }
  let hitsAtK = 0;
  let totalAtK = 0;
  let pairsTrue = 0;
  let pairsFound = 0;
  // The truth in small chunks of queries: the exact search's memory grows with queries × rows
  // (500 queries against 1M rows at once took gigabytes).
  const chunk = 16;
  for (let start = 0; start < n; start += chunk) {
    const end = Math.min(n, start + chunk);
    const part = queries.subarray(start * d, end * d);
    const truth = exact(part, k);
    const found = ann(part, k);
    const wt = truth.keys.length / (end - start);
    const wf = found.keys.length / (end - start);
    for (let q = 0; q < end - start; q++) {
      const row = rows[start + q]!;
      const got = new Set<number>();
      for (let r = 0; r < wf; r++) got.add(Number(found.keys[q * wf + r]!));
      for (let r = 0; r < wt; r++) {
        const j = Number(truth.keys[q * wt + r]!);
        if (j === row || j >= v.count) continue;
        totalAtK++;
        if (got.has(j)) hitsAtK++;
        if (similarity(v, row, j) >= o.threshold) {
          pairsTrue++;
          if (got.has(j)) pairsFound++;
        }
      }
    }
  }
  return {
    queries: n,
    atK: totalAtK === 0 ? 1 : hitsAtK / totalAtK,
    pairs: pairsTrue === 0 ? null : pairsFound / pairsTrue,
    exactPairs: pairsTrue,
  };
}
