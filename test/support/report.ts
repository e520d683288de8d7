/** Reports of tests and benchmarks: numbers as text, Markdown tables, PASS/MISS verdicts, results as JSON (NaN as null, an unlimited rate as "unlimited"), and the installed versions a run names. */
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";

const ROOT = resolve(import.meta.dirname, "../..");

/** A number with a fixed count of decimals, "–" for NaN. */
export function fmt(x: number, digits = 1): string {
  return Number.isFinite(x) ? x.toFixed(digits) : "–";
}

export function pct(ratio: number): string {
  return Number.isFinite(ratio) ? `${(ratio * 100).toFixed(0)}%` : "–";
}

export type Verdict = "PASS" | "MISS";

export function verdict(ok: boolean): Verdict {
  return ok ? "PASS" : "MISS";
}

/** A GitHub-flavoured Markdown table with padded columns. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    `| ${widths.map((w, i) => (cells[i] ?? "").padEnd(w)).join(" | ")} |`;
  return [line(header), `| ${widths.map((w) => "-".repeat(w)).join(" | ")} |`, ...rows.map(line)]
    .join("\n")
    .concat("\n");
}

/** The run as JSON: an unlimited link rate (Infinity) is written as "unlimited", NaN as null. */
export function toJson(value: unknown): string {
  const replacer = (_key: string, v: unknown) => {
    if (typeof v !== "number" || Number.isFinite(v)) return v;
    return Number.isNaN(v) ? null : "unlimited";
  };
  return `${JSON.stringify(value, replacer, 2)}\n`;
}

/** The installed version of package `name` (its node_modules/<name>/package.json). */
export async function installedVersion(name: string): Promise<string> {
  const file = resolve(ROOT, "node_modules", name, "package.json");
  return (JSON.parse(await readFile(file, "utf8")) as { version: string }).version;
}
