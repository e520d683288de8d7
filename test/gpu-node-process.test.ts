// The gpu-node as users run it: the CLI in its own process, called with `buf curl` over every
// protocol, configuration errors, and a graceful SIGTERM with a call in flight.
import { execFile } from "node:child_process";
import { once } from "node:events";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { embedderClient, metricValue, norm, toFloats } from "./support/gpu-node-client.ts";
import { photo } from "./support/images.ts";
import { type GpuNodeProcess, spawnGpuNode } from "./support/processes.ts";
import { until } from "./support/wait.ts";

const ROOT = resolve(import.meta.dirname, "..");
const SERVER = resolve(ROOT, "gpu-node/main.ts");
const BUF = resolve(ROOT, "node_modules/.bin/buf");
const run = promisify(execFile);

describe("gpu-node CLI", () => {
  let node: GpuNodeProcess;
  beforeAll(async () => {
    // Metrics on a free port: the drain test reads the node's in-flight gauge.
    node = await spawnGpuNode(["--model", "vit-tiny", "--threads", "1", "--metrics-port", "0"], {
      metrics: true,
      glibcTunables: false,
    });
  });
  afterAll(() => {
    if (node?.alive()) node.child.kill("SIGKILL");
  });

  it.each([
    ["connect", []],
    ["grpc", ["--http2-prior-knowledge"]],
    ["grpcweb", []],
  ])("answers buf curl over %s with a unit 512-d vector per image", async (protocol, extra) => {
    const jpeg = await photo(300, 240, 5);
    const body = JSON.stringify({
      images: [
        { id: "a", data: jpeg.toString("base64") },
        { id: "b", data: jpeg.toString("base64") },
      ],
    });
    const { stdout } = await run(BUF, [
      "curl",
      "--schema",
      resolve(ROOT, "proto"),
      "--protocol",
      protocol,
      ...extra,
      "--data",
      body,
      `${node.url}/embedder.v1.EmbedderService/Embed`,
    ]);
    const res = JSON.parse(stdout) as { embeddings: { id: string; vector: string }[] };
    expect(res.embeddings.map((e) => e.id)).toEqual(["a", "b"]);
    for (const e of res.embeddings) {
      const v = toFloats(Buffer.from(e.vector, "base64"));
      expect(v.length).toBe(512);
      expect(norm(v)).toBeCloseTo(1, 5);
    }
  });

  it("logs one JSON line per call with a request id, and no image bytes", async () => {
    const jpeg = await photo(100, 100, 6);
    await embedderClient(node.url, "connect-h1").embed(
      { images: [{ id: "x", data: jpeg }] },
      { headers: { "x-request-id": "trace-123" } },
    );
    // The log line comes through a pipe, apart from the answer: wait for it.
    const call = await node.waitFor((l) => l.msg === "call" && l.requestId === "trace-123");
    expect(call).toMatchObject({ method: "Embed", code: "ok" });
    const all = JSON.stringify(node.logs);
    expect(all).not.toContain(jpeg.subarray(0, 64).toString("base64"));
  });

  it("drains on SIGTERM: the call in flight completes, then the process exits 0", async () => {
    const big = await Promise.all(Array.from({ length: 64 }, (_, i) => photo(2000, 1500, i)));
    const inFlight = embedderClient(node.url, "grpc").embed({
      images: big.map((d, i) => ({ id: String(i), data: d })),
    });
    // Signal once the call has arrived (the node's in-flight gauge), not after a guessed delay:
    // on a loaded machine 64 photos may take longer than that to upload.
    const metricsUrl = node.ready.metricsUrl as string;
    await until(async () => (await metricValue(metricsUrl, "gpu_node_in_flight_calls")) >= 1);
    const exited = once(node.child, "exit");
    node.child.kill("SIGTERM");
    const res = await inFlight;
    expect(res.embeddings.length).toBe(64);
    const [code] = await exited;
    expect(code).toBe(0);
    // The signal really arrived while the call was in flight.
    expect(await node.waitFor((l) => l.msg === "draining")).toMatchObject({ inFlight: 1 });
  });
});

describe("gpu-node CLI configuration", () => {
  it("documents every flag with --help", async () => {
    const { stdout } = await run(process.execPath, [SERVER, "--help"]);
    expect(stdout).toContain("--max-batch-size");
    expect(stdout).toContain("GPU_NODE_MODEL");
  });

  it.each([
    [["--port", "99999"], /--port \(GPU_NODE_PORT\) must be an integer/],
    [["--backend", "pytorch"], /--backend \(GPU_NODE_BACKEND\) must be one of/],
    [["--model", "/nonexistent/model.onnx"], /nonexistent/],
  ])("exits non-zero with a clear message for %j", async (args, message) => {
    const err = await run(process.execPath, [SERVER, ...args]).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err?.code).not.toBe(0);
    expect(err?.stderr).toMatch(message);
    expect(err?.stderr).not.toMatch(/\n\s+at /);
  });
});
