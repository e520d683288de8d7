/** Starts the edge Worker from the real wrangler.toml in-process (wrangler's startWorker, workerd underneath), offline and quiet. */
import { join, resolve } from "node:path";
import { unstable_startWorker } from "wrangler";

const ROOT = resolve(import.meta.dirname, "../..");

export interface EdgeWorker {
  readonly url: string;
  dispose(): Promise<void>;
}

/**
 * `vars` override wrangler.toml's [vars] and stand in for secrets. `logLevel` "none" silences the
 * Worker's console (load and fault tests make it log every 5xx they provoke).
 */
export async function startEdge(
  vars: Record<string, string>,
  opts: { logLevel?: "warn" | "error" | "none"; env?: "production" } = {},
): Promise<EdgeWorker> {
  // Offline and private: no telemetry, no Cloudflare API calls, config kept in the ignored cache.
  Object.assign(process.env, {
    WRANGLER_SEND_METRICS: "false",
    WRANGLER_SEND_ERROR_REPORTS: "false",
    WRANGLER_HIDE_BANNER: "true",
    CLOUDFLARE_CF_FETCH_ENABLED: "false",
    XDG_CONFIG_HOME: join(ROOT, ".cache/xdg/config"),
  });
  const worker = await unstable_startWorker({
    config: join(ROOT, "wrangler.toml"),
    // `wrangler dev --env production`: the deployed configuration, run locally.
    ...(opts.env ? { env: opts.env } : {}),
    bindings: Object.fromEntries(
      Object.entries(vars).map(([k, value]) => [k, { type: "plain_text" as const, value }]),
    ),
    dev: {
      server: { hostname: "127.0.0.1", port: 0 },
      inspector: false,
      logLevel: opts.logLevel ?? "warn",
    },
  });
  await worker.ready;
  const url = (await worker.url).href.replace(/\/$/, "");
  return { url, dispose: () => worker.dispose() };
}
