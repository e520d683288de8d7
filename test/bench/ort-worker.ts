/** The bare ONNX Runtime worker of bench:gpu-node: starts test/bench/ort-child.ts, waits until its session is loaded, and runs one step at a time over its stdin/stdout lines. */

import { spawn } from "node:child_process";
import { once } from "node:events";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { keepTail, ROOT, stopChild, track } from "../support/processes.ts";
import type { OrtChildInput, OrtStep, OrtStepResult } from "./ort-child.ts";

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
  const err = keepTail(8192);
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
  const kill = async () => {
    await stopChild(child, "SIGTERM", 1000);
  };
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
