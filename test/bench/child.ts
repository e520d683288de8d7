/** Child processes for the benchmarks: the gpu-node CLI (parsed "listening" line) and /proc readings of a pid. */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import type { OrtChildInput, OrtStep, OrtStepResult } from "./ort-child.ts";

export const ROOT = resolve(import.meta.dirname, "../..");
const SERVER = resolve(ROOT, "gpu-node/main.ts");
/** Linux clock ticks per second for /proc/<pid>/stat times (100 on every mainstream kernel). */
const CLK_TCK = 100;

export interface GpuNodeChild {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly url: string;
  /** The start-up log lines (up to "listening"). */
  readonly startLog: readonly Record<string, unknown>[];
  /** Milliseconds from spawn to the "listening" line. */
  readonly startMs: number;
  /** Last bytes of stdout/stderr after start-up, for diagnostics. */
  tail(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
  stop(graceMs?: number): Promise<void>;
}

/** Children started here and not yet exited: killed if this process exits first (e.g. on Ctrl-C). */
const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once("exit", () => live.delete(child));
  return child;
}

/** Keeps the last `max` characters of a stream without parsing it (the child's logs must keep flowing). */
function ring(max: number) {
  let text = "";
  return {
    push(chunk: string) {
      text = (text + chunk).slice(-max);
    },
    get: () => text,
  };
}

async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  try {
    await exited;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Starts `node gpu-node/main.ts --port 0 ...args` (the Node running this script) and waits for
 * its "listening" JSON log line. The child is killed if it does not start in `startTimeoutMs`.
 */
export async function startGpuNodeChild(
  args: readonly string[],
  { startTimeoutMs = 120_000, script = SERVER }: { startTimeoutMs?: number; script?: string } = {},
): Promise<GpuNodeChild> {
  const t0 = performance.now();
  const child = track(
    spawn(process.execPath, [script, "--port", "0", "--host", "127.0.0.1", ...args], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, GPU_NODE_LOG_LEVEL: "info" },
    }),
  );
  const out = ring(16_384);
  const err = ring(16_384);
  child.stderr!.setEncoding("utf8").on("data", (c: string) => err.push(c));
  const startLog: Record<string, unknown>[] = [];
  const lines = createInterface({ input: child.stdout! });
  try {
    const url = await new Promise<string>((resolveUrl, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`gpu-node did not start in ${startTimeoutMs} ms`)),
        startTimeoutMs,
      );
      child.once("error", reject);
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`gpu-node exited early (${code ?? signal}): ${err.get().slice(-2000)}`));
      });
      lines.on("line", (line) => {
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line) as Record<string, unknown>;
        } catch {
          return;
        }
        startLog.push(entry);
        if (entry.msg === "listening" && typeof entry.url === "string") {
          clearTimeout(timer);
          resolveUrl(entry.url);
        }
      });
    });
    // From here on the per-call log lines are only drained (parsing them would cost the
    // benchmark process CPU that the server competes for on a small machine).
    lines.removeAllListeners("line");
    lines.close();
    child.stdout!.setEncoding("utf8").on("data", (c: string) => out.push(c));
    child.stdout!.resume();
    return {
      child,
      pid: child.pid!,
      url,
      startLog,
      startMs: performance.now() - t0,
      tail: () => `${out.get().slice(-3000)}\n${err.get().slice(-3000)}`,
      stop: (graceMs = 15_000) => stopChild(child, graceMs),
    };
  } catch (error) {
    await stopChild(child, 2000);
    throw error;
  }
}

export interface OrtWorker {
  readonly pid: number;
  readonly loadMs: number;
  /** Runs one step (nothing else runs in that process meanwhile). */
  run(step: OrtStep): Promise<OrtStepResult>;
  /** Closes the session and waits for the process to exit; returns its peak RSS (MiB). */
  finish(): Promise<number>;
  /** Kills the process if it is still running. */
  kill(): Promise<void>;
}

/** Starts test/bench/ort-child.ts (a bare ONNX Runtime session) and waits until it is loaded. */
export async function startOrtWorker(
  input: OrtChildInput,
  timeoutMs = 120_000,
): Promise<OrtWorker> {
  const script = resolve(import.meta.dirname, "ort-child.ts");
  const child = track(
    spawn(process.execPath, [script, JSON.stringify(input)], {
      cwd: ROOT,
      stdio: ["pipe", "pipe", "pipe"],
    }),
  );
  const err = ring(8192);
  child.stderr!.setEncoding("utf8").on("data", (c: string) => err.push(c));
  const replies: string[] = [];
  let waiter: ((line: string | undefined) => void) | undefined;
  let ended = false;
  const lines = createInterface({ input: child.stdout! });
  lines.on("line", (line) => {
    if (waiter) {
      const w = waiter;
      waiter = undefined;
      w(line);
    } else replies.push(line);
  });
  lines.on("close", () => {
    ended = true;
    waiter?.(undefined);
  });
  /** The next JSON line, or an error naming the child's stderr if it ended or took too long. */
  const next = async <T>(what: string): Promise<T> => {
    const line =
      replies.shift() ??
      (ended
        ? undefined
        : await new Promise<string | undefined>((resolveLine, reject) => {
            const timer = setTimeout(() => {
              waiter = undefined;
              reject(new Error(`ort-child: no ${what} in ${timeoutMs} ms`));
            }, timeoutMs);
            waiter = (l) => {
              clearTimeout(timer);
              resolveLine(l);
            };
          }));
    if (line === undefined) throw new Error(`ort-child ended before ${what}: ${err.get()}`);
    return JSON.parse(line) as T;
  };
  const kill = () => stopChild(child, 1000);
  try {
    const ready = await next<{ ready: boolean; loadMs: number }>("ready line");
    return {
      pid: child.pid!,
      loadMs: ready.loadMs,
      async run(step) {
        child.stdin!.write(`${JSON.stringify(step)}\n`);
        return next<OrtStepResult>(`result for batch ${step.batch}`);
      },
      async finish() {
        child.stdin!.end();
        const done = await next<{ done: boolean; peakRssMiB: number }>("done line");
        if (child.exitCode === null && child.signalCode === null) await once(child, "exit");
        return done.peakRssMiB;
      },
      kill,
    };
  } catch (error) {
    await kill();
    throw error;
  }
}

/** CPU seconds (user + system) the process has used so far, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name, which may itself contain spaces or parentheses.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of the full line, i.e. 11 and 12 after "state".
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/**
 * CPU seconds the whole machine has been busy (all CPUs; user, nice, system, irq, softirq,
 * steal), from /proc/stat: minus our own processes' CPU, it tells how much other work ran.
 */
export function machineBusySeconds(): number {
  const cpu = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/);
  const [user, nice, system, _idle, _iowait, irq, softirq, steal] = cpu.slice(1).map(Number);
  return (user! + nice! + system! + irq! + softirq! + (steal ?? 0)) / CLK_TCK;
}

/** VmHWM (peak resident set) and VmRSS of a process, in MiB, from /proc/<pid>/status. */
export function memoryMiB(pid: number): { peakRss: number; rss: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return { peakRss: kb("VmHWM") / 1024, rss: kb("VmRSS") / 1024 };
}

/** This process's CPU seconds so far (all threads: sharp's and ORT's pools included). */
export function ownCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}
