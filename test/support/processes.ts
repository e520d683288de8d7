/** Real processes for reliability tests: the gpu-node CLI (every JSON log line kept, RSS of its process tree, stop/kill by handle) and /proc readings; children still running when the test process exits are killed. */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { createInterface } from "node:readline";

const ROOT = resolve(import.meta.dirname, "../..");
const SERVER = resolve(ROOT, "gpu-node/main.ts");

/**
 * glibc's allocator keeps libvips' large transient buffers in per-thread arenas: under odd inputs
 * (fuzz mutants of up to the pixel limit) a gpu-node's RSS climbed 405 → 1,151 MB over five passes
 * and kept climbing; with these tunables it stayed at 363 → 452 MB (README, Reliability). Tests run
 * the gpu-node as the README tells operators to.
 */
export const GPU_NODE_GLIBC_TUNABLES =
  "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=131072";

/** Children started here and still running: killed if the test process exits first. */
const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface GpuNodeProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly url: string;
  readonly port: number;
  /** Every stdout line parsed as JSON (pino), in order; non-JSON lines as { raw }. */
  readonly logs: Record<string, unknown>[];
  /** Everything it wrote to stdout and stderr, verbatim. */
  output(): string;
  /** Resident memory of the process and its descendants, bytes. */
  rss(): number;
  readonly exited: Promise<Exit>;
  alive(): boolean;
  /** Sends `signal` and waits for the exit (SIGKILL after `graceMs`). */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<Exit>;
}

/**
 * Starts `node gpu-node/main.ts --host 127.0.0.1 --port <port> ...args` and resolves once it
 * logs "listening". `env` adds to this process's environment (use it for the token).
 */
export async function spawnGpuNode(
  args: readonly string[],
  opts: { env?: Record<string, string>; port?: number; startTimeoutMs?: number } = {},
): Promise<GpuNodeProcess> {
  const child = spawn(
    process.execPath,
    [SERVER, "--host", "127.0.0.1", "--port", String(opts.port ?? 0), "--no-metrics", ...args],
    {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        GPU_NODE_LOG_LEVEL: "info",
        GLIBC_TUNABLES: GPU_NODE_GLIBC_TUNABLES,
        ...opts.env,
      },
    },
  );
  live.add(child);
  const exited = new Promise<Exit>((done) => {
    child.once("exit", (code, signal) => {
      live.delete(child);
      done({ code, signal });
    });
  });
  const logs: Record<string, unknown>[] = [];
  let text = "";
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (chunk: string) => {
    text += chunk;
  });
  const lines = createInterface({ input: child.stdout! });
  const url = await new Promise<string>((resolveUrl, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`gpu-node did not start in time:\n${text.slice(-4000)}`));
    }, opts.startTimeoutMs ?? 60_000);
    void exited.then((e) => {
      clearTimeout(timer);
      reject(new Error(`gpu-node exited early (${e.signal ?? e.code}):\n${text.slice(-4000)}`));
    });
    lines.on("line", (line) => {
      text += `${line}\n`;
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        entry = { raw: line };
      }
      logs.push(entry);
      if (entry.msg === "listening" && typeof entry.url === "string") {
        clearTimeout(timer);
        resolveUrl(entry.url);
      }
    });
  });
  const pid = child.pid!;
  let exit: Exit | undefined;
  void exited.then((e) => {
    exit = e;
  });
  return {
    child,
    pid,
    url,
    port: Number(new URL(url).port),
    logs,
    output: () => text,
    rss: () => treeRss(pid),
    exited,
    alive: () => exit === undefined,
    async stop(signal = "SIGTERM", graceMs = 15_000) {
      if (exit !== undefined) return exit;
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** Waits for `child` to exit after `signal` (SIGKILL after `graceMs`); no-op if it already has. */
export async function stopChild(
  child: ChildProcess,
  signal: NodeJS.Signals = "SIGTERM",
  graceMs = 10_000,
): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}

/** VmRSS of one process in bytes (0 once it is gone). */
export function rssOf(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return kb ? Number(kb[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Every descendant of `pid` (children of children…), from /proc. */
export function descendants(pid: number): { pid: number; name: string }[] {
  const parent = new Map<number, number>();
  const names = new Map<number, string>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // pid (comm) state ppid …; comm may hold spaces and parentheses.
      const close = stat.lastIndexOf(")");
      const name = stat.slice(stat.indexOf("(") + 1, close);
      const ppid = Number(stat.slice(close + 2).split(" ")[1]);
      parent.set(Number(entry), ppid);
      names.set(Number(entry), name);
    } catch {
      // exited meanwhile
    }
  }
  const out: { pid: number; name: string }[] = [];
  const walk = (p: number) => {
    for (const [child, pp] of parent) {
      if (pp === p) {
        out.push({ pid: child, name: names.get(child) ?? "" });
        walk(child);
      }
    }
  };
  walk(pid);
  return out;
}

/** RSS of `pid` and all its descendants, bytes. */
export function treeRss(pid: number): number {
  return rssOf(pid) + descendants(pid).reduce((n, d) => n + rssOf(d.pid), 0);
}

/** RSS of this process's workerd descendants (the edge Worker started by wrangler), bytes. */
export function workerdRss(): number {
  return descendants(process.pid)
    .filter((d) => d.name.startsWith("workerd"))
    .reduce((n, d) => n + rssOf(d.pid), 0);
}

export const MiB = 1024 * 1024;

export interface DoubleProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly exited: Promise<Exit>;
}

/**
 * The KServe v2 test double (test/support/kserve-double.ts) as its own process, as Triton is:
 * it can be SIGKILLed, or frozen with SIGSTOP (a stalled backend: connections open, no answers).
 */
export async function spawnKServeDouble(
  model: { name: string; path: string; maxBatch?: number },
  port = 0,
): Promise<DoubleProcess> {
  const child = spawn(
    process.execPath,
    [
      resolve(ROOT, "test/support/kserve-double.ts"),
      "--port",
      String(port),
      "--model",
      `name=${model.name},path=${model.path},layout=uint8-nhwc,max-batch=${model.maxBatch ?? 8}`,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  live.add(child);
  const exited = new Promise<Exit>((done) => {
    child.once("exit", (code, signal) => {
      live.delete(child);
      done({ code, signal });
    });
  });
  const line = await new Promise<string>((resolveLine, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error("the KServe double did not start in 30 s"));
    }, 30_000);
    void exited.then((e) => {
      clearTimeout(timer);
      reject(new Error(`the KServe double exited early (${e.signal ?? e.code})`));
    });
    createInterface({ input: child.stdout! }).once("line", (l) => {
      clearTimeout(timer);
      resolveLine(l);
    });
  });
  return { child, port: (JSON.parse(line) as { port: number }).port, exited };
}
