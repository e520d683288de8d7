// The gpu-node as users run it: the CLI in its own process, called with `buf curl` over every
// protocol, configuration errors, and a graceful SIGTERM with a call in flight.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { embedderClient, norm, toFloats } from "./support/gpu-node-client.ts";
import { photo } from "./support/images.ts";

const ROOT = resolve(import.meta.dirname, "..");
const SERVER = resolve(ROOT, "gpu-node/main.ts");
const BUF = resolve(ROOT, "node_modules/.bin/buf");
const run = promisify(execFile);

interface Started {
  child: ChildProcess;
  url: string;
  logs: Record<string, unknown>[];
}

/** Starts the CLI on a free port and waits for its "listening" log line. */
async function startCli(args: string[]): Promise<Started> {
  const child = spawn(process.execPath, [SERVER, "--port", "0", ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, GPU_NODE_LOG_LEVEL: "info" },
  });
  const logs: Record<string, unknown>[] = [];
  const lines = createInterface({ input: child.stdout! });
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error("gpu-node did not start in 60 s")), 60_000);
    child.once("exit", (code) => reject(new Error(`gpu-node exited early with ${code}`)));
    lines.on("line", (line) => {
      const entry = JSON.parse(line) as Record<string, unknown>;
      logs.push(entry);
      if (entry.msg === "listening") {
        clearTimeout(timer);
        resolveUrl(entry.url as string);
      }
    });
  });
  return { child, url, logs };
}

describe("gpu-node CLI", () => {
  let node: Started;
  beforeAll(async () => {
    node = await startCli(["--model", "vit-tiny", "--threads", "1"]);
  });
  afterAll(() => {
    if (node?.child.exitCode === null) node.child.kill("SIGKILL");
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
    await new Promise((r) => setTimeout(r, 100));
    const call = node.logs.find((l) => l.msg === "call" && l.requestId === "trace-123");
    expect(call).toMatchObject({ method: "Embed", code: "ok" });
    const all = JSON.stringify(node.logs);
    expect(all).not.toContain(jpeg.subarray(0, 64).toString("base64"));
  });

  it("drains on SIGTERM: the call in flight completes, then the process exits 0", async () => {
    const big = await Promise.all(Array.from({ length: 64 }, (_, i) => photo(2000, 1500, i)));
    const inFlight = embedderClient(node.url, "grpc").embed({
      images: big.map((d, i) => ({ id: String(i), data: d })),
    });
    await new Promise((r) => setTimeout(r, 150));
    const exited = once(node.child, "exit");
    node.child.kill("SIGTERM");
    const res = await inFlight;
    expect(res.embeddings.length).toBe(64);
    const [code] = await exited;
    expect(code).toBe(0);
    // The signal really arrived while the call was in flight.
    expect(node.logs.find((l) => l.msg === "draining")).toMatchObject({ inFlight: 1 });
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
