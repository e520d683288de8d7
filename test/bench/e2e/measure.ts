/** Runs one row of the end-to-end benchmark: sequential calls of one batch size after a warm-up, with the bytes and connections each emulated hop saw, CPU per image on each side, other load, and the row's physical floor. */
import { cpuSeconds, machineBusySeconds } from "../child.ts";
import { runLoad } from "../load.ts";
import { mean, median, percentile } from "../stats.ts";
import { type LinkSettings, rttMs } from "../wan/link.ts";
import type { WanProcess } from "../wan/process.ts";
import type { ProfileName } from "../wan/profiles.ts";
import type { Call, Stages } from "./clients.ts";
import type { InputName } from "./inputs.ts";
import { treeCpuSeconds } from "./stack.ts";

export type VariantId = "edge" | "no-edge" | "triton";
export type BackendName = "vit-tiny" | "vit-b32";

export const VARIANTS: Readonly<Record<VariantId, { label: string; path: string }>> = {
  edge: {
    label: "(1) edge",
    path: "client → edge (wrangler dev) → WAN → gpu-node → ONNX Runtime",
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
  /** Median per call of the stages that do the work (see computeStages). */
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
  readonly imagesPerSecond: number;
  /** Per-stage medians, ms. */
  readonly stagesP50: Readonly<Record<string, number>>;
  readonly hops: readonly HopResult[];
  /** Both directions on the hop(s) into the GPU site, per image. */
  readonly wanBytesPerImage: number;
  readonly cpuMsPerImage: {
    readonly gpuHost: number;
    readonly clientSide: number;
    readonly emulator: number;
  };
  /** Cores' worth of CPU used by processes that are not ours during the measured calls. */
  readonly otherCores: number;
  readonly floor: Floor;
  readonly gapMs: number;
}

/** Stages that do necessary work on the images (queues, protocol and waiting are not). */
const COMPUTE_STAGES: Readonly<Record<VariantId, readonly string[]>> = {
  edge: ["edge-validate", "edge-resize", "gpu-decode", "gpu-pack", "gpu-inference"],
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
  /**
   * Server compute the client cannot see per call (variant 3: the double's statistics), read
   * before and after the measured calls: cumulative ms and executions.
   */
  readonly serverCompute?: () => Promise<{ ms: number; executions: number }>;
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

export async function measureRow(spec: RowSpec): Promise<Row> {
  const { batch, images } = spec;
  let next = 0;
  const pick = () =>
    Array.from({ length: batch }, () => images[next++ % images.length]!) as readonly Buffer[];
  for (let i = 0; i < spec.warmupCalls; i++) await spec.call(pick());

  const before = await spec.wan.stats();
  const computeBefore = await spec.serverCompute?.();
  let gpu0 = 0;
  let client0 = 0;
  let emu0 = 0;
  let machine0 = 0;
  let all0 = 0;
  const cpu = { gpu: 0, client: 0, emu: 0, other: 0 };
  const everything = () => treeCpuSeconds(process.pid);
  const result = await runLoad<Stages>({
    concurrency: 1,
    imagesPerCall: batch,
    calls: spec.calls,
    countFromStart: true,
    hardLimitMs: 300_000,
    onWindow: (edge) => {
      const gpu = cpuOf(spec.gpuHostPids);
      const client = cpuOf(spec.clientPids);
      const emu = treeCpuSeconds(spec.wan.pid);
      const machine = machineBusySeconds();
      const all = everything();
      if (edge === "start") {
        [gpu0, client0, emu0, machine0, all0] = [gpu, client, emu, machine, all];
      } else {
        cpu.gpu = gpu - gpu0;
        cpu.client = client - client0;
        cpu.emu = emu - emu0;
        cpu.other = Math.max(0, machine - machine0 - (all - all0));
      }
    },
    call: () => spec.call(pick()),
  });
  const after = await spec.wan.stats();
  const computeAfter = await spec.serverCompute?.();

  const stageNames = [...new Set(result.values.flatMap((v) => Object.keys(v)))];
  const serverComputeMs =
    computeBefore && computeAfter && computeAfter.executions > computeBefore.executions
      ? (computeAfter.ms - computeBefore.ms) / (computeAfter.executions - computeBefore.executions)
      : undefined;
  const perCall = result.values.map((v) =>
    serverComputeMs === undefined ? v : { ...v, "server-compute": serverComputeMs },
  );
  if (serverComputeMs !== undefined) stageNames.push("server-compute");
  const stagesP50 = Object.fromEntries(
    stageNames.map((s) => [s, median(perCall.map((v) => v[s] ?? Number.NaN))]),
  );
  const computeMs = median(
    perCall.map((v) => COMPUTE_STAGES[spec.variant].reduce((sum, s) => sum + (v[s] ?? 0), 0)),
  );

  const hops: HopResult[] = spec.hops.map((hop) => {
    const a = after[hop.link]!;
    const b = before[hop.link]!;
    return {
      link: hop.link,
      role: hop.role,
      rttMs: rttMs(hop.settings),
      upMbit: hop.settings.up.bitsPerSecond / 1e6,
      downMbit: hop.settings.down.bitsPerSecond / 1e6,
      bytesUpPerCall: (a.bytesUp - b.bytesUp) / result.calls,
      bytesDownPerCall: (a.bytesDown - b.bytesDown) / result.calls,
      connectionsOpened: a.connections - b.connections,
      latenessMeanMs: a.latenessMeanMs,
      latenessMaxMs: a.latenessMaxMs,
    };
  });
  let floorRtt = 0;
  let floorTransfer = 0;
  for (const [i, hop] of spec.hops.entries()) {
    const h = hops[i]!;
    floorRtt += h.rttMs;
    floorTransfer +=
      transferMs(h.bytesUpPerCall, hop.settings.up.bitsPerSecond) +
      transferMs(h.bytesDownPerCall, hop.settings.down.bitsPerSecond);
  }
  const floorMs = floorRtt + floorTransfer + computeMs;
  const wanHop = hops.find((h) => h.role === "wan");
  const lat = result.rttMs;
  const p50 = percentile(lat, 0.5);
  const counted = result.images;
  return {
    variant: spec.variant,
    profile: spec.profile,
    backend: spec.backend,
    input: spec.input,
    batch,
    warmupCalls: spec.warmupCalls,
    calls: result.calls,
    latencyMs: {
      mean: mean(lat),
      p50,
      p95: percentile(lat, 0.95),
      p99: percentile(lat, 0.99),
      min: Math.min(...lat),
      max: Math.max(...lat),
    },
    imagesPerSecond: result.imagesPerSecond,
    stagesP50,
    hops,
    wanBytesPerImage: wanHop
      ? ((wanHop.bytesUpPerCall + wanHop.bytesDownPerCall) * result.calls) / counted
      : Number.NaN,
    cpuMsPerImage: {
      gpuHost: (cpu.gpu * 1000) / counted,
      clientSide: (cpu.client * 1000) / counted,
      emulator: (cpu.emu * 1000) / counted,
    },
    otherCores: cpu.other / (result.elapsedMs / 1000),
    floor: {
      ms: floorMs,
      rttMs: floorRtt,
      transferMs: floorTransfer,
      computeMs,
      imagesPerSecond: (batch * 1000) / floorMs,
    },
    gapMs: p50 - floorMs,
  };
}
