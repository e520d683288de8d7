// A gpu-node stopped with SIGTERM (what a container stop sends) at every point of its life: as
// the process starts, when the model file is ready, when the model is loaded, as the workers
// listen, right after it serves, with calls in flight, and while a dead worker is replaced. Each
// time it must exit 0 without "shutdown failed", and leave no worker process behind.
import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { embedderClient } from "./support/gpu-node-client.ts";
import { photo } from "./support/images.ts";
import { descendants } from "./support/proc.ts";
import {
  type Announced,
  GPU_NODE,
  GPU_NODE_GLIBC_TUNABLES,
  type LogLine,
  startAnnounced,
  track,
} from "./support/processes.ts";
import { until } from "./support/wait.ts";

const ENV = { ...process.env, GPU_NODE_LOG_LEVEL: "info", GLIBC_TUNABLES: GPU_NODE_GLIBC_TUNABLES };

/** Starts the gpu-node CLI and resolves at the log line `at` (the point of its life to stop it). */
function startUntil(
  args: readonly string[],
  at: (line: LogLine) => boolean,
  opts: { group?: boolean } = {},
): Promise<Announced> {
  return startAnnounced(GPU_NODE, {
    args: ["--host", "127.0.0.1", "--port", "0", ...args],
    env: ENV,
    isReady: at,
    what: "gpu-node",
    detached: opts.group === true,
  });
}

const msg = (m: string) => (e: LogLine) => e.msg === m;

/** Sends SIGTERM, then checks the exit and that no process it started outlives it. */
async function stopAndCheck(run: Announced, opts: { group?: boolean } = {}): Promise<void> {
  const family = descendants(run.pid).map((d) => d.pid);
  if (opts.group) process.kill(-run.pid, "SIGTERM");
  else run.child.kill("SIGTERM");
  const exit = await run.exited;
  expect(exit, run.output()).toEqual({ code: 0, signal: null });
  expect(run.output()).not.toContain("shutdown failed");
  expect(run.output()).not.toContain("TypeError");
  // Workers leave with their primary (they drain on its word): none may linger. One that already
  // got its drain may need a moment to exit.
  const gone = (pid: number) => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  };
  for (const pid of family) {
    await until(() => gone(pid), { timeoutMs: 5000 }).catch(() => {});
    expect(() => process.kill(pid, 0), `worker ${pid} outlived its primary`).toThrow();
  }
}

const CLUSTER = ["--model", "vit-tiny", "--threads", "1", "--processes", "2", "--no-metrics"];

describe("SIGTERM at every point of a gpu-node's life (2 worker processes)", () => {
  it("as the process starts, before any log line", async () => {
    const child = track(
      spawn(process.execPath, [GPU_NODE, "--port", "0", ...CLUSTER], { env: ENV, stdio: "pipe" }),
    );
    let output = "";
    child.stdout!.on("data", (c: Buffer) => {
      output += c;
    });
    child.stderr!.on("data", (c: Buffer) => {
      output += c;
    });
    await new Promise<void>((done) => child.once("spawn", () => done()));
    // The handler is installed by main.ts; a signal before that kills the process by default
    // (also a clean stop: nothing was opened yet). Either way: no crash output, no orphans.
    child.kill("SIGTERM");
    const [code, signal] = (await new Promise((done) => child.once("exit", (...a) => done(a)))) as [
      number | null,
      NodeJS.Signals | null,
    ];
    expect(code === 0 || signal === "SIGTERM", output).toBe(true);
    expect(output).not.toContain("shutdown failed");
  });

  it.each([
    ["the model file is ready", msg("model file ready")],
    ["the model is loaded", msg("model loaded")],
    ["the first worker listens", msg("worker listening")],
    ["the node listens", msg("listening")],
  ])("when %s", async (_name, at) => {
    await stopAndCheck(await startUntil(CLUSTER, at));
  });

  it("right after serving, and with calls in flight", async () => {
    const run = await startUntil(CLUSTER, msg("listening"));
    const client = embedderClient(run.ready.url as string, "grpc");
    const image = await photo(640, 480, 3);
    await client.embed({ images: [{ id: "warm", data: image }] });
    const calls = Array.from({ length: 6 }, (_, i) =>
      client.embed({ images: [{ id: `c${i}`, data: image }] }).then(
        () => "ok",
        () => "refused",
      ),
    );
    await stopAndCheck(run);
    // Calls that reached the node before the drain were served; later ones got a clean refusal.
    expect((await Promise.all(calls)).every((r) => r === "ok" || r === "refused")).toBe(true);
  });

  it("sent to the whole process group right after serving (Ctrl-C, `timeout`, some inits)", async () => {
    for (let round = 0; round < 3; round++) {
      const run = await startUntil(CLUSTER, msg("listening"), { group: true });
      await embedderClient(run.ready.url as string, "grpc").embed({
        images: [{ id: "a", data: await photo(320, 240, round) }],
      });
      await stopAndCheck(run, { group: true });
    }
  });

  it("while a killed worker is being replaced", async () => {
    const run = await startUntil(CLUSTER, msg("listening"));
    const worker = run.logs.find(msg("worker listening"))!.pid as number;
    process.kill(worker, "SIGKILL");
    await run.waitFor(msg("worker exited: starting a replacement"));
    await stopAndCheck(run);
  });

  it("once started with one process and the noop backend, too", async () => {
    await stopAndCheck(
      await startUntil(["--backend", "noop", "--processes", "1", "--no-metrics"], msg("listening")),
    );
  });
});
