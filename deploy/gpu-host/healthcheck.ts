/**
 * Container health check: GET /readyz on this host's gpu-node port; exit 0 when it answers 200.
 * Node's own HTTP client (slim images have no curl). Port and TLS come from the same environment
 * the gpu-node reads (GPU_NODE_PORT, GPU_NODE_TLS_CERT) or from `--port N` / `--tls`.
 */
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    path: { type: "string", default: "/readyz" },
    tls: { type: "boolean" },
    "timeout-ms": { type: "string", default: "2500" },
  },
});
const port = Number(values.port ?? process.env.GPU_NODE_PORT ?? "50051");
const tls = values.tls ?? (process.env.GPU_NODE_TLS_CERT ?? "") !== "";
// The certificate names the public hostname, not 127.0.0.1: this probe checks liveness of the
// local process, not the chain (the edge and Cloudflare check that).
const request = tls ? httpsRequest : httpRequest;
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
