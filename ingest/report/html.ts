/** The report in; a self-contained HTML contact sheet out: one row per group, its thumbnails side by side, each captioned with its file name and its similarity to the first (thumbnails are inlined, so the file can be mailed or opened offline). */
import { basename } from "node:path";
import type { Report } from "./json.ts";

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const STYLE = `
body { font: 14px system-ui, sans-serif; margin: 16px; background: #fafafa; color: #222; }
h1 { font-size: 18px; margin: 0 0 4px; }
p.meta { margin: 0 0 16px; color: #555; }
section.group { background: #fff; border: 1px solid #ddd; border-radius: 6px; margin: 0 0 12px; padding: 8px 10px; }
section.group h2 { font-size: 13px; font-weight: 600; margin: 0 0 6px; }
div.row { display: flex; flex-wrap: nowrap; gap: 10px; overflow-x: auto; }
figure { margin: 0; width: var(--thumb); flex: none; }
figure .box { width: var(--thumb); height: var(--thumb); display: flex; align-items: center; justify-content: center; background: #eee; }
figure img { max-width: 100%; max-height: 100%; }
figcaption { font-size: 11px; overflow-wrap: anywhere; margin-top: 3px; }
figcaption .sim { font-weight: 600; }
`;

export function toHtml(
  report: Report,
  thumbs: ReadonlyMap<string, string | undefined>,
  opts: { readonly maxGroups: number; readonly thumbPx: number },
): string {
  const shown = report.groups.slice(0, opts.maxGroups);
  const sections = shown.map((g, i) => {
    const figures = g.paths.map((path, j) => {
      const src = thumbs.get(path);
      const sim = g.similarity[j];
      const simText = sim === null || sim === undefined ? "no vector" : sim.toFixed(4);
      const img = src
        ? `<img src="${src}" alt="${escapeHtml(basename(path))}">`
        : `<span>no preview</span>`;
      return `<figure data-path="${escapeHtml(path)}" data-similarity="${sim ?? ""}" title="${escapeHtml(path)}"><div class="box">${img}</div><figcaption>${escapeHtml(basename(path))}<br><span class="sim">${j === 0 ? "first" : simText}</span></figcaption></figure>`;
    });
    const kind = g.exact
      ? "identical files"
      : `near-duplicates, lowest similarity ${g.minSimilarity?.toFixed(4) ?? "?"}`;
    return `<section class="group" data-group="${i}"><h2>Group ${i + 1}: ${g.paths.length} files, ${kind}</h2><div class="row">${figures.join("")}</div></section>`;
  });
  const model = report.model ? `${report.model.model} ${report.model.version}` : "none";
  const more =
    report.groups.length > shown.length
      ? `<p class="meta">${report.groups.length - shown.length} more groups are in the JSON report.</p>`
      : "";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Duplicate photos</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>:root { --thumb: ${opts.thumbPx}px; }${STYLE}</style></head>
<body>
<h1>Duplicate photos: ${report.groups.length} groups</h1>
<p class="meta">${report.vectors} photos compared (model ${escapeHtml(model)}), cosine similarity ≥ ${report.threshold}, search ${report.index}.</p>
${sections.join("\n")}
${more}
</body></html>
`;
}
