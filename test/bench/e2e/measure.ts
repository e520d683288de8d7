/** Runs one row of the end-to-end benchmark: sequential calls of one batch size after a warm-up, with the bytes and connections each emulated hop saw, CPU per image on each side, other load, and the row's physical floor. */

import { runLoad } from "../../support/load.ts";
import { cpuSeconds, descendants, machineBusySeconds, treeCpuSeconds } from "../../support/proc.ts";
import { mean, median, percentile } from "../../support/stats.ts";
import { type LinkSettings, type LinkStats, rttMs } from "../wan/link.ts";
import type { WanProcess } from "../wan/process.ts";
import type { ProfileName } from "../wan/profiles.ts";
import type { Call, Stages } from "./clients.ts";
import type { InputName } from "./inputs.ts";

export type VariantId = "edge" | "worker" | "node-edge" | "no-edge" | "triton";
export type BackendName = "vit-tiny" | "vit-b32";

export const VARIANTS: Readonly<Record<VariantId, { label: string; path: string }>> = {
  edge: {
    label: "(1) edge",
    path: "client → edge (wrangler's dev runtime: workerd, local Images binding) → WAN → gpu-node → ONNX Runtime",
  },
  worker: {
    label: "(1) Worker on workerd",
    path: "client → edge Worker as `wrangler deploy` bundles it, on workerd with no wrangler dev layers (WASM resizer) → WAN → gpu-node → ONNX Runtime",
  },
  "node-edge": {
    label: "(1) Node edge",
    path: "client → edge on Node (edge/node/server.ts, sharp resizer) → WAN → gpu-node → ONNX Runtime",
  },
  "no-edge": {
    label: "(2) no edge",
    path: "client → WAN (original photo) → edge beside the gpu-node → gpu-node → ONNX Runtime",
  },
  triton: {
    label: "(3) Triton-style",
    path: "client (decode, resize, FP32 tensor) → WAN (KServe v2 gRPC) → test double → ONNX Runtime",
  },
};

/** A hop of the path through the WAN emulator. */
export interface Hop {
  /** The emulator's link name. */
  readonly link: string;
  readonly role: "access" | "wan" | "local";
  readonly settings: LinkSettings;
}

export interface HopResult {
  readonly link: string;
  readonly role: Hop["role"];
  readonly rttMs: number;
  readonly upMbit: number;
  readonly downMbit: number;
  readonly bytesUpPerCall: number;
  readonly bytesDownPerCall: number;
  /** New TCP connections during the measured calls (0 = every call reused one). */
  readonly connectionsOpened: number;
  readonly latenessMeanMs: number;
  readonly latenessMaxMs: number;
}

export interface Floor {
  readonly ms: number;
  /** One round trip per hop (warm connections). */
  readonly rttMs: number;
  /** The row's measured bytes at each hop's rate. */
  readonly transferMs: number;
  /** Median per call of the stages that do the work (COMPUTE_STAGES). */
  readonly computeMs: number;
  readonly imagesPerSecond: number;
}

export interface Row {
  readonly variant: VariantId;
  readonly profile: ProfileName;
  readonly backend: BackendName;
  readonly input: InputName;
  readonly batch: number;
  readonly warmupCalls: number;
  readonly calls: number;
  readonly latencyMs: {
    readonly mean: number;
    readonly p50: number;
    readonly p95: number;
    readonly p99: number;
    readonly min: number;
    readonly max: number;
  };
  /** Images ÷ the sum of the calls' times (sequential calls: batch ÷ mean latency). */
  readonly imagesPerSecond: number;
  /** Per-stage medians, ms. */
  readonly stagesP50: Readonly<Record<string, number>>;
  /**
   * The edge's own time per image: the median over the calls of (call time − the edge's timing
   * of its gpu-node call) ÷ batch; NaN without an edge. Taken per call because the Worker's clock
   * has 1 ms steps: the median of its rounded gpu-node calls, taken off the median call, was off
   * by up to half a step, while per call the rounding errs both ways.
   */
  readonly ownMsPerImage: number;
  readonly hops: readonly HopResult[];
  /** Both directions on the hop(s) into the GPU site, per image. */
  readonly wanBytesPerImage: number;
  readonly cpuMsPerImage: {
    readonly gpuHost: number;
    readonly clientSide: number;
    readonly emulator: number;
    /** Per tier, wherever it runs: the client (this process), the edge, the gpu-node (or double). */
    readonly client: number;
    readonly edge: number;
    readonly gpuNode: number;
    /** Of `edge`: what workerd used (the Worker itself; the rest is wrangler's Node process). */
    readonly edgeWorkerd: number;
  };
  /** Cores' worth of CPU used by processes that are not ours during the measured calls. */
  readonly otherCores: number;
  /** Medians over the calls of each call's own floor and parts. */
  readonly floor: Floor;
  /** Median over the calls of (call time − that call's floor). */
  readonly gapMs: number;
}

/** Stages that do necessary work on the images (queues, protocol and waiting are not). */
const COMPUTE_STAGES: Readonly<Record<VariantId, readonly string[]>> = {
  edge: ["edge-validate", "edge-resize", "gpu-decode", "gpu-pack", "gpu-inference"],
  worker: ["edge-validate", "edge-resize", "gpu-decode", "gpu-pack", "gpu-inference"],
  "node-edge": ["edge-validate", "edge-resize", "gpu-decode", "gpu-pack", "gpu-inference"],
  "no-edge": ["edge-validate", "edge-resize", "gpu-decode", "gpu-pack", "gpu-inference"],
  triton: ["client-decode", "client-pack", "server-compute"],
};

export interface RowSpec {
  readonly variant: VariantId;
  readonly profile: ProfileName;
  readonly backend: BackendName;
  readonly input: InputName;
  readonly images: readonly Buffer[];
  readonly batch: number;
  readonly warmupCalls: number;
  readonly calls: number;
  readonly call: Call;
  readonly hops: readonly Hop[];
  readonly wan: WanProcess;
  /**
   * Process trees on the GPU side, and on the client side (the edge of variant 1 included; this
   * process counts alone: its children are the servers).
   */
  readonly gpuHostPids: readonly number[];
  readonly clientPids: readonly number[];
  /** The edge's process tree (none for the Triton-style variant). */
  readonly edgePids: readonly number[];
  /** The gpu-node's (or the double's) process tree. */
  readonly gpuNodePids: readonly number[];
  /**
   * Server compute the client cannot see in the response (variant 3: the double's statistics):
   * cumulative ms and executions, read between calls.
   */
  readonly serverCompute?: () => Promise<{ ms: number; executions: number }>;
}

/** CPU seconds of the workerd processes below `pids` (the Worker's runtime under wrangler). */
function workerdCpu(pids: readonly number[]): number {
  let total = 0;
  for (const pid of pids) {
    for (const d of descendants(pid)) {
      if (d.name !== "workerd") continue;
      try {
        total += cpuSeconds(d.pid);
      } catch {
        // exited meanwhile
      }
    }
  }
  return total;
}

/** This process's CPU seconds at microsecond resolution (/proc counts 10 ms ticks). */
function ownCpu(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Each pid with its descendants, except this process, whose children are the servers. */
function cpuOf(pids: readonly number[]): number {
  return pids.reduce(
    (s, pid) => s + (pid === process.pid ? cpuSeconds(pid) : treeCpuSeconds(pid)),
    0,
  );
}

function transferMs(bytes: number, bitsPerSecond: number): number {
  return Number.isFinite(bitsPerSecond) ? (bytes * 8 * 1000) / bitsPerSecond : 0;
}

/** What one measured call saw: its time, its stages, and per hop the bytes and new connections. */
interface CallRecord {
  readonly ms: number;
  readonly stages: Stages;
  readonly hops: readonly { up: number; down: number; connections: number }[];
}

/** A row in progress: its warm-up done, its calls measured in chunks that take turns with other rows. */
export interface RowMeasurer {
  /** How long the last warm-up call took (ms). */
  readonly warmupMs: number;
  /**
   * Measures `calls` more sequential calls, after one untimed call when `rewarm` (other rows ran
   * meanwhile: an idle keep-alive connection may have been closed).
   */
  chunk(calls: number, rewarm?: boolean): Promise<void>;
  /** The row over every chunk so far. */
  finish(): Row;
}

/**
 * Sequential calls; after each, outside its timing, the emulator's counters (and the double's
 * statistics) are read, so that bytes, connections and server compute are known per call and
 * each call gets its own floor (photos of different sizes would otherwise be compared with an
 * average). Calls come in chunks so that the rows of one scenario can take turns and see the same
 * background load on this shared machine.
 */
export async function startRow(spec: RowSpec): Promise<RowMeasurer> {
  const { batch, images } = spec;
  let next = 0;
  const pick = () =>
    Array.from({ length: batch }, () => images[next++ % images.length]!) as readonly Buffer[];
  let warmupMs = 0;
  for (let i = 0; i < spec.warmupCalls; i++) {
    const t0 = performance.now();
    await spec.call(pick());
    warmupMs = performance.now() - t0;
  }

  const calls: CallRecord[] = [];
  const cpu: CpuTotals = {
    gpu: 0,
    client: 0,
    emu: 0,
    other: 0,
    self: 0,
    edge: 0,
    gpuNode: 0,
    workerd: 0,
    elapsedMs: 0,
  };
  let last: Record<string, LinkStats> = {};

  const chunk = async (n: number, rewarm = false) => {
    if (rewarm) await spec.call(pick());
    last = await spec.wan.stats();
    let lastCompute = await spec.serverCompute?.();
    const record = async (): Promise<CallRecord> => {
      const batchImages = pick();
      const t0 = performance.now();
      const stages = await spec.call(batchImages);
      const ms = performance.now() - t0;
      const [now, compute] = await Promise.all([spec.wan.stats(), spec.serverCompute?.()]);
      const hops = spec.hops.map((hop) => ({
        up: now[hop.link]!.bytesUp - last[hop.link]!.bytesUp,
        down: now[hop.link]!.bytesDown - last[hop.link]!.bytesDown,
        connections: now[hop.link]!.connections - last[hop.link]!.connections,
      }));
      let withCompute = stages;
      if (compute && lastCompute && compute.executions > lastCompute.executions) {
        withCompute = { ...stages, "server-compute": compute.ms - lastCompute.ms };
      }
      last = now;
      lastCompute = compute;
      return { ms, stages: withCompute, hops };
    };
    const start = {
      gpu: 0,
      client: 0,
      emu: 0,
      machine: 0,
      all: 0,
      self: 0,
      edge: 0,
      gpuNode: 0,
      workerd: 0,
    };
    const read = () => ({
      gpu: cpuOf(spec.gpuHostPids),
      client: cpuOf(spec.clientPids),
      emu: treeCpuSeconds(spec.wan.pid),
      machine: machineBusySeconds(),
      all: treeCpuSeconds(process.pid),
      self: ownCpu(),
      edge: cpuOf(spec.edgePids),
      gpuNode: cpuOf(spec.gpuNodePids),
      workerd: workerdCpu(spec.edgePids),
    });
    const result = await runLoad<CallRecord>({
      concurrency: 1,
      imagesPerCall: batch,
      calls: n,
      countFromStart: true,
      hardLimitMs: 300_000,
      onWindow: (edge) => {
        const now = read();
        if (edge === "start") {
          Object.assign(start, now);
          return;
        }
        cpu.gpu += now.gpu - start.gpu;
        cpu.client += now.client - start.client;
        cpu.emu += now.emu - start.emu;
        cpu.self += now.self - start.self;
        cpu.edge += now.edge - start.edge;
        cpu.gpuNode += now.gpuNode - start.gpuNode;
        cpu.workerd += now.workerd - start.workerd;
        cpu.other += Math.max(0, now.machine - start.machine - (now.all - start.all));
      },
      call: record,
    });
    cpu.elapsedMs += result.elapsedMs;
    calls.push(...result.values);
  };

  return { warmupMs, chunk, finish: () => summarise(spec, calls, cpu, last) };
}

/** Runs a row's calls in one go. */
export async function measureRow(spec: RowSpec): Promise<Row> {
  const row = await startRow(spec);
  await row.chunk(spec.calls);
  return row.finish();
}

/** CPU seconds over a row's measured windows, by process group; `self` is this process (the client). */
interface CpuTotals {
  gpu: number;
  client: number;
  emu: number;
  other: number;
  self: number;
  edge: number;
  gpuNode: number;
  workerd: number;
  elapsedMs: number;
}

function summarise(
  spec: RowSpec,
  calls: readonly CallRecord[],
  cpu: CpuTotals,
  last: Record<string, LinkStats>,
): Row {
  const { batch } = spec;
  const stageNames = [...new Set(calls.flatMap((c) => Object.keys(c.stages)))];
  const stagesP50 = Object.fromEntries(
    stageNames.map((s) => [s, median(calls.map((c) => c.stages[s] ?? Number.NaN))]),
  );
  // Per call: one RTT per hop, its bytes at each hop's rate, its compute stages.
  const floors = calls.map((c) => {
    let rtt = 0;
    let transfer = 0;
    spec.hops.forEach((hop, i) => {
      rtt += rttMs(hop.settings);
      transfer +=
        transferMs(c.hops[i]!.up, hop.settings.up.bitsPerSecond) +
        transferMs(c.hops[i]!.down, hop.settings.down.bitsPerSecond);
    });
    const compute = COMPUTE_STAGES[spec.variant].reduce((sum, s) => sum + (c.stages[s] ?? 0), 0);
    return { rtt, transfer, compute, ms: rtt + transfer + compute };
  });
  const hops: HopResult[] = spec.hops.map((hop, i) => {
    const end = last[hop.link]!;
    return {
      link: hop.link,
      role: hop.role,
      rttMs: rttMs(hop.settings),
      upMbit: hop.settings.up.bitsPerSecond / 1e6,
      downMbit: hop.settings.down.bitsPerSecond / 1e6,
      bytesUpPerCall: mean(calls.map((c) => c.hops[i]!.up)),
      bytesDownPerCall: mean(calls.map((c) => c.hops[i]!.down)),
      connectionsOpened: calls.reduce((n, c) => n + c.hops[i]!.connections, 0),
      latenessMeanMs: end.latenessMeanMs,
      latenessMaxMs: end.latenessMaxMs,
    };
  });
  const lat = calls.map((c) => c.ms);
  const counted = calls.length * batch;
  // Nearest-rank like the latency percentiles: with two calls of different photos the "p50" call
  // and the floor shown belong together (an averaged median would not).
  const mid = (xs: readonly number[]) => percentile(xs, 0.5);
  const floorMs = mid(floors.map((f) => f.ms));
  const callTime = lat.reduce((sum, ms) => sum + ms, 0);
  const wanHop = hops.find((h) => h.role === "wan");
  return {
    variant: spec.variant,
    profile: spec.profile,
    backend: spec.backend,
    input: spec.input,
    batch,
    warmupCalls: spec.warmupCalls,
    calls: calls.length,
    latencyMs: {
      mean: mean(lat),
      p50: percentile(lat, 0.5),
      p95: percentile(lat, 0.95),
      p99: percentile(lat, 0.99),
      min: Math.min(...lat),
      max: Math.max(...lat),
    },
    imagesPerSecond: (counted * 1000) / callTime,
    stagesP50,
    ownMsPerImage: median(
      calls.map((c) => (c.ms - (c.stages["edge-gpu-call"] ?? Number.NaN)) / batch),
    ),
    hops,
    wanBytesPerImage: wanHop
      ? (wanHop.bytesUpPerCall + wanHop.bytesDownPerCall) / batch
      : Number.NaN,
    cpuMsPerImage: {
      gpuHost: (cpu.gpu * 1000) / counted,
      clientSide: (cpu.client * 1000) / counted,
      emulator: (cpu.emu * 1000) / counted,
      client: (cpu.self * 1000) / counted,
      edge: (cpu.edge * 1000) / counted,
      gpuNode: (cpu.gpuNode * 1000) / counted,
      edgeWorkerd: (cpu.workerd * 1000) / counted,
    },
    // The window also holds the counter reads between calls: a slight underestimate.
    otherCores: cpu.other / (cpu.elapsedMs / 1000),
    floor: {
      ms: floorMs,
      rttMs: mid(floors.map((f) => f.rtt)),
      transferMs: mid(floors.map((f) => f.transfer)),
      computeMs: mid(floors.map((f) => f.compute)),
      imagesPerSecond: (batch * 1000) / floorMs,
    },
    gapMs: mid(lat.map((ms, i) => ms - floors[i]!.ms)),
  };
}
