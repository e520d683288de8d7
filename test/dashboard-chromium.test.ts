// The live /dashboard page in headless Chromium, against a real gpu-node (vit-tiny on ONNX
// Runtime) after a bounded load: it renders, draws its charts, loads nothing from another origin,
// and every figure it shows is the number the node reports in its JSON (and, for the counts, in
// /metrics). A screenshot goes to test-results/dashboard.png. Skips when no Chromium exists
// (.ci/run installs Debian's).
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testConfig } from "../gpu-node/config.ts";
import { type GpuNode, startGpuNode } from "../gpu-node/node.ts";
import type { DashboardData } from "../gpu-node/observability/metrics.ts";
import { findChromium, launchChromium } from "./support/chromium.ts";
import { metricSample } from "./support/gpu-node-client.ts";
import { photo } from "./support/images.ts";
import { startEmbedLoad } from "./support/load.ts";

const CHROMIUM = findChromium();
const RESULTS = resolve(import.meta.dirname, "../test-results");

/** Follows a dotted path ("summary.stages.total.p95") into the JSON. */
function pick(data: unknown, path: string): unknown {
  return path
    .split(".")
    .reduce<unknown>(
      (o, k) => (o === null || o === undefined ? o : (o as Record<string, unknown>)[k]),
      data,
    );
}

/** Half a unit of the last digit shown ("12.3" → 0.05): the most rounding can explain. */
function rounding(text: string): number {
  const decimals = text.includes(".") ? text.split(".")[1]!.length : 0;
  return 0.5 * 10 ** -decimals + 1e-9;
}

/** What the page shows, read inside the page (a string: this project's types have no DOM). */
const SNAPSHOT = `({
  generatedAt: document.body.dataset.generatedAt,
  shown: Array.from(document.querySelectorAll("[data-figure]"), (e) => ({
    path: e.dataset.figure,
    text: e.textContent.trim(),
  })),
  table: Array.from(document.querySelectorAll("#stages tbody tr"), (r) =>
    Array.from(r.children, (c) => c.textContent.trim()),
  ),
})`;
interface Snapshot {
  readonly generatedAt: string;
  readonly shown: readonly { readonly path: string; readonly text: string }[];
  readonly table: readonly (readonly string[])[];
}

describe.skipIf(!CHROMIUM)("/dashboard in headless Chromium", () => {
  let node: GpuNode;
  let browser: Browser;

  beforeAll(async () => {
    node = await startGpuNode(testConfig({ port: 0, model: "vit-tiny", threads: 1 }));
    const images = await Promise.all([1, 2, 3].map((s) => photo(320, 256, s)));
    const load = startEmbedLoad({
      url: node.url,
      images,
      concurrency: 3,
      maxMs: 30_000,
      badEvery: 9,
      streamEvery: 13,
    });
    [browser] = await Promise.all([
      launchChromium(CHROMIUM!),
      new Promise((r) => setTimeout(r, 4000)),
    ]);
    const done = await load.stop();
    expect(done.imagesEmbedded).toBeGreaterThan(10);
    // Let the last busy second complete: the page shows completed seconds only.
    await new Promise((r) => setTimeout(r, 1200));
  });

  afterAll(async () => {
    await browser?.close();
    await node?.close();
  });

  it("renders, draws the charts and shows the numbers the node reports; saves a screenshot", async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    const foreign: string[] = [];
    const consoleErrors: string[] = [];
    page.on("request", (r) => {
      if (!r.url().startsWith(node.metricsUrl!)) foreign.push(r.url());
    });
    page.on("console", (m) => {
      if (m.type() === "error") consoleErrors.push(m.text());
    });
    page.on("pageerror", (e) => consoleErrors.push(String(e)));
    // Every data.json the page received, by its generatedAt: the page is compared with the one
    // it rendered last (it polls every second, and rates move while the node is young).
    const received = new Map<string, DashboardData>();
    page.on("response", async (r) => {
      if (!r.url().endsWith("/dashboard/data.json")) return;
      const d = (await r.json().catch(() => undefined)) as DashboardData | undefined;
      if (d) received.set(d.generatedAt, d);
    });

    await page.goto(`${node.metricsUrl}/dashboard`);
    await page.waitForSelector('body[data-state="live"]', { timeout: 15_000 });
    // Charts: five stage charts with p50/p95/p99 lines, throughput bars.
    await page.waitForFunction(
      `document.querySelectorAll("#stage-charts figure path.line[d^='M']").length >= 15`,
    );
    expect(await page.locator("#stage-charts figure").count()).toBe(5);
    expect(await page.locator("#throughput-chart rect.bar").count()).toBeGreaterThan(0);
    expect(await page.locator("#batch-chart path.line[d^='M']").count()).toBe(1);

    // One evaluation, so the page cannot re-render halfway through the reading.
    const snapshot = (await page.evaluate(SNAPSHOT)) as Snapshot;
    const { shown, table } = snapshot;
    await expect.poll(() => received.has(snapshot.generatedAt)).toBe(true);
    const data = received.get(snapshot.generatedAt)!;
    // What the node answers anyone else (the counts no longer move: the load is over).
    const direct = (await (
      await fetch(`${node.metricsUrl}/dashboard/data.json`)
    ).json()) as DashboardData;
    expect(direct.totals).toEqual(data.totals);
    const metrics = await (await fetch(`${node.metricsUrl}/metrics`)).text();

    mkdirSync(RESULTS, { recursive: true });
    await page.screenshot({ path: resolve(RESULTS, "dashboard.png"), fullPage: true });

    // Every figure on the page is the JSON's number, to the digits shown.
    expect(shown.length).toBeGreaterThanOrEqual(14);
    const checked: string[] = [];
    for (const { path, text } of shown) {
      if (path.startsWith("triton.")) continue; // not a triton node: the section is hidden
      const want = pick(data, path);
      expect(typeof want, `${path} in the JSON`).toBe("number");
      expect(Number(text), `${path} shown as ${JSON.stringify(text)}`).not.toBeNaN();
      expect(
        Math.abs(Number(text) - (want as number)),
        `${path}: page ${text}, JSON ${want}`,
      ).toBeLessThanOrEqual(rounding(text));
      checked.push(path);
    }
    expect(checked).toEqual(
      expect.arrayContaining([
        "summary.imagesPerSecond",
        "summary.stages.total.p50",
        "summary.stages.total.p95",
        "summary.stages.total.p99",
        "summary.images",
        "totals.images",
      ]),
    );
    // The per-stage table: p50, p95, p99, mean and count of each stage.
    expect(table.map((r) => r[0])).toEqual([...data.stages]);
    for (const row of table) {
      const s = data.summary.stages[row[0] as keyof DashboardData["summary"]["stages"]]!;
      [s.p50, s.p95, s.p99, s.mean].forEach((v, i) => {
        expect(Math.abs(Number(row[i + 1]) - v), `${row[0]} column ${i + 1}`).toBeLessThanOrEqual(
          rounding(row[i + 1]!),
        );
      });
      expect(Number(row[5])).toBe(s.count);
    }
    expect(await page.locator("#triton").isHidden()).toBe(true);

    // And the counts are the ones Prometheus would scrape.
    const okImages = metricSample(metrics, 'gpu_node_images_total{outcome="ok"}');
    expect(data.totals.images).toBe(okImages);
    expect(Number(shown.find((f) => f.path === "totals.images")!.text)).toBe(okImages);
    // The node is younger than the summary window: the window holds everything it did.
    expect(data.summary.images).toBe(okImages);
    expect(data.summary.errors).toBeGreaterThan(0);

    expect(foreign, "requests to other origins").toEqual([]);
    expect(consoleErrors).toEqual([]);
    await page.close();
  });
});

if (!CHROMIUM) {
  describe("/dashboard in headless Chromium", () => {
    it.skip("skipped: no Chromium (apt-get install chromium, or set CHROMIUM=/path)", () => {});
  });
}
