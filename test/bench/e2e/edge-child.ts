/**
 * The benchmark's edge: the Worker from the real wrangler.toml under wrangler's dev runtime
 * (`unstable_startWorker`: the same Miniflare, workerd and local Images binding as `wrangler dev`,
 * which `npm start` uses) in a process of its own, built once and NOT watching the sources.
 * `wrangler dev` has no flag to stop watching: on a machine where others edit edge/, it reloaded
 * the Worker in the middle of a run (a call failed, and later calls would have measured other
 * code). Vars and secrets come from the environment variable EDGE_VARS (JSON), never argv.
 *
 * It announces two addresses. `url` is wrangler's dev proxy, what `wrangler dev` users call: a
 * Worker of its own in a second workerd, a Durable Object, then a fetch to the runtime that
 * serves the project's Worker. `workerUrl` is that runtime's own server, with no proxy in front;
 * a request there still passes Miniflare's entry Worker and wrangler's dev middleware, which a
 * deployed Worker does not have either (e2e/workerd-child.ts runs the Worker without them). (Its local stand-in for Cloudflare's front
 * line still gzips JSON answers for clients that accept gzip, on these cores: the seed's client
 * does not ask for it.)
 *
 *   EDGE_VARS='{"GPU_NODE_URLS":"…"}' node test/bench/e2e/edge-child.ts --port 8787 --persist-to DIR
 * prints {"url": "http://127.0.0.1:8787", "workerUrl": "http://127.0.0.1:PORT"} once ready;
 * SIGTERM disposes it.
 */
import { join, resolve } from "node:path";
import { unstable_startWorker } from "wrangler";
import { parseCli } from "../../support/cli.ts";

const ROOT = resolve(import.meta.dirname, "../../..");
const USAGE = `usage: EDGE_VARS='{"GPU_NODE_URLS":"…"}' node test/bench/e2e/edge-child.ts [--port 8787] [--persist-to DIR]

The edge Worker from wrangler.toml under wrangler's dev runtime, built once and not watching the
sources. Prints {"url": …, "workerUrl": …} once ready (the dev proxy, and the runtime behind it);
SIGTERM disposes it.`;
const { values } = parseCli(USAGE, {
  options: {
    port: { type: "string", default: "0" },
    "persist-to": { type: "string" },
  },
});
const vars = JSON.parse(process.env.EDGE_VARS ?? "{}") as Record<string, string>;
delete process.env.EDGE_VARS;
const worker = await unstable_startWorker({
  config: join(ROOT, "wrangler.toml"),
  bindings: Object.fromEntries(
    Object.entries(vars).map(([k, value]) => [k, { type: "plain_text" as const, value }]),
  ),
  dev: {
    server: { hostname: "127.0.0.1", port: Number(values.port) },
    inspector: false,
    logLevel: "warn",
    watch: false,
    ...(values["persist-to"] ? { persist: values["persist-to"] } : {}),
  },
});
type UrlParts = { protocol: string; hostname: string; port: string };
// The proxy learns the inner runtime's address from this event (wrangler re-emits it for callers);
// it comes after the build, which is after unstable_startWorker returns.
const inner = new Promise<string>((resolve, reject) => {
  const timer = setTimeout(
    () => reject(new Error("wrangler never reported its runtime's address (reloadComplete)")),
    120_000,
  );
  worker.raw.on("reloadComplete", (event: { proxyData: { userWorkerUrl: UrlParts } }) => {
    clearTimeout(timer);
    const { protocol, hostname, port } = event.proxyData.userWorkerUrl;
    resolve(`${protocol}//${hostname}:${port}`);
  });
});
await worker.ready;
const url = (await worker.url).href.replace(/\/$/, "");
process.stdout.write(`${JSON.stringify({ url, workerUrl: await inner })}\n`);
const stop = () => void worker.dispose().finally(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
