// The duplicates contact sheet in headless Chromium: a library (EXIF orientation twins, a byte
// copy, distinct scenes) ingested through a real gpu-node (vit-tiny), then `npm run duplicates
// --html --json`. The page shows each JSON group as one row of thumbnails side by side, every
// thumbnail loaded, each captioned with the JSON's similarity; the orientation twins' thumbnails
// are all upright (their screenshots match each other, not another scene's); it loads nothing
// from anywhere. Screenshot: test-results/duplicates.png. Skips when no Chromium exists.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Browser } from "playwright-core";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testConfig } from "../gpu-node/config.ts";
import { type GpuNode, startGpuNode } from "../gpu-node/node.ts";
import { findChromium, launchChromium } from "./support/chromium.ts";
import { DUPLICATES, INGEST, runCli, writeLibrary } from "./support/ingest.ts";

const CHROMIUM = findChromium();
const RESULTS = resolve(import.meta.dirname, "../test-results");

interface Shown {
  readonly top: number;
  readonly left: number;
  readonly loaded: boolean;
  readonly path: string;
  readonly sim: string;
}
/** Per group, its figures as laid out (a string: this project's types have no DOM). */
const LAYOUT = `Array.from(document.querySelectorAll("section.group"), (s) =>
  Array.from(s.querySelectorAll("figure"), (f) => {
    const img = f.querySelector("img");
    const r = f.getBoundingClientRect();
    return { top: r.top, left: r.left, loaded: !!img && img.complete && img.naturalWidth > 0,
             path: f.dataset.path, sim: f.querySelector(".sim").textContent };
  }))`;

/** Mean absolute difference of two PNG screenshots, both shrunk to 32x32 grey. */
async function difference(a: Buffer, b: Buffer): Promise<number> {
  const grey = (x: Buffer) => sharp(x).resize(32, 32, { fit: "fill" }).greyscale().raw().toBuffer();
  const [ga, gb] = await Promise.all([grey(a), grey(b)]);
  let sum = 0;
  for (let i = 0; i < ga.length; i++) sum += Math.abs(ga[i]! - gb[i]!);
  return sum / ga.length;
}

describe.skipIf(!CHROMIUM)("duplicates contact sheet in headless Chromium", () => {
  const tmp = mkdtempSync(join(tmpdir(), "ingest-html-"));
  let node: GpuNode;
  let browser: Browser;
  let html: string;
  let report: { groups: { paths: string[]; similarity: (number | null)[] }[] };

  beforeAll(async () => {
    const lib = await writeLibrary(join(tmp, "library"));
    [node, browser] = await Promise.all([
      startGpuNode(testConfig({ port: 0, model: "vit-tiny", threads: 1 })),
      launchChromium(CHROMIUM!),
    ]);
    const db = join(tmp, "lib.db");
    await runCli(INGEST, ["--gpu-node", node.url, "--db", db, lib.dir]);
    html = join(tmp, "sheet.html");
    const json = join(tmp, "groups.json");
    const r = await runCli(DUPLICATES, ["--db", db, "--html", html, "--json", json]);
    expect(r.code, r.stderr).toBe(0);
    report = JSON.parse(readFileSync(json, "utf8"));
  });

  afterAll(async () => {
    await browser?.close();
    await node?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it("shows every group side by side with its similarities, upright thumbnails, and nothing fetched", async () => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const fetched: string[] = [];
    page.on("request", (r) => {
      if (!r.url().startsWith("file:") && !r.url().startsWith("data:")) fetched.push(r.url());
    });
    await page.goto(pathToFileURL(html).href);
    await page.waitForLoadState("load");
    const groups = (await page.evaluate(LAYOUT)) as Shown[][];
    expect(groups.map((g) => g.map((f) => f.path))).toEqual(report.groups.map((g) => g.paths));
    expect(groups.length).toBeGreaterThanOrEqual(2);
    for (const [i, g] of groups.entries()) {
      for (const [j, f] of g.entries()) {
        expect(f.loaded, `${f.path} has a thumbnail`).toBe(true);
        expect(f.top).toBe(g[0]!.top); // one row
        if (j > 0) expect(f.left).toBeGreaterThan(g[j - 1]!.left); // side by side
        const sim = report.groups[i]!.similarity[j]!;
        expect(f.sim).toBe(j === 0 ? "first" : sim.toFixed(4));
      }
    }
    expect(fetched).toEqual([]);
    mkdirSync(RESULTS, { recursive: true });
    await page.screenshot({ path: resolve(RESULTS, "duplicates.png"), fullPage: true });

    // The orientation twins' group: thumbnails look alike once drawn (EXIF applied), while another
    // group's first photo (a different scene) does not.
    const twins = groups.findIndex((g) => g.some((f) => f.path.endsWith("s1-orientation6.jpg")));
    const other = groups.findIndex((_, i) => i !== twins);
    const shot = (g: number, f: number) =>
      page.locator(`section.group[data-group="${g}"] figure`).nth(f).locator("img").screenshot();
    const first = await shot(twins, 0);
    for (let f = 1; f < groups[twins]!.length; f++) {
      expect(await difference(first, await shot(twins, f))).toBeLessThan(6);
    }
    expect(await difference(first, await shot(other, 0))).toBeGreaterThan(15);
    await page.close();
  });
});
