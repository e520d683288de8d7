/** The edge on Node, for teams that self-host without Cloudflare: the same Hono app, sharp as the resizer, settings from the environment. */
import { serve } from "@hono/node-server";
import { createApp } from "../app.ts";
import { EDGE_SETTINGS, parseEdgeConfig } from "../config.ts";
import { createSharpResizer } from "./sharp-resizer.ts";

const resizer = createSharpResizer();

/** The app with the environment as its bindings (the same variable names as wrangler.toml). */
export function createNodeEdge(env: Record<string, string | undefined> = process.env) {
  const vars = Object.fromEntries(
    Object.keys(EDGE_SETTINGS).flatMap((k) => (env[k] === undefined ? [] : [[k, env[k]]])),
  );
  parseEdgeConfig(vars); // fail at start, with the variable named, not on the first request
  const app = createApp({ resizer: () => resizer });
  return { app, bindings: Object.freeze(vars) };
}

if (import.meta.main) {
  const { app, bindings } = createNodeEdge();
  const port = Number(process.env.EDGE_PORT ?? 8787);
  const hostname = process.env.EDGE_HOST ?? "127.0.0.1";
  serve({ fetch: (req) => app.fetch(req, bindings), port, hostname }, (info) => {
    console.log(JSON.stringify({ msg: "listening", url: `http://${hostname}:${info.port}` }));
  });
}
