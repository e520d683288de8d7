/** A real Prometheus for tests: finds Debian's binary, starts it on a loopback port with a temporary config and storage scraping the given targets every second, and queries its HTTP API. */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The prometheus binary ($PROMETHEUS, or Debian's), or undefined when there is none. */
export function findPrometheus(): string | undefined {
  const candidates = [process.env.PROMETHEUS, "/usr/bin/prometheus", "/usr/local/bin/prometheus"];
  for (const c of candidates) {
    if (c && existsSync(c) && spawnSync(c, ["--version"], { timeout: 10_000 }).status === 0) {
      return c;
    }
  }
  return undefined;
}

/** A free loopback port (Prometheus cannot report the port it picked for :0). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const { port } = s.address() as { port: number };
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface PromSample {
  readonly metric: Record<string, string>;
  readonly value: [number, string];
}

export interface Prometheus {
  readonly url: string;
  readonly pid: number;
  /** Instant query; throws with Prometheus' own error text when the query is invalid. */
  query(promql: string): Promise<PromSample[]>;
  /** Values of a label among series matching `match` (what Grafana's label_values() asks). */
  labelValues(label: string, match: string): Promise<string[]>;
  /** Resolves once every target has been scraped successfully at least `scrapes` times. */
  waitForScrapes(scrapes: number, timeoutMs: number): Promise<void>;
  /** Everything it wrote to stderr (its log). */
  log(): string;
  stop(): Promise<void>;
}

export interface PrometheusOptions {
  readonly binary: string;
  /** host:port of each /metrics endpoint, scraped as job "gpu-node". */
  readonly targets: readonly string[];
  readonly scrapeIntervalS?: number;
}

export async function startPrometheus(opts: PrometheusOptions): Promise<Prometheus> {
  const dir = await mkdtemp(join(tmpdir(), "prometheus-test-"));
  const interval = `${opts.scrapeIntervalS ?? 1}s`;
  const config = [
    "global:",
    `  scrape_interval: ${interval}`,
    `  scrape_timeout: ${interval}`,
    `  evaluation_interval: ${interval}`,
    "scrape_configs:",
    "  - job_name: gpu-node",
    "    static_configs:",
    `      - targets: [${opts.targets.map((t) => JSON.stringify(t)).join(", ")}]`,
    "",
  ].join("\n");
  await writeFile(join(dir, "prometheus.yml"), config);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let stderr = "";
  const child: ChildProcess = spawn(
    opts.binary,
    [
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--storage.tsdb.retention.time=1h",
      "--log.level=warn",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-20_000);
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      process.kill(child.pid, "SIGTERM");
      const killer = setTimeout(() => child.pid && process.kill(child.pid, "SIGKILL"), 5000);
      await exited;
      clearTimeout(killer);
    }
    await rm(dir, { recursive: true, force: true });
  };

  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${url}${path}`);
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== "success") throw new Error(`prometheus ${path}: ${body.error}`);
    return body.data;
  };

  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`prometheus exited: ${stderr}`);
      const ok = await fetch(`${url}/-/ready`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      if (Date.now() > deadline) throw new Error(`prometheus not ready after 30 s: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await stop();
    throw err;
  }

  const query = async (promql: string) => {
    const data = await api<{ resultType: string; result: PromSample[] | [number, string] }>(
      `/api/v1/query?query=${encodeURIComponent(promql)}`,
    );
    // A scalar result is one value with no labels.
    if (data.resultType === "scalar")
      return [{ metric: {}, value: data.result as [number, string] }];
    return data.result as PromSample[];
  };

  return {
    url,
    pid: child.pid!,
    query,
    labelValues: (label, match) =>
      api<string[]>(`/api/v1/label/${label}/values?${new URLSearchParams({ "match[]": match })}`),
    async waitForScrapes(scrapes, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const r = await query('count_over_time(up{job="gpu-node"}[5m])').catch(() => []);
        const up = await query('up{job="gpu-node"}').catch(() => []);
        if (
          r.length === opts.targets.length &&
          r.every((s) => Number(s.value[1]) >= scrapes) &&
          up.every((s) => s.value[1] === "1")
        ) {
          return;
        }
        if (Date.now() > deadline) {
          throw new Error(
            `targets not scraped ${scrapes} times in ${timeoutMs} ms: ${JSON.stringify(up)}\n${stderr}`,
          );
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    },
    log: () => stderr,
    stop,
  };
}
