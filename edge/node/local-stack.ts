/** `npm start`: the whole stack on this machine, offline — a gpu-node (embedded ONNX Runtime, generated vit-b32) and the edge under `wrangler dev` — with a fresh dev API key; Ctrl-C stops both. */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { NODE_FLAGS as GPU_NODE_FLAGS } from "../../gpu-node/config.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const CACHE = join(ROOT, ".cache");

const { values } = parseArgs({
  options: {
    "edge-port": { type: "string", default: process.env.EDGE_PORT ?? "8787" },
    "gpu-port": { type: "string", default: process.env.GPU_NODE_PORT ?? "50051" },
    model: { type: "string", default: process.env.GPU_NODE_MODEL ?? "vit-b32" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(
    "Usage: npm start -- [--edge-port 8787] [--gpu-port 50051] [--model vit-b32|vit-tiny|FILE.onnx]",
  );
  process.exit(0);
}

const children: ChildProcess[] = [];
let stopping = false;

function stopAll(code: number): void {
  if (stopping) return;
  stopping = true;
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
  const force = setTimeout(() => {
    for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  }, 8000);
  force.unref();
  Promise.all(
    children.map((c) => (c.exitCode === null ? new Promise((r) => c.once("exit", r)) : null)),
  ).then(() => process.exit(code));
}
process.on("SIGINT", () => stopAll(0));
process.on("SIGTERM", () => stopAll(0));

function start(
  name: string,
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): ChildProcess {
  // Each child in its own process group: Ctrl-C reaches only this process, which then stops each
  // child once (a terminal's SIGINT plus our SIGTERM made the gpu-node see a second signal and
  // exit at once instead of draining).
  const child = spawn(command, args, {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  children.push(child);
  child.on("exit", (code, signal) => {
    if (!stopping) {
      console.error(`${name} exited (${signal ?? code}); stopping the stack`);
      stopAll(1);
    }
  });
  return child;
}

interface GpuNodeStarted {
  readonly url: string;
  /** Where its model runs, from its "model loaded" line: e.g. "webgpu on NVIDIA H100 … (Vulkan)". */
  readonly runsOn: string;
}

/** Resolves with the gpu-node's URL once it logs "listening"; its log lines pass through. */
function gpuNodeListening(child: ChildProcess): Promise<GpuNodeStarted> {
  let runsOn = "unknown";
  return new Promise((resolveUrl, reject) => {
    child.stderr!.pipe(process.stderr);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      process.stdout.write(`[gpu-node] ${line}\n`);
      try {
        const entry = JSON.parse(line) as {
          msg?: string;
          url?: string;
          backend?: string;
          provider?: string;
          device?: string;
        };
        if (entry.msg === "model loaded") {
          runsOn = entry.provider
            ? `${entry.backend} ${entry.provider} on ${entry.device}`
            : String(entry.backend);
        }
        if (entry.msg === "listening" && entry.url) resolveUrl({ url: entry.url, runsOn });
      } catch {
        // not JSON: passed through above
      }
    });
    child.once("exit", () => reject(new Error("gpu-node exited before listening")));
  });
}

async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${url} did not answer within ${timeoutMs / 1000} s`);
}

async function main(): Promise<void> {
  mkdirSync(join(CACHE, "dev"), { recursive: true });
  const token = randomBytes(24).toString("base64url");
  const apiKey = `dev-${randomBytes(18).toString("base64url")}`;
  const apiKeyHash = createHash("sha256").update(apiKey).digest("hex");

  console.log(`starting gpu-node (${values.model}; a generated model takes ~10 s the first time)…`);
  const gpu = start(
    "gpu-node",
    process.execPath,
    [
      ...GPU_NODE_FLAGS,
      join(ROOT, "gpu-node/main.ts"),
      "--port",
      values["gpu-port"],
      "--model",
      values.model,
    ],
    { ...process.env, GPU_NODE_TOKEN: token },
  );
  const { url: gpuUrl, runsOn } = await gpuNodeListening(gpu);

  // Secrets reach wrangler through an env file in the ignored cache, never on its command line.
  const envFile = join(CACHE, "dev", "edge.env");
  writeFileSync(
    envFile,
    `API_KEY_HASHES=${apiKeyHash}\nGPU_NODE_TOKEN=${token}\nGPU_NODE_URLS=${gpuUrl}\n`,
    { mode: 0o600 },
  );
  const edgeUrl = `http://127.0.0.1:${values["edge-port"]}`;
  console.log("starting the edge under wrangler dev…");
  const edge = start(
    "wrangler",
    join(ROOT, "node_modules/.bin/wrangler"),
    [
      "dev",
      "--ip",
      "127.0.0.1",
      "--port",
      values["edge-port"],
      "--env-file",
      envFile,
      "--show-interactive-dev-session=false",
    ],
    {
      ...process.env,
      WRANGLER_SEND_METRICS: "false",
      WRANGLER_SEND_ERROR_REPORTS: "false",
      WRANGLER_HIDE_BANNER: "true",
      CLOUDFLARE_CF_FETCH_ENABLED: "false",
      XDG_CONFIG_HOME: join(CACHE, "xdg/config"),
      XDG_CACHE_HOME: join(CACHE, "xdg/cache"),
      XDG_DATA_HOME: join(CACHE, "xdg/data"),
    },
  );
  edge.stdout!.on("data", (d: Buffer) => process.stdout.write(`[edge] ${d}`));
  edge.stderr!.on("data", (d: Buffer) => process.stderr.write(`[edge] ${d}`));
  await waitForHttp(`${edgeUrl}/healthz`, 60_000);

  console.log(`
The stack is up.
  edge      ${edgeUrl}   (POST /v1/embeddings, POST /embed/base64, GET /readyz)
  gpu-node  ${gpuUrl}   (Connect/gRPC; needs the edge token)
  model     ${values.model}, running on ${runsOn}
  dev API key: ${apiKey}

Try it:
  curl -s -H "Authorization: Bearer ${apiKey}" -H "Content-Type: image/jpeg" \\
       --data-binary @test/fixtures/parity/images/large_1600x1200.jpg ${edgeUrl}/v1/embeddings | head -c 300; echo

Ctrl-C stops both.`);
}

main().catch((err: unknown) => {
  console.error(`npm start failed: ${err instanceof Error ? err.message : String(err)}`);
  stopAll(1);
});
