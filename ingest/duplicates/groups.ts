/** Pairs of near-duplicates and sets of identical files in; groups out, joined transitively (union-find: if a ~ b and b ~ c, one group), each with every member's similarity to the group's first file. */
import type { Pair } from "./neighbours.ts";
import { similarity, type VectorSet } from "./vectors.ts";

export interface Group {
  readonly paths: string[];
  /** Cosine of each file to the first one (1 for the first); null for a file without a vector. */
  readonly similarity: (number | null)[];
  /** Every file has the same content (sha256). */
  readonly exact: boolean;
  /** The smallest of `similarity` (transitive joins can make it lower than the threshold). */
  readonly minSimilarity: number | null;
}

class UnionFind {
  readonly #parent: number[] = [];
  add(): number {
    this.#parent.push(this.#parent.length);
    return this.#parent.length - 1;
  }
  find(x: number): number {
    const p = this.#parent;
    while (p[x] !== x) {
      p[x] = p[p[x]!]!;
      x = p[x]!;
    }
    return x;
  }
  union(a: number, b: number): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra !== rb) this.#parent[Math.max(ra, rb)] = Math.min(ra, rb);
  }
}

/**
 * `sameContent` are groups of paths with one sha256 (files that failed to embed included);
 * `pairs` index rows of `v`. Groups come largest first, then by first path.
 */
export function buildGroups(
  v: VectorSet,
  pairs: readonly Pair[],
  sameContent: readonly { readonly sha256: string; readonly paths: readonly string[] }[],
): Group[] {
  const uf = new UnionFind();
  const ids = new Map<string, number>();
  const paths: string[] = [];
  const idOf = (path: string) => {
    let id = ids.get(path);
    if (id === undefined) {
      id = uf.add();
      ids.set(path, id);
      paths.push(path);
    }
    return id;
  };
  for (const p of v.paths) idOf(p); // ids 0..count-1 are the vector rows
  const joined = new Set<number>();
  for (const { a, b } of pairs) {
    uf.union(a, b);
    joined.add(a).add(b);
  }
  for (const { paths: same } of sameContent) {
    const first = idOf(same[0]!);
    joined.add(first);
    for (const p of same.slice(1)) {
      const id = idOf(p);
      uf.union(first, id);
      joined.add(id);
    }
  }
  const members = new Map<number, number[]>();
  for (const id of joined) {
    const root = uf.find(id);
    members.set(root, [...(members.get(root) ?? []), id]);
  }
  const shaOf = new Map<string, string>();
  for (const [i, p] of v.paths.entries()) shaOf.set(p, v.sha256[i]!);
  for (const same of sameContent) for (const p of same.paths) shaOf.set(p, same.sha256);
  const groups: Group[] = [];
  for (const ids0 of members.values()) {
    if (ids0.length < 2) continue;
    const list = ids0.sort((x, y) => (paths[x]! < paths[y]! ? -1 : 1));
    const first = list.find((id) => id < v.count);
    const sims = list.map((id) =>
      first === undefined || id >= v.count ? null : id === first ? 1 : similarity(v, first, id),
    );
    const known = sims.filter((s): s is number => s !== null);
    const shas = new Set(list.map((id) => shaOf.get(paths[id]!) ?? paths[id]!));
    groups.push({
      paths: list.map((id) => paths[id]!),
      similarity: sims,
      exact: shas.size === 1,
      minSimilarity: known.length > 0 ? Math.min(...known) : null,
    });
  }
  return groups.sort(
    (x, y) => y.paths.length - x.paths.length || (x.paths[0]! < y.paths[0]! ? -1 : 1),
  );
}
