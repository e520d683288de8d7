/** How tests hand figures to the reliability report: they attach them to their own task's meta (Vitest's JSON reporter carries it), so every figure in the report comes from a test that passed in the same run. Pure: runs in workerd too. */

export type Section = "hostile" | "fuzz" | "load" | "shed" | "fault" | "security";

export interface Figures {
  readonly section: Section;
  /** One line saying what was tried, e.g. "hostile files, edge (workerd)". */
  readonly title: string;
  /** Where it ran: "edge (workerd, Images binding)", "gpu-node (process)", … */
  readonly target: string;
  /** Plain JSON: counts, rates, milliseconds, bytes. */
  readonly data: Record<string, unknown>;
}

interface HasMeta {
  readonly meta: object;
}

/** Attaches `figures` to the running test (call it with the test context's `task`). */
export function recordFigures(task: HasMeta, figures: Figures): void {
  const meta = task.meta as { reliability?: Figures[] };
  meta.reliability ??= [];
  meta.reliability.push(figures);
}

/** Counts of each value. */
export function countBy<T>(items: readonly T[], key: (t: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) {
    const k = key(item);
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}
