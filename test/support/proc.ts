/** Readings of /proc for tests and benchmarks: resident memory and CPU time of a process or of its whole tree, the machine's busy time, and this process's own CPU. Linux only. */
import { readdirSync, readFileSync } from "node:fs";

export const MiB = 1024 * 1024;
/** Linux clock ticks per second for /proc/<pid>/stat times (100 on every mainstream kernel). */
const CLK_TCK = 100;

/** The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses), and the name; undefined once the process is gone. */
function stat(pid: number): { name: string; fields: string[] } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const close = text.lastIndexOf(")");
    return {
      name: text.slice(text.indexOf("(") + 1, close),
      fields: text.slice(close + 2).split(" "),
    };
  } catch {
    return undefined;
  }
}

/** Every live descendant of `pid` (children of children…), from /proc. */
export function descendants(pid: number): { pid: number; name: string }[] {
  const children = new Map<number, { pid: number; name: string }[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const s = stat(Number(entry));
    if (!s) continue; // exited meanwhile
    const ppid = Number(s.fields[1]);
    const list = children.get(ppid) ?? [];
    list.push({ pid: Number(entry), name: s.name });
    children.set(ppid, list);
  }
  const out: { pid: number; name: string }[] = [];
  const stack = [pid];
  while (stack.length > 0 && out.length < 10_000) {
    for (const child of children.get(stack.pop()!) ?? []) {
      out.push(child);
      stack.push(child.pid);
    }
  }
  return out;
}

/** `root` and every live descendant. */
export function processTree(root: number): number[] {
  return [root, ...descendants(root).map((d) => d.pid)];
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

/** RSS of `pid` and all its descendants, bytes. */
export function treeRss(pid: number): number {
  return processTree(pid).reduce((n, p) => n + rssOf(p), 0);
}

/** RSS of this process's workerd descendants (the edge Worker started by wrangler), bytes. */
export function workerdRss(): number {
  return descendants(process.pid)
    .filter((d) => d.name.startsWith("workerd"))
    .reduce((n, d) => n + rssOf(d.pid), 0);
}

/** VmHWM (peak resident set) and VmRSS of a process, in MiB, from /proc/<pid>/status. */
export function memoryMiB(pid: number): { peakRss: number; rss: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return { peakRss: kb("VmHWM") / 1024, rss: kb("VmRSS") / 1024 };
}

/** CPU seconds (user + system) the process has used so far; throws once it is gone. */
export function cpuSeconds(pid: number): number {
  const s = stat(pid);
  if (!s) throw new Error(`no process ${pid}`);
  // utime and stime are fields 14 and 15 of the full line, i.e. 11 and 12 after "state".
  return (Number(s.fields[11]) + Number(s.fields[12])) / CLK_TCK;
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

/**
 * CPU seconds the whole machine has been busy (all CPUs; user, nice, system, irq, softirq,
 * steal), from /proc/stat: minus our own processes' CPU, it tells how much other work ran.
 */
export function machineBusySeconds(): number {
  const cpu = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/);
  const [user, nice, system, _idle, _iowait, irq, softirq, steal] = cpu.slice(1).map(Number);
  return (user! + nice! + system! + irq! + softirq! + (steal ?? 0)) / CLK_TCK;
}

/** This process's CPU seconds so far (all threads: sharp's and ORT's pools included). */
export function ownCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}
