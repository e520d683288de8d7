/**
 * Container health check: GET /readyz on this host's gpu-node; exit 0 when it answers 200.
 * Node's own HTTP client (slim images have no curl). Port and TLS come from the gpu-node's own
 * parser over the same environment (GPU_NODE_PORT, GPU_NODE_TLS_CERT, …), or from `--port N`.
 */
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { parseArgs } from "node:util";
import { parseConfig } from "../../gpu-node/config.ts";

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    path: { type: "string", default: "/readyz" },
    "timeout-ms": { type: "string", default: "2500" },
  },
});
const config = parseConfig([], process.env);
const port = values.port === undefined ? config.port : Number(values.port);
// The certificate names the public hostname, not 127.0.0.1: this probe asks the local process,
// it does not check the chain (the edge and Cloudflare do).
const request = config.tlsCert === "" ? httpRequest : httpsRequest;
const req = request(
  {
    host: "127.0.0.1",
    port,
    path: values.path,
    method: "GET",
    timeout: Number(values["timeout-ms"]),
    rejectUnauthorized: false,
  },
  (res) => {
    res.resume();
    res.on("end", () => process.exit(res.statusCode === 200 ? 0 : 1));
  },
);
req.on("timeout", () => req.destroy(new Error("timeout")));
req.on("error", (err) => {
  process.stderr.write(`healthcheck: ${err.message}\n`);
  process.exit(1);
});
req.end();
