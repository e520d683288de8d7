// The Grafana dashboard's PromQL, for real: two gpu-nodes (vit-tiny on ONNX Runtime, and the
// triton backend in front of the KServe v2 test double) under a bounded load, scraped every
// second by Debian's Prometheus; every panel's every query must return data through Prometheus'
// HTTP API, and the dashboard's variables must resolve. Skips when no prometheus binary exists
// (.ci/run installs it).
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testConfig } from "../gpu-node/config.ts";
import { type GpuNode, startGpuNode } from "../gpu-node/node.ts";
import { photo } from "./support/images.ts";
import { type KServeDouble, startKServeDouble, tinyModelFiles } from "./support/kserve-double.ts";
import { type EmbedLoad, startEmbedLoad } from "./support/load.ts";
import {
  findPrometheus,
  type Prometheus,
  type PromSample,
  startPrometheus,
} from "./support/prometheus.ts";

const DASHBOARD = resolve(import.meta.dirname, "../gpu-node/observability/grafana-gpu-node.json");
const PROMETHEUS = findPrometheus();
/** What Grafana would use for $__rate_interval with a 1 s scrape interval and a short time range. */
const RATE_INTERVAL = "10s";

interface Target {
  readonly refId: string;
  readonly expr: string;
}
interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly datasource?: { readonly type: string; readonly uid: string };
  readonly targets?: readonly Target[];
  readonly gridPos: {
    readonly x: number;
    readonly y: number;
    readonly w: number;
    readonly h: number;
  };
}
interface Variable {
  readonly name: string;
  readonly type: string;
  readonly query: string | { readonly query: string };
  readonly allValue?: string;
}
const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8")) as {
  uid: string;
  panels: Panel[];
  templating: { list: Variable[] };
};
const queries = dashboard.panels
  .filter((p) => p.type !== "row")
  .flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, refId: t.refId, expr: t.expr })));

/** Grafana's substitution of the dashboard variables ("All" selected) and interval macros. */
function substitute(expr: string, vars: Record<string, string>): string {
  return expr
    .replaceAll("$__rate_interval", RATE_INTERVAL)
    .replace(/\$(\w+)/g, (m, name: string) => vars[name] ?? m);
}

const ALL = { job: ".*", instance: ".*" };

describe("Grafana dashboard JSON", () => {
  it("is well formed: unique ids, the templated Prometheus data source, a query per panel", () => {
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(dashboard.uid).toMatch(/^[\w-]{1,40}$/);
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(["datasource", "job", "instance"]);
    for (const p of dashboard.panels.filter((p) => p.type !== "row")) {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax
      expect(p.datasource, p.title).toEqual({ type: "prometheus", uid: "${datasource}" });
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      for (const t of p.targets ?? []) {
        expect(t.expr, p.title).toMatch(/instance=~"\$instance"/);
        expect(substitute(t.expr, ALL), p.title).not.toMatch(/\$/);
      }
    }
    expect(queries.length).toBeGreaterThanOrEqual(20);
  });
});

describe.skipIf(!PROMETHEUS)("Grafana dashboard against a real Prometheus", () => {
  let ort: GpuNode;
  let triton: GpuNode;
  let double: KServeDouble;
  let prom: Prometheus;
  let loads: EmbedLoad[] = [];

  beforeAll(async () => {
    const cacheDir = testConfig().cacheDir;
    const files = await tinyModelFiles(cacheDir);
    double = await startKServeDouble({
      models: [{ name: "vit_tiny", path: files.uint8, layout: "uint8-nhwc", maxBatchSize: 8 }],
      threads: 1,
    });
    ort = await startGpuNode(testConfig({ port: 0, model: "vit-tiny", threads: 1 }));
    triton = await startGpuNode(
      testConfig({
        port: 0,
        backend: "triton",
        tritonUrl: double.url,
        tritonModel: "vit_tiny",
        tritonStatsIntervalMs: 250,
        tritonConcurrency: 2,
      }),
    );
    prom = await startPrometheus({
      binary: PROMETHEUS!,
      targets: [ort, triton].map((n) => new URL(n.metricsUrl!).host),
    });
    const images = await Promise.all([1, 2, 3, 4].map((s) => photo(320, 256, s)));
    loads = [ort, triton].map((n) =>
      startEmbedLoad({
        url: n.url,
        images,
        concurrency: 3,
        maxMs: 60_000,
        badEvery: 9,
        streamEvery: 13,
      }),
    );
  });

  afterAll(async () => {
    await Promise.all(loads.map((l) => l.stop()));
    await prom?.stop();
    await ort?.close();
    await triton?.close();
    await double?.close();
  });

  it("scrapes both nodes, resolves the variables and every panel query returns data", async () => {
    await prom.waitForScrapes(3, 30_000);

    // Variables: label_values(gpu_node_info, job) and label_values(gpu_node_info{job=~"$job"}, instance).
    expect(await prom.labelValues("job", "gpu_node_info")).toEqual(["gpu-node"]);
    const instances = await prom.labelValues("instance", 'gpu_node_info{job=~".*"}');
    expect(instances.sort()).toEqual([ort, triton].map((n) => new URL(n.metricsUrl!).host).sort());

    // Every metric a panel names is one the nodes expose (a typo would otherwise only show as "No data").
    const exposed = new Set<string>();
    for (const n of [ort, triton]) {
      const text = await (await fetch(`${n.metricsUrl}/metrics`)).text();
      for (const m of text.matchAll(/^([a-zA-Z_:][\w:]*)(?:\{| )/gm)) exposed.add(m[1]!);
    }
    for (const q of queries) {
      for (const name of q.expr.match(/\b(?:gpu_node|process|nodejs)_\w+/g) ?? []) {
        expect(exposed.has(name), `${q.panel}: ${name}`).toBe(true);
      }
    }

    // Give the load a few scrapes to show up in rate() windows, then every query must answer.
    const finite = (r: PromSample[]) => r.some((s) => Number.isFinite(Number(s.value[1])));
    const run = async () =>
      Promise.all(
        queries.map(async (q) => ({ ...q, result: await prom.query(substitute(q.expr, ALL)) })),
      );
    let results = await run();
    const deadline = Date.now() + 30_000;
    while (results.some((r) => !finite(r.result)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 1000));
      results = await run();
    }
    const empty = results.filter((r) => !finite(r.result)).map((r) => `${r.panel} (${r.refId})`);
    expect(empty, `panels without data:\n${empty.join("\n")}`).toEqual([]);

    // A few values must also make sense, not just exist.
    const value = (panel: string, refId = "A", labels: Record<string, string> = {}) => {
      const r = results.find((x) => x.panel === panel && x.refId === refId)!.result;
      const s = r.find((x) => Object.entries(labels).every(([k, v]) => x.metric[k] === v));
      return Number(s?.value[1]);
    };
    expect(value("Throughput")).toBeGreaterThan(1);
    expect(value("Total latency p95")).toBeGreaterThan(0);
    expect(value("Total latency p95")).toBeLessThan(10);
    expect(value("Failed calls")).toBeGreaterThan(0);
    expect(value("Failed calls")).toBeLessThan(0.5);
    expect(
      value("Errors by code", "A", { method: "Embed", code: "invalid_argument" }),
    ).toBeGreaterThan(0);
    expect(value("Images by outcome", "A", { outcome: "ok" })).toBeGreaterThan(1);
    expect(value("Triton time per request", "A", { phase: "compute_infer" })).toBeGreaterThan(0);
    const share = value("Triton share of backend time", "A", { phase: "compute_infer" });
    expect(share).toBeGreaterThan(0);
    expect(share).toBeLessThanOrEqual(1.05);

    // The instance variable filters: Triton series exist only for the triton node.
    const onlyOrt = { ...ALL, instance: new URL(ort.metricsUrl!).host.replaceAll(".", "\\\\.") };
    const tritonQuery = queries.find((q) => q.panel === "Triton time per request")!;
    expect(await prom.query(substitute(tritonQuery.expr, onlyOrt))).toEqual([]);
    const throughput = queries.find((q) => q.panel === "Throughput")!;
    expect(finite(await prom.query(substitute(throughput.expr, onlyOrt)))).toBe(true);
  });
});

if (!PROMETHEUS) {
  describe("Grafana dashboard against a real Prometheus", () => {
    it.skip("skipped: no prometheus binary (apt-get install prometheus, or set PROMETHEUS=/path)", () => {});
  });
}
