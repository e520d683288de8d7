/** The metrics port: serves Prometheus' /metrics, the live /dashboard page (static files from dashboard/, no CDN) and the JSON it polls, from one node's metrics (or a cluster's merged view). */
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { join } from "node:path";
import type { Logger } from "../logger.ts";
import type { MetricsSource } from "./metrics.ts";

export interface MetricsServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export interface MetricsServerOptions {
  readonly host: string;
  /** 0 = any free port. */
  readonly port: number;
}

const DASHBOARD_DIR = join(import.meta.dirname, "dashboard");
const ASSETS = {
  "/dashboard": ["index.html", "text/html; charset=utf-8"],
  "/dashboard/dashboard.js": ["dashboard.js", "text/javascript; charset=utf-8"],
  "/dashboard/dashboard.css": ["dashboard.css", "text/css; charset=utf-8"],
} as const;

// Everything the page needs comes from this port: a CDN or inline script would be refused.
const PAGE_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

export async function startMetricsServer(
  metrics: MetricsSource,
  opts: MetricsServerOptions,
): Promise<MetricsServer> {
  const assets = new Map<string, { body: Buffer; type: string }>();
  for (const [path, [file, type]] of Object.entries(ASSETS)) {
    assets.set(path, { body: await readFile(join(DASHBOARD_DIR, file)), type });
  }

  const send = (
    req: IncomingMessage,
    res: ServerResponse,
    status: number,
    type: string,
    body: string | Buffer,
    headers: Record<string, string> = {},
  ) => {
    res.writeHead(status, {
      "content-type": type,
      "content-length": Buffer.byteLength(body),
      "cache-control": "no-store",
      ...headers,
    });
    res.end(req.method === "HEAD" ? undefined : body);
  };

  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0]!.replace(/\/+$/, "") || "/";
    if (req.method !== "GET" && req.method !== "HEAD") {
      return send(req, res, 405, "text/plain", "method not allowed\n", { allow: "GET, HEAD" });
    }
    if (path === "/metrics") {
      metrics.exposition().then(
        (text) => send(req, res, 200, metrics.contentType, text),
        (err: unknown) => send(req, res, 500, "text/plain", `metrics failed: ${String(err)}\n`),
      );
      return;
    }
    if (path === "/dashboard/data.json") {
      Promise.resolve()
        .then(() => metrics.dashboardData())
        .then(
          (data) => send(req, res, 200, "application/json", JSON.stringify(data)),
          (err: unknown) => send(req, res, 500, "text/plain", `dashboard failed: ${String(err)}\n`),
        );
      return;
    }
    const asset = assets.get(path);
    if (asset) return send(req, res, 200, asset.type, asset.body, PAGE_HEADERS);
    if (path === "/") return send(req, res, 302, "text/plain", "", { location: "/dashboard" });
    send(req, res, 404, "text/plain", "not found: try /metrics or /dashboard\n");
  });
  server.keepAliveTimeout = 65_000; // longer than Prometheus' scrape interval: one connection
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port, opts.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = opts.host.includes(":") ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

/**
 * Metrics are a side channel: a taken port is logged loudly and the node serves without them
 * (undefined), rather than failing to start.
 */
export function startMetricsServerOrWarn(
  source: MetricsSource,
  opts: MetricsServerOptions,
  log: Logger,
): Promise<MetricsServer | undefined> {
  return startMetricsServer(source, opts).catch((err: unknown) => {
    log.error(
      { err, metricsPort: opts.port },
      "metrics port unavailable: /metrics and /dashboard are off (set --metrics-port, 0 = any free port)",
    );
    return undefined;
  });
}
