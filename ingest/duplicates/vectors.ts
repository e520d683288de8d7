/** The database's vectors of one model in; one contiguous Float32Array (row i = paths[i]) out, which both the exact search and the HNSW index take without copying. */
import type { Model, Store } from "../store.ts";

export interface VectorSet {
  readonly model: Model;
  readonly dimension: number;
  readonly count: number;
  readonly paths: string[];
  readonly sha256: string[];
  /** count × dimension, row-major, L2-normalised. */
  readonly data: Float32Array;
}

/**
 * Which model's vectors to compare: the one named (`model@version` or a version), else the one
 * most rows have. Vectors of two models live in different spaces and are never mixed.
 */
export function pickModel(
  store: Store,
  wanted: string,
):
  | { model: Model; rows: number; others: { model: string; version: string; rows: number }[] }
  | undefined {
  const all = store.models();
  const match = (m: { model: string; version: string }) =>
    wanted === "" || wanted === m.version || wanted === `${m.model}@${m.version}`;
  const chosen = all.find(match);
  if (!chosen) return undefined;
  return {
    model: { model: chosen.model, version: chosen.version },
    rows: chosen.rows,
    others: all.filter((m) => m !== chosen),
  };
}

export function loadVectors(store: Store, model: Model, rows: number): VectorSet {
  const paths: string[] = [];
  const sha256: string[] = [];
  let dimension = 0;
  let data = new Float32Array(0);
  let n = 0;
  for (const r of store.vectors(model)) {
    if (n === 0) {
      dimension = r.vector.byteLength / 4;
      data = new Float32Array(rows * dimension);
    }
    if (r.vector.byteLength !== dimension * 4 || n >= rows) continue; // a row written meanwhile
    // The bytes are little-endian float32, as every supported host is little-endian.
    new Uint8Array(data.buffer, n * dimension * 4, dimension * 4).set(r.vector);
    paths.push(r.path);
    sha256.push(r.sha256);
    n++;
  }
  return { model, dimension, count: n, paths, sha256, data: data.subarray(0, n * dimension) };
}

/** Cosine of rows i and j (the rows are unit vectors: a dot product). */
export function similarity(v: VectorSet, i: number, j: number): number {
  const d = v.dimension;
  let s = 0;
  for (let k = 0; k < d; k++) s += v.data[i * d + k]! * v.data[j * d + k]!;
  return s;
}
