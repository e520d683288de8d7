// A gpu-node stopped with SIGTERM (what a container stop sends) at every point of its life: as
// the process starts, when the model file is ready, when the model is loaded, as the workers
// listen, right after it serves, with calls in flight, and while a dead worker is replaced. Each
// time it must exit 0 without "shutdown failed", and leave no worker process behind.
import { type ChildProcess, spawn } from "node:child_process";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { describe, expect, it } from "vitest";
import { embedderClient } from "./support/gpu-node-client.ts";
import { photo } from "./support/images.ts";
import { descendants } from "./support/proc.ts";
import { GPU_NODE_GLIBC_TUNABLES } from "./support/processes.ts";

const ROOT = resolve(import.meta.dirname, "..");
const MAIN = resolve(ROOT, "gpu-node/main.ts");

interface Run {
  readonly child: ChildProcess;
  /** Every log line so far, parsed. */
  readonly logs: Record<string, unknown>[];
  output(): string;
  /** Resolves with the first log line whose msg is `msg` (or that `match` accepts). */
  until(match: (entry: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(args: string[], opts: { group?: boolean } = {}): Run {
  const child = spawn(process.execPath, [MAIN, "--host", "127.0.0.1", "--port", "0", ...args], {
    cwd: ROOT,
    // Its own process group, so that a test can signal the node and its workers at once.
    detached: opts.group === true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, GPU_NODE_LOG_LEVEL: "info", GLIBC_TUNABLES: GPU_NODE_GLIBC_TUNABLES },
  });
  const logs: Record<string, unknown>[] = [];
  const waiters: {
    match: (e: Record<string, unknown>) => boolean;
    done: (e: Record<string, unknown>) => void;
  }[] = [];
  let text = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (c: string) => {
    text += c;
  });
  createInterface({ input: child.stdout! }).on("line", (line) => {
    text += `${line}\n`;
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      entry = { raw: line };
    }
    logs.push(entry);
    for (const w of [...waiters]) {
      if (w.match(entry)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.done(entry);
      }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    child.once("exit", (code, signal) => done({ code, signal })),
  );
  return {
    child,
    logs,
    output: () => text,
    exited,
    until(match) {
      const seen = logs.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((done, fail) => {
        waiters.push({ match, done });
        void exited.then((e) =>
          fail(new Error(`exited (${e.signal ?? e.code}) before the log line:\n${text}`)),
        );
      });
    },
  };
}

const msg = (m: string) => (e: Record<string, unknown>) => e.msg === m;

/** Sends SIGTERM, then checks the exit and that no process it started outlives it. */
async function stopAndCheck(run: Run, opts: { group?: boolean } = {}): Promise<void> {
  const family = descendants(run.child.pid!).map((d) => d.pid);
  if (opts.group) process.kill(-run.child.pid!, "SIGTERM");
  else run.child.kill("SIGTERM");
  const exit = await run.exited;
  expect(exit, run.output()).toEqual({ code: 0, signal: null });
  expect(run.output()).not.toContain("shutdown failed");
  expect(run.output()).not.toContain("TypeError");
  // Workers leave with their primary (they drain on its word): none may linger.
  for (const pid of family) {
    await new Promise<void>((done) => {
      const gone = () => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      };
      if (gone()) return done();
      // A worker that already got its drain may need a moment to exit: poll its pid, bounded.
      let tries = 0;
      const timer = setInterval(() => {
        if (gone() || ++tries > 500) {
          clearInterval(timer);
          done();
        }
      }, 10);
    });
    expect(() => process.kill(pid, 0), `worker ${pid} outlived its primary`).toThrow();
  }
}

const CLUSTER = ["--model", "vit-tiny", "--threads", "1", "--processes", "2", "--no-metrics"];

describe("SIGTERM at every point of a gpu-node's life (2 worker processes)", () => {
  it("as the process starts, before any log line", async () => {
    const run = start(CLUSTER);
    await new Promise<void>((done) => run.child.once("spawn", () => done()));
    // The handler is installed by main.ts; a signal before that kills the process by default
    // (also a clean stop: nothing was opened yet). Either way: no crash output, no orphans.
    run.child.kill("SIGTERM");
    const exit = await run.exited;
    expect(exit.code === 0 || exit.signal === "SIGTERM", run.output()).toBe(true);
    expect(run.output()).not.toContain("shutdown failed");
  });

  it.each([
    ["the model file is ready", msg("model file ready")],
    ["the model is loaded", msg("model loaded")],
    ["the first worker listens", msg("worker listening")],
    ["the node listens", msg("listening")],
  ])("when %s", async (_name, at) => {
    const run = start(CLUSTER);
    await run.until(at);
    await stopAndCheck(run);
  });

  it("right after serving, and with calls in flight", async () => {
    const run = start(CLUSTER);
    const { url } = (await run.until(msg("listening"))) as { url: string };
    const client = embedderClient(url, "grpc");
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
      const run = start(CLUSTER, { group: true });
      const { url } = (await run.until(msg("listening"))) as { url: string };
      await embedderClient(url, "grpc").embed({
        images: [{ id: "a", data: await photo(320, 240, round) }],
      });
      await stopAndCheck(run, { group: true });
    }
  });

  it("while a killed worker is being replaced", async () => {
    const run = start(CLUSTER);
    await run.until(msg("listening"));
    const worker = run.logs.find(msg("worker listening"))!.pid as number;
    process.kill(worker, "SIGKILL");
    await run.until(msg("worker exited: starting a replacement"));
    await stopAndCheck(run);
  });

  it("once started with one process and the noop backend, too", async () => {
    const run = start(["--backend", "noop", "--processes", "1", "--no-metrics"]);
    await run.until(msg("listening"));
    await stopAndCheck(run);
  });
});
