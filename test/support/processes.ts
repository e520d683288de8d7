/** Child processes for tests and benchmarks: starts a tool that announces itself with a JSON line on stdout (the gpu-node CLI, the KServe v2 double, the edge under wrangler), keeps or drains its output, waits for its log lines, stops it by handle; children still running when this process exits are killed. /proc readings are in proc.ts. */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { NODE_FLAGS as GPU_NODE_FLAGS } from "../../gpu-node/config.ts";
import { treeRss } from "./proc.ts";

export const ROOT = resolve(import.meta.dirname, "../..");
export const GPU_NODE = resolve(ROOT, "gpu-node/main.ts");
const KSERVE_DOUBLE = resolve(ROOT, "test/support/kserve-double.ts");
/** The double behind a 16 MiB HTTP/2 connection window (see the file: the benchmark's Triton). */
const KSERVE_DOUBLE_OPEN_WINDOW = resolve(ROOT, "test/bench/e2e/double-child.ts");

/**
 * glibc's allocator keeps libvips' large transient buffers in per-thread arenas: under odd inputs
 * (fuzz mutants of up to the pixel limit) a gpu-node's RSS climbed 405 → 1,151 MB over five passes
 * and kept climbing; with these tunables it stayed at 363 → 452 MB (README, Reliability). Tests run
 * the gpu-node as the README tells operators to.
 */
export const GPU_NODE_GLIBC_TUNABLES =
  "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=131072";

/** Children started here and still running: killed if this process exits first (e.g. Ctrl-C). */
const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

/** Kills `child` if this process exits before it does. */
export function track<T extends ChildProcess>(child: T): T {
  live.add(child);
  child.once("exit", () => live.delete(child));
  return child;
}

export interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** Sends `signal` and waits for the exit (SIGKILL after `graceMs`); at once if it already has. */
export async function stopChild(
  child: ChildProcess,
  signal: NodeJS.Signals = "SIGTERM",
  graceMs = 10_000,
): Promise<Exit> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return { code: child.exitCode, signal: child.signalCode };
  }
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  try {
    const [code, sig] = await exited;
    return { code, signal: sig };
  } finally {
    clearTimeout(timer);
  }
}

/** The last `max` characters of a stream, without parsing it. */
export function keepTail(max: number): { push(chunk: string): void; get(): string } {
  let text = "";
  return {
    push(chunk) {
      text = (text + chunk).slice(-max);
    },
    get: () => text,
  };
}

export type LogLine = Record<string, unknown>;

/** A child that announced itself with a JSON line. */
export interface Announced {
  readonly child: ChildProcess;
  readonly pid: number;
  /** The JSON line it announced itself with. */
  readonly ready: LogLine;
  /** Milliseconds from spawn to that line. */
  readonly startMs: number;
  /** Its stdout lines as JSON (others as { raw }), in order: all with keepLogs, else up to `ready`. */
  readonly logs: LogLine[];
  /** What it wrote to stdout and stderr: all of it with keepLogs, else the last 16 KiB of each. */
  output(): string;
  readonly exited: Promise<Exit>;
  alive(): boolean;
  /** The first log line, seen or to come, that matches (with keepLogs). */
  waitFor(match: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Sends `signal` and waits for the exit (SIGKILL after `graceMs`). */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<Exit>;
}

export interface StartOptions {
  readonly args?: readonly string[];
  /** Node's own flags, before the script (`node ...nodeArgs script ...args`). */
  readonly nodeArgs?: readonly string[];
  /** The child's whole environment (default: this process's). */
  readonly env?: NodeJS.ProcessEnv;
  /** Which stdout line announces that it is ready. */
  readonly isReady: (line: LogLine) => boolean;
  /** Its name in errors. */
  readonly what: string;
  readonly startTimeoutMs?: number;
  /**
   * true (tests): every later line is parsed and kept. false (benchmarks): later output is only
   * drained into a tail, since parsing it costs CPU that the measured server competes for.
   */
  readonly keepLogs?: boolean;
  /** Its own process group, so that a test can signal it and its children at once. */
  readonly detached?: boolean;
}

/** Starts `node [...nodeArgs] script ...args` (the Node running this) and resolves once it announces itself. */
export async function startAnnounced(script: string, opts: StartOptions): Promise<Announced> {
  const keepLogs = opts.keepLogs ?? true;
  const t0 = performance.now();
  const child = track(
    spawn(process.execPath, [...(opts.nodeArgs ?? []), script, ...(opts.args ?? [])], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      env: opts.env ?? process.env,
      detached: opts.detached === true,
    }),
  );
  const exited = new Promise<Exit>((done) => {
    child.once("exit", (code, signal) => done({ code, signal }));
  });
  let exit: Exit | undefined;
  void exited.then((e) => {
    exit = e;
  });
  let text = "";
  const out = keepTail(16_384);
  const err = keepTail(16_384);
  const output = () => (keepLogs ? text : `${out.get()}\n${err.get()}`);
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    if (keepLogs) text += chunk;
    else err.push(chunk);
  });
  const logs: LogLine[] = [];
  const waiters = new Set<(line: LogLine) => void>();
  let readyLine: LogLine | undefined;
  const lines = createInterface({ input: child.stdout! });
  const startTimeoutMs = opts.startTimeoutMs ?? 120_000;
  const ready = new Promise<LogLine>((resolveReady, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new Error(
            `${opts.what} did not start in ${startTimeoutMs} ms:\n${output().slice(-4000)}`,
          ),
        ),
      startTimeoutMs,
    );
    child.once("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    void exited.then((e) => {
      clearTimeout(timer);
      reject(
        new Error(`${opts.what} exited early (${e.signal ?? e.code}):\n${output().slice(-4000)}`),
      );
    });
    lines.on("line", (line) => {
      if (keepLogs) text += `${line}\n`;
      else out.push(`${line}\n`);
      let entry: LogLine;
      try {
        entry = JSON.parse(line) as LogLine;
      } catch {
        entry = { raw: line };
      }
      logs.push(entry);
      for (const w of waiters) w(entry);
      if (readyLine === undefined && opts.isReady(entry)) {
        readyLine = entry;
        clearTimeout(timer);
        resolveReady(entry);
      }
    });
  });
  let readyEntry: LogLine;
  try {
    readyEntry = await ready;
  } catch (error) {
    await stopChild(child, "SIGKILL");
    throw error;
  }
  if (!keepLogs) {
    lines.removeAllListeners("line");
    lines.close();
    child.stdout!.setEncoding("utf8").on("data", (c: string) => out.push(c));
    child.stdout!.resume();
  }
  const waitFor = (match: (line: LogLine) => boolean, timeoutMs = 60_000) =>
    new Promise<LogLine>((resolveLine, reject) => {
      const seen = logs.find(match);
      if (seen) return resolveLine(seen);
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`${opts.what}: no matching log line in ${timeoutMs} ms`));
      }, timeoutMs);
      const check = (line: LogLine) => {
        if (!match(line)) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolveLine(line);
      };
      waiters.add(check);
    });
  return {
    child,
    pid: child.pid!,
    ready: readyEntry,
    startMs: performance.now() - t0,
    logs,
    output,
    exited,
    alive: () => exit === undefined,
    waitFor,
    stop: (signal = "SIGTERM", graceMs = 15_000) => stopChild(child, signal, graceMs),
  };
}

export interface GpuNodeProcess extends Announced {
  readonly url: string;
  readonly port: number;
  /** Resident memory of the process and its descendants, bytes. */
  rss(): number;
}

export interface GpuNodeOptions {
  /** Added to this process's environment (use it for the token). */
  readonly env?: Record<string, string>;
  readonly port?: number;
  readonly startTimeoutMs?: number;
  /** Serve /metrics as configured (default: --no-metrics, tests run many nodes at once). */
  readonly metrics?: boolean;
  /** Run under GPU_NODE_GLIBC_TUNABLES, as operators do (default true). */
  readonly glibcTunables?: boolean;
  /** See StartOptions.keepLogs (default true). */
  readonly keepLogs?: boolean;
  /**
   * GPU_NODE_LOG_LEVEL (default debug: tests read the "call" line of every call, which a served
   * call logs at debug only).
   */
  readonly logLevel?: "debug" | "info";
  /** The script to run instead of gpu-node/main.ts; it takes the same flags (benchmarks' stand-ins). */
  readonly entry?: string;
  /** Node's own flags (default: NODE_FLAGS in gpu-node/config.ts, as every launcher passes). */
  readonly nodeArgs?: readonly string[];
}

/**
 * How the benchmarks start the gpu-node (as they did before the harness was merged): its metrics
 * and log level as configured by default, no allocator tunables, its log lines drained, not parsed.
 */
export const BENCH_GPU_NODE: GpuNodeOptions = {
  metrics: true,
  glibcTunables: false,
  keepLogs: false,
  logLevel: "info",
};

/**
 * Starts `node gpu-node/main.ts --host 127.0.0.1 --port <port> ...args` (or `opts.entry` with the
 * same arguments; at log level debug unless `opts.logLevel` says otherwise) and resolves once it
 * logs "listening".
 */
export async function spawnGpuNode(
  args: readonly string[],
  opts: GpuNodeOptions = {},
): Promise<GpuNodeProcess> {
  const node = await startAnnounced(opts.entry ?? GPU_NODE, {
    nodeArgs: opts.nodeArgs ?? GPU_NODE_FLAGS,
    args: [
      "--host",
      "127.0.0.1",
      "--port",
      String(opts.port ?? 0),
      ...(opts.metrics ? [] : ["--no-metrics"]),
      ...args,
    ],
    env: {
      ...process.env,
      GPU_NODE_LOG_LEVEL: opts.logLevel ?? "debug",
      ...(opts.glibcTunables === false ? {} : { GLIBC_TUNABLES: GPU_NODE_GLIBC_TUNABLES }),
      ...opts.env,
    },
    isReady: (l) => l.msg === "listening" && typeof l.url === "string",
    what: "gpu-node",
    ...(opts.startTimeoutMs !== undefined ? { startTimeoutMs: opts.startTimeoutMs } : {}),
    ...(opts.keepLogs !== undefined ? { keepLogs: opts.keepLogs } : {}),
  });
  const url = node.ready.url as string;
  return { ...node, url, port: Number(new URL(url).port), rss: () => treeRss(node.pid) };
}

export interface DoubleModel {
  readonly name: string;
  readonly path: string;
  readonly layout?: "uint8-nhwc" | "float32-nchw";
  readonly maxBatch?: number;
}

export interface KServeDoubleProcess extends Announced {
  readonly port: number;
  readonly url: string;
}

/**
 * The KServe v2 test double (test/support/kserve-double.ts) as its own process, as Triton is: it
 * can be SIGKILLed, or frozen with SIGSTOP (a stalled backend: connections open, no answers).
 * Models default to uint8-nhwc, max batch 8. `openWindow` runs it behind a 16 MiB HTTP/2
 * connection window, as the end-to-end benchmark does (test/bench/e2e/double-child.ts).
 */
export async function spawnKServeDouble(
  models: DoubleModel | readonly DoubleModel[],
  opts: { port?: number; threads?: number; openWindow?: boolean; keepLogs?: boolean } = {},
): Promise<KServeDoubleProcess> {
  const list = Array.isArray(models) ? models : [models as DoubleModel];
  const double = await startAnnounced(opts.openWindow ? KSERVE_DOUBLE_OPEN_WINDOW : KSERVE_DOUBLE, {
    args: [
      "--port",
      String(opts.port ?? 0),
      ...(opts.threads !== undefined ? ["--threads", String(opts.threads)] : []),
      ...list.flatMap((m) => [
        "--model",
        `name=${m.name},path=${m.path},layout=${m.layout ?? "uint8-nhwc"},max-batch=${m.maxBatch ?? 8}`,
      ]),
    ],
    isReady: (l) => typeof l.port === "number",
    what: "the KServe double",
    ...(opts.keepLogs !== undefined ? { keepLogs: opts.keepLogs } : {}),
  });
  const port = double.ready.port as number;
  return { ...double, port, url: `http://127.0.0.1:${port}` };
}
