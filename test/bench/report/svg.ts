/** The run's chart as hand-written SVG: for each backend and link with a batch sweep, p50 latency and throughput against batch size per variant (log scales), each variant's floor dashed. */
import { type Row, VARIANTS, type VariantId } from "../e2e/measure.ts";
import type { Report } from "./index.ts";

const COLOURS: Readonly<Record<VariantId, string>> = {
  edge: "#1f77b4",
  worker: "#17becf",
  "node-edge": "#9467bd",
  "no-edge": "#2ca02c",
  triton: "#d62728",
};

const PANEL_W = 430;
const PANEL_H = 250;
const M = { left: 62, right: 16, top: 34, bottom: 42 };
const GAP = 24;
const HEADER = 72;

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

function logTicks(min: number, max: number): number[] {
  const ticks: number[] = [];
  for (let e = Math.floor(Math.log10(min)); e <= Math.ceil(Math.log10(max)); e++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** e;
      if (v >= min * 0.999 && v <= max * 1.001) ticks.push(v);
    }
  }
  return ticks;
}

const label = (v: number) => (v >= 1000 ? `${v / 1000}k` : v >= 1 ? String(v) : v.toPrecision(1));

interface Series {
  readonly variant: VariantId;
  readonly dashed: boolean;
  readonly points: readonly (readonly [number, number])[];
}

function panel(
  x0: number,
  y0: number,
  title: string,
  yLabel: string,
  series: readonly Series[],
): string {
  const values = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => v > 0);
  if (values.length === 0) return "";
  const yMin = 10 ** Math.floor(Math.log10(Math.min(...values)));
  const yMax = 10 ** Math.ceil(Math.log10(Math.max(...values)));
  const batches = [1, 4, 8, 16, 32];
  const w = PANEL_W - M.left - M.right;
  const h = PANEL_H - M.top - M.bottom;
  const sx = (b: number) => x0 + M.left + (Math.log2(b) / Math.log2(32)) * w;
  const sy = (v: number) =>
    y0 +
    M.top +
    h -
    ((Math.log10(v) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin))) * h;
  const parts: string[] = [];
  parts.push(
    `<text x="${x0 + M.left}" y="${y0 + 18}" font-size="13" font-weight="bold">${esc(title)}</text>`,
  );
  parts.push(
    `<rect x="${x0 + M.left}" y="${y0 + M.top}" width="${w}" height="${h}" fill="none" stroke="#999"/>`,
  );
  for (const t of logTicks(yMin, yMax)) {
    const y = sy(t).toFixed(1);
    parts.push(
      `<line x1="${x0 + M.left}" x2="${x0 + M.left + w}" y1="${y}" y2="${y}" stroke="#e5e5e5"/>`,
      `<text x="${x0 + M.left - 6}" y="${y}" font-size="10" text-anchor="end" dominant-baseline="middle">${label(t)}</text>`,
    );
  }
  for (const b of batches) {
    const x = sx(b).toFixed(1);
    parts.push(
      `<line x1="${x}" x2="${x}" y1="${y0 + M.top}" y2="${y0 + M.top + h}" stroke="#f0f0f0"/>`,
      `<text x="${x}" y="${y0 + M.top + h + 14}" font-size="10" text-anchor="middle">${b}</text>`,
    );
  }
  parts.push(
    `<text x="${x0 + M.left + w / 2}" y="${y0 + PANEL_H - 8}" font-size="11" text-anchor="middle">batch size (images per call)</text>`,
    `<text transform="translate(${x0 + 14} ${y0 + M.top + h / 2}) rotate(-90)" font-size="11" text-anchor="middle">${esc(yLabel)}</text>`,
  );
  for (const s of series) {
    const pts = s.points.filter((p) => p[1] > 0);
    if (pts.length === 0) continue;
    const d = pts.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)} ${sy(p[1]).toFixed(1)}`);
    parts.push(
      `<path d="${d.join(" ")}" fill="none" stroke="${COLOURS[s.variant]}" stroke-width="${s.dashed ? 1.3 : 2}"${s.dashed ? ' stroke-dasharray="5 4"' : ""}/>`,
    );
    if (!s.dashed) {
      for (const p of pts) {
        parts.push(
          `<circle cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}" r="3" fill="${COLOURS[s.variant]}"/>`,
        );
      }
    }
  }
  return parts.join("\n");
}

export function toSvg(report: Report): string {
  const sweeps = [
    ...new Set(
      report.rows.filter((r) => r.batch > 1).map((r) => `${r.backend}|${r.profile}|${r.input}`),
    ),
  ];
  const width = 2 * PANEL_W + GAP;
  const height = HEADER + Math.max(1, sweeps.length) * (PANEL_H + GAP);
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" role="img">`,
    `<title>${esc(`End-to-end benchmark ${report.run}: p50 latency and throughput against batch size per variant, floors dashed`)}</title>`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="8" y="18" font-size="14" font-weight="bold">${esc(`End-to-end benchmark ${report.run}`)}</text>`,
    `<text x="8" y="36" font-size="12">${esc("p50 latency and throughput against batch size; solid = measured, dashed = floor (RTTs + bytes ÷ bandwidth + measured compute)")}</text>`,
  );
  let lx = 8;
  for (const v of Object.keys(VARIANTS) as VariantId[]) {
    parts.push(
      `<line x1="${lx}" x2="${lx + 24}" y1="56" y2="56" stroke="${COLOURS[v]}" stroke-width="2"/>`,
      `<text x="${lx + 30}" y="56" font-size="12" dominant-baseline="middle">${esc(VARIANTS[v].label)}</text>`,
    );
    lx += 190;
  }
  sweeps.forEach((key, i) => {
    const [backend, profile, input] = key.split("|") as [string, string, string];
    const rows = report.rows.filter(
      (r) => r.backend === backend && r.profile === profile && r.input === input,
    );
    const y0 = HEADER + i * (PANEL_H + GAP);
    const byVariant = (v: VariantId) =>
      rows.filter((r) => r.variant === v).sort((a, b) => a.batch - b.batch) as Row[];
    const variants = (Object.keys(VARIANTS) as VariantId[]).filter((v) => byVariant(v).length > 0);
    const series = (value: (r: Row) => number, floor: (r: Row) => number): Series[] =>
      variants.flatMap((v) => [
        {
          variant: v,
          dashed: false,
          points: byVariant(v).map((r) => [r.batch, value(r)] as const),
        },
        { variant: v, dashed: true, points: byVariant(v).map((r) => [r.batch, floor(r)] as const) },
      ]);
    const where = `${backend}, ${profile} link, ${input}`;
    parts.push(
      panel(
        0,
        y0,
        `${where}: p50 latency`,
        "ms per call",
        series(
          (r) => r.latencyMs.p50,
          (r) => r.floor.ms,
        ),
      ),
      panel(
        PANEL_W + GAP,
        y0,
        `${where}: throughput`,
        "images per second",
        series(
          (r) => r.imagesPerSecond,
          (r) => r.floor.imagesPerSecond,
        ),
      ),
    );
  });
  parts.push("</svg>\n");
  return parts.join("\n");
}
