/** The end-to-end benchmark's servers as child processes: the edge (wrangler's dev runtime), the KServe v2 test double, the FP32 model files it needs; plus CPU readings of whole process trees. */
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, readdirSync, readFileSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { toFloat32NchwInput } from "../../../gpu-node/model/float32-input.ts";
import { cachedModelPath, ensureModel, writeFileAtomic } from "../../../gpu-node/model/index.ts";
import { cpuSeconds, ROOT } from "../child.ts";

/** Children started here and still running: killed if this process exits first. */
const live = new Set<ChildProcess>();
process.on("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once("exit", () => live.delete(child));
  return child;
}

/** Keeps the last characters of a stream for error messages. */
function tail(child: ChildProcess, max = 4000): () => string {
  let text = "";
  const push = (c: Buffer | string) => {
    text = (text + String(c)).slice(-max);
  };
  child.stdout?.on("data", push);
  child.stderr?.on("data", push);
  return () => text;
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

// ---------------------------------------------------------------------------------------------
// CPU of process trees (wrangler runs workerd as its child)

function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined; // gone
  }
}

/** `root` and every live descendant. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const ppid = parentOf(pid);
    if (ppid === undefined) continue;
    const list = children.get(ppid) ?? [];
    list.push(pid);
    children.set(ppid, list);
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0 && out.length < 10_000) {
    const pid = stack.pop()!;
    out.push(pid);
    stack.push(...(children.get(pid) ?? []));
  }
  return out;
}

/** CPU seconds used so far by the live processes of a tree (exited ones are not counted). */
export function treeCpuSeconds(root: number): number {
  let total = 0;
  for (const pid of processTree(root)) {
    try {
      total += cpuSeconds(pid);
    } catch {
      // exited meanwhile
    }
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// The edge (wrangler's dev runtime, in e2e/edge-child.ts)

export interface EdgeDev {
  readonly url: string;
  readonly pid: number;
  readonly startMs: number;
  tail(): string;
  stop(): Promise<void>;
}

/** Resolves with the first JSON line of `child` that has `key`, or rejects when it exits or times out. */
function readyLine<T>(
  child: ChildProcess,
  key: string,
  what: string,
  output: () => string,
  timeoutMs: number,
) {
  return new Promise<T>((resolveLine, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${what} did not start: ${output()}`)),
      timeoutMs,
    );
    child.once("exit", () => {
      clearTimeout(timer);
      reject(new Error(`${what} exited: ${output()}`));
    });
    createInterface({ input: child.stdout! }).on("line", (line) => {
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        if (key in parsed) {
          clearTimeout(timer);
          resolveLine(parsed as T);
        }
      } catch {
        // not the ready line
      }
    });
  });
}

/**
 * The edge Worker from the project's wrangler.toml under wrangler's dev runtime (workerd and the
 * local Images binding, as `npm start` runs it), offline and quiet, its state and config in the
 * ignored cache, not watching the sources. `vars` reach it through its environment.
 */
export async function startEdgeDev(
  name: string,
  vars: Record<string, string>,
  cacheDir: string,
  startTimeoutMs = 90_000,
): Promise<EdgeDev> {
  const t0 = performance.now();
  const dir = join(cacheDir, "bench", "edge", name);
  mkdirSync(dir, { recursive: true });
  const child = track(
    spawn(
      process.execPath,
      [
        resolve(import.meta.dirname, "edge-child.ts"),
        "--port",
        "0",
        "--persist-to",
        join(dir, "state"),
      ],
      {
        cwd: ROOT,
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          ...process.env,
          EDGE_VARS: JSON.stringify(vars),
          WRANGLER_SEND_METRICS: "false",
          WRANGLER_SEND_ERROR_REPORTS: "false",
          WRANGLER_HIDE_BANNER: "true",
          CLOUDFLARE_CF_FETCH_ENABLED: "false",
          XDG_CONFIG_HOME: join(cacheDir, "xdg/config"),
          XDG_CACHE_HOME: join(cacheDir, "xdg/cache"),
          XDG_DATA_HOME: join(cacheDir, "xdg/data"),
        },
      },
    ),
  );
  const output = tail(child);
  const stop = () => stopChild(child, 5000);
  try {
    const { url } = await readyLine<{ url: string }>(child, "url", "edge", output, startTimeoutMs);
    return { url, pid: child.pid!, startMs: performance.now() - t0, tail: output, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// The KServe v2 test double (test/support/kserve-double.ts) as its own process

export interface DoubleChild {
  readonly url: string;
  readonly port: number;
  readonly pid: number;
  readonly model: string;
  readonly startMs: number;
  tail(): string;
  stop(): Promise<void>;
}

/** The generated model (same weights as the gpu-node's) with the seed's FP32 [N,3,224,224] input, cached. */
export async function float32ModelFile(model: string, cacheDir: string): Promise<string> {
  const uint8 = (await ensureModel(model, cacheDir)).path;
  const float32 = cachedModelPath(cacheDir, `${model}-fp32`);
  const fresh = await stat(float32).then(
    async (f) => f.mtimeMs >= (await stat(uint8)).mtimeMs,
    () => false,
  );
  if (!fresh) await writeFileAtomic(float32, toFloat32NchwInput(await readFile(uint8)));
  return float32;
}

export async function startDouble(
  model: string,
  cacheDir: string,
  threads: number,
  startTimeoutMs = 120_000,
): Promise<DoubleChild> {
  const t0 = performance.now();
  const path = await float32ModelFile(model, cacheDir);
  const child = track(
    spawn(
      process.execPath,
      [
        resolve(import.meta.dirname, "double-child.ts"),
        "--port",
        "0",
        "--threads",
        String(threads),
        "--model",
        `name=${model},path=${path},layout=float32-nchw,max-batch=32`,
      ],
      { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] },
    ),
  );
  const output = tail(child);
  const stop = () => stopChild(child, 5000);
  try {
    const { port } = await readyLine<{ port: number }>(
      child,
      "port",
      "kserve double",
      output,
      startTimeoutMs,
    );
    return {
      url: `http://127.0.0.1:${port}`,
      port,
      pid: child.pid!,
      model,
      startMs: performance.now() - t0,
      tail: output,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
