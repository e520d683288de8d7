/** Starts the WAN emulator in a child process (test/bench/wan/host.ts) and drives it: open named links in front of targets, change their settings, read their counters. */
import { type ChildProcess, fork } from "node:child_process";
import { once } from "node:events";
import { resolve } from "node:path";
import { track } from "../../support/processes.ts";
import type { WanCommand, WanReply } from "./host.ts";
import type { LinkSettings, LinkStats, Target } from "./link.ts";

export interface WanProcess {
  readonly pid: number;
  /** Opens a proxy in front of `target`; clients connect to the returned URL. */
  open(name: string, target: Target, link: LinkSettings): Promise<{ port: number; url: string }>;
  set(name: string, change: { target?: Target; link?: LinkSettings }): Promise<void>;
  stats(): Promise<Record<string, LinkStats>>;
  /** Closes every link and waits for the process to exit (killed after 3 s). */
  stop(): Promise<void>;
}

const HOST = resolve(import.meta.dirname, "host.ts");

export async function startWanProcess(timeoutMs = 10_000): Promise<WanProcess> {
  const child: ChildProcess = track(
    fork(HOST, [], {
      execPath: process.execPath,
      // Structured clone: Infinity (an unlimited rate) survives, JSON would make it null.
      serialization: "advanced",
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    }),
  );
  let nextId = 0;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  child.on("message", (reply: WanReply) => {
    const w = waiting.get(reply.id);
    waiting.delete(reply.id);
    if (reply.ok) w?.resolve(reply.result);
    else w?.reject(new Error(`wan emulator: ${reply.error}`));
  });
  child.once("exit", (code, signal) => {
    for (const w of waiting.values())
      w.reject(new Error(`wan emulator exited (${code ?? signal})`));
    waiting.clear();
  });
  const call = (command: WanCommand): Promise<unknown> =>
    new Promise((resolveCall, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error(`wan emulator: no answer to ${command.op} in ${timeoutMs} ms`));
      }, timeoutMs);
      waiting.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolveCall(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      child.send({ id, command });
    });
  await once(child, "spawn");
  return {
    pid: child.pid!,
    open: async (name, target, link) =>
      (await call({ op: "open", name, target, link })) as { port: number; url: string },
    set: async (name, change) => {
      await call({ op: "set", name, ...change });
    },
    stats: async () => (await call({ op: "stats" })) as Record<string, LinkStats>,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, "exit");
      const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
      try {
        await call({ op: "close" }).catch(() => child.kill("SIGKILL"));
        await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
