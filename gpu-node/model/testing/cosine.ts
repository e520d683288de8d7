/** Test helper: the cosine of each pair of rows of two row-major count x dim matrices. */
export function rowCosines(a: ArrayLike<number>, b: ArrayLike<number>, dim: number): number[] {
  if (a.length !== b.length || a.length % dim !== 0) {
    throw new Error(`rowCosines: ${a.length} and ${b.length} values, rows of ${dim}`);
  }
  const out: number[] = [];
  for (let start = 0; start < a.length; start += dim) {
    let dot = 0;
    let aa = 0;
    let bb = 0;
    for (let j = start; j < start + dim; j++) {
      dot += a[j]! * b[j]!;
      aa += a[j]! * a[j]!;
      bb += b[j]! * b[j]!;
    }
    out.push(dot / Math.sqrt(aa * bb));
  }
  return out;
}
