/** `npm run duplicates`: parses the settings, reads one model's vectors from the database, finds the groups, writes the JSON and HTML reports and prints a summary with the time taken and the peak memory. */
import { writeFileSync } from "node:fs";
import { DUPLICATES_OPTIONS, parseDuplicatesConfig, usageText } from "../config.ts";
import { buildGroups } from "../duplicates/groups.ts";
import { nearPairs } from "../duplicates/neighbours.ts";
import { loadVectors, pickModel } from "../duplicates/vectors.ts";
import { toHtml } from "../report/html.ts";
import { type Report, toJson } from "../report/json.ts";
import { thumbnail } from "../report/thumbnails.ts";
import { Store, StoreError } from "../store.ts";
import { runCli } from "./run.ts";

const USAGE = usageText(
  `usage: npm run duplicates -- --db FILE [--json OUT] [--html OUT]

Groups the photos of an ingest database: identical files (same sha256) and near-duplicates
(cosine similarity at or above --threshold between their embeddings), joined transitively.
Prints the groups; --json writes them (a top-level "groups" list), --html a contact sheet.`,
  DUPLICATES_OPTIONS,
);

async function main(args: readonly string[]): Promise<number> {
  const config = parseDuplicatesConfig(args);
  const t0 = performance.now();
  const store = Store.open(config.db, { readOnly: true });
  try {
    const picked = pickModel(store, config.modelVersion);
    if (!picked && config.modelVersion !== "") {
      throw new StoreError(`${config.db} has no vectors of model version "${config.modelVersion}"`);
    }
    for (const o of picked?.others ?? []) {
      process.stderr.write(
        `note: ${o.rows} vectors of ${o.model} version ${o.version} are left out: vectors of different models are never compared (--model-version picks one)\n`,
      );
    }
    const vectors = picked
      ? loadVectors(store, picked.model, picked.rows)
      : {
          model: { model: "", version: "" },
          dimension: 0,
          count: 0,
          paths: [],
          sha256: [],
          data: new Float32Array(0),
        };
    const loadMs = performance.now() - t0;
    const search = nearPairs(vectors, {
      threshold: config.threshold,
      neighbours: config.neighbours,
      exactMax: config.exactMax,
      recallSample: config.recallSample,
      connectivity: config.hnswConnectivity,
      expansionAdd: config.hnswExpansionAdd,
      expansionSearch: config.hnswExpansionSearch,
      threads: config.threads,
    });
    const groups = buildGroups(vectors, search.pairs, store.sameContent());
    const report: Report = {
      model: picked?.model ?? null,
      threshold: config.threshold,
      vectors: vectors.count,
      index: search.index,
      recall: search.recall,
      groups,
    };
    if (config.json) writeFileSync(config.json, toJson(report));
    if (config.html) {
      const thumbs = new Map<string, string | undefined>();
      for (const g of groups.slice(0, config.htmlMaxGroups)) {
        for (const p of g.paths) thumbs.set(p, await thumbnail(p, config.thumbPx));
      }
      writeFileSync(
        config.html,
        toHtml(report, thumbs, { maxGroups: config.htmlMaxGroups, thumbPx: config.thumbPx }),
      );
    }
    if (!config.json && !config.html) {
      for (const [i, g] of groups.entries()) {
        const sims = g.similarity.map((s) => (s === null ? "-" : s.toFixed(4)));
        process.stdout.write(
          `group ${i + 1} (${g.exact ? "identical" : "similar"}):\n${g.paths.map((p, j) => `  ${sims[j]}  ${p}`).join("\n")}\n`,
        );
      }
    }
    const r = search.recall;
    const recall = r
      ? `, recall vs brute force on ${r.queries} queries: ${r.atK.toFixed(4)} of the ${config.neighbours} nearest, ${r.pairs === null ? "no pairs at the threshold in the sample" : `${r.pairs.toFixed(4)} of ${r.exactPairs} pairs at the threshold`}`
      : "";
    const files = groups.reduce((n, g) => n + g.paths.length, 0);
    const total = (performance.now() - t0) / 1000;
    const peakMiB = process.resourceUsage().maxRSS / 1024;
    if (config.stats) {
      const stats = {
        vectors: vectors.count,
        groups: groups.length,
        files,
        index: search.index,
        recall: search.recall,
        loadMs: loadMs,
        indexMs: search.buildMs,
        searchMs: search.searchMs,
        totalMs: total * 1000,
        peakRssMiB: peakMiB,
      };
      writeFileSync(config.stats, `${JSON.stringify(stats, null, 2)}\n`);
    }
    process.stdout.write(
      `${groups.length} groups (${groups.filter((g) => g.exact).length} identical, ${groups.filter((g) => !g.exact).length} near) of ${files} files among ${vectors.count} vectors at cosine >= ${config.threshold}; ${search.index} search${recall}; load ${(loadMs / 1000).toFixed(1)} s, index ${(search.buildMs / 1000).toFixed(1)} s, search ${(search.searchMs / 1000).toFixed(1)} s, total ${total.toFixed(1)} s, peak RSS ${peakMiB.toFixed(0)} MiB\n`,
    );
    return 0;
  } finally {
    store.close();
  }
}

runCli("photo-duplicates", USAGE, main);
