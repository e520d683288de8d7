// Finding duplicates: the exact search finds exactly the pairs a plain double loop finds; the HNSW
// index finds the planted near-duplicates and reports its recall against brute force; groups join
// transitively and identical files group even without vectors.
import { describe, expect, it } from "vitest";
import { buildGroups } from "./groups.ts";
import { nearPairs, type SearchOptions } from "./neighbours.ts";
import { plantedVectors } from "./testing.ts";
import { similarity, type VectorSet } from "./vectors.ts";

const opts: SearchOptions = {
  threshold: 0.97,
  neighbours: 16,
  exactMax: 10_000,
  recallSample: 300,
  connectivity: 16,
  expansionAdd: 128,
  expansionSearch: 128,
  threads: 2,
};

/** The reference: every pair, in a double loop. */
function bruteForce(v: VectorSet, threshold: number): string[] {
  const out: string[] = [];
  for (let a = 0; a < v.count; a++) {
    for (let b = a + 1; b < v.count; b++)
      if (similarity(v, a, b) >= threshold) out.push(`${a}-${b}`);
  }
  return out;
}

const keys = (pairs: readonly { a: number; b: number }[]) =>
  pairs.map((p) => `${p.a}-${p.b}`).sort();

describe("near-duplicate search", () => {
  it("exact search = a double loop over all pairs", () => {
    // 600 rows: more than one exact-search chunk (512), so chunk boundaries are crossed.
    const { vectors, twins } = plantedVectors(600, { twinEvery: 20, dimension: 64 });
    const found = nearPairs(vectors, opts);
    expect(found.index).toBe("exact");
    expect(keys(found.pairs)).toEqual(bruteForce(vectors, opts.threshold).sort());
    expect(found.pairs.length).toBeGreaterThanOrEqual(twins.length);
    for (const p of found.pairs) expect(p.similarity).toBeCloseTo(similarity(vectors, p.a, p.b), 6);
  });

  it("the HNSW index finds the planted twins and reports its recall", () => {
    const { vectors, twins } = plantedVectors(3000, { twinEvery: 25 });
    // One thread: usearch builds the same graph on every run. With two, insertion order follows
    // the scheduler, and on a loaded machine the graph now and then missed 3 of the 119 twins.
    const found = nearPairs(vectors, { ...opts, exactMax: 1000, threads: 1 });
    expect(found.index).toBe("hnsw");
    const got = new Set(keys(found.pairs));
    const hit = twins.filter(([c, o]) => got.has(`${Math.min(c, o)}-${Math.max(c, o)}`)).length;
    expect(hit / twins.length).toBeGreaterThanOrEqual(0.98);
    expect(found.recall!.queries).toBe(300);
    expect(found.recall!.pairs).toBeGreaterThanOrEqual(0.95);
    expect(found.recall!.atK).toBeGreaterThan(0.5);
    expect(found.recall!.atK).toBeLessThanOrEqual(1);
  });
});

describe("groups", () => {
  const { vectors } = plantedVectors(6, { twinEvery: 1000, dimension: 8 });
  it("join transitively and carry each file's similarity to the first", () => {
    const groups = buildGroups(
      vectors,
      [
        { a: 0, b: 1, similarity: 0.99 },
        { a: 1, b: 2, similarity: 0.99 },
        { a: 4, b: 5, similarity: 0.98 },
      ],
      [],
    );
    expect(groups.map((g) => g.paths.map((p) => Number(p.slice(5, 13))))).toEqual([
      [0, 1, 2],
      [4, 5],
    ]);
    expect(groups[0]!.similarity[0]).toBe(1);
    expect(groups[0]!.similarity[2]).toBeCloseTo(similarity(vectors, 0, 2), 9);
    expect(groups[0]!.exact).toBe(false);
  });

  it("put identical files together, embedded or not", () => {
    const groups = buildGroups(
      vectors,
      [],
      [{ sha256: "s", paths: [vectors.paths[3]!, "/elsewhere/copy.heic"] }],
    );
    expect(groups).toEqual([
      {
        paths: ["/elsewhere/copy.heic", vectors.paths[3]],
        similarity: [null, 1],
        exact: true,
        minSimilarity: 1,
      },
    ]);
  });
});
