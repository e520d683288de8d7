/** The targets, judged from the rows: PASS/MISS with the measured figures, and when missed, why, from the per-stage times and the floors. */
import type { Row, VariantId } from "./measure.ts";

export interface TargetResult {
  readonly id: string;
  readonly target: string;
  readonly result: string;
  readonly verdict: "PASS" | "MISS" | "NOT RUN";
  /** The per-stage account (always given; the reason when missed). */
  readonly why: string;
}

export const TARGETS = {
  p50OverFloorMs: 10,
  singleSpeedup: 3,
  batch32Throughput: 10,
  phoneReduction: 100,
} as const;

/** The seed's published A100 figures (PyTorch FastAPI, base64, 14 ms RTT). */
export const SEED_PUBLISHED = { singleP50Ms: 55.8, batch32ImagesPerSecond: 64.3 } as const;

/** Issue 15's targets on the seed's own workload, over the seed's link. */
export const SEED_WORKLOAD_TARGETS = {
  /** ≥ 1.8x faster than the seed's single-image p50. */
  singleP50Ms: 31,
  /** ≥ 3x the seed's batch-32 throughput. */
  batch32ImagesPerSecond: 193,
} as const;

const BEFORE_CUTS = "the code before issue 15's cuts, median of 4 runs, 2026-12-06";
const FULL_RUN = "e2e-full-2026-11-28T03-50-19-725Z";

/**
 * Tail ratios (p95/p50, p99/p50) of earlier runs, per row key (backend/variant/profile/input/
 * batch): a row's tails "do not grow" while its ratios stay at or below these.
 */
export const PREVIOUS_TAILS: Readonly<Record<string, { p95: number; p99: number; run: string }>> = {
  "vit-tiny/edge/seed/seed-224/1": { p95: 3.19, p99: 5.57, run: FULL_RUN },
  "vit-tiny/no-edge/seed/seed-224/1": { p95: 2.49, p99: 2.52, run: FULL_RUN },
  "vit-tiny/triton/seed/seed-224/1": { p95: 1.76, p99: 1.98, run: FULL_RUN },
  "vit-tiny/edge/seed/seed-png/1": { p95: 1.24, p99: 2.83, run: BEFORE_CUTS },
  "vit-tiny/node-edge/seed/seed-png/1": { p95: 1.55, p99: 1.72, run: BEFORE_CUTS },
  "vit-tiny/edge/loopback/seed-png/1": { p95: 2.56, p99: 3.06, run: BEFORE_CUTS },
  "vit-tiny/node-edge/loopback/seed-png/1": { p95: 1.71, p99: 2.61, run: BEFORE_CUTS },
};

const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : "–");
const kib = (bytes: number) => `${f(bytes / 1024, 1)} KiB`;

function find(rows: readonly Row[], variant: VariantId, input: string, batch: number) {
  return rows.find(
    (r) =>
      r.variant === variant &&
      r.profile === "seed" &&
      r.backend === "vit-tiny" &&
      r.input === input &&
      r.batch === batch,
  );
}

const stage = (r: Row, name: string) => r.stagesP50[name] ?? Number.NaN;

/** Where (1)'s time goes, from its Server-Timing stages and the hops' floors. */
export function edgeAccount(r: Row, ctx?: TargetContext): string {
  const access = r.hops.find((h) => h.role === "access");
  const wan = r.hops.find((h) => h.role === "wan");
  const outsideEdge = r.latencyMs.p50 - stage(r, "edge-total");
  const edgeOwn =
    stage(r, "edge-total") -
    stage(r, "edge-validate") -
    stage(r, "edge-resize") -
    stage(r, "edge-gpu-call");
  const callBeyondNode = stage(r, "edge-gpu-call") - stage(r, "gpu-total");
  const nodeOther =
    stage(r, "gpu-total") -
    stage(r, "gpu-decode") -
    stage(r, "gpu-pack") -
    stage(r, "gpu-queue") -
    stage(r, "gpu-inference");
  const conns = r.hops.map((h) => `${h.link} ${h.connectionsOpened}`).join(", ");
  return (
    `p50 ${f(r.latencyMs.p50)} ms = client ↔ edge outside the edge's handler ${f(outsideEdge)} ms ` +
    `(access link floor ${f(access?.rttMs ?? 0)} ms RTT` +
    // The no-ops were timed on the Workers' runtimes: the Node edge's rows say nothing of them.
    (ctx && r.variant === "worker"
      ? `; a no-op GET /healthz straight to workerd takes ${f(ctx.workerNoopP50Ms)} ms p50`
      : ctx && r.variant !== "node-edge"
        ? `; a no-op GET /healthz straight to wrangler dev's runtime takes ${f(ctx.edgeNoopP50Ms)} ms p50`
        : "") +
    `) + edge handler ${f(stage(r, "edge-total"))} ms ` +
    `[validate ${f(stage(r, "edge-validate"), 2)}, resize ${f(stage(r, "edge-resize"))}, ` +
    `gpu-node call ${f(stage(r, "edge-gpu-call"))} (of which the gpu-node's own total ` +
    `${f(stage(r, "gpu-total"))}: decode ${f(stage(r, "gpu-decode"))}, pack ${f(stage(r, "gpu-pack"), 2)}, ` +
    `queue ${f(stage(r, "gpu-queue"))}, inference ${f(stage(r, "gpu-inference"))}, other ${f(nodeOther)}; ` +
    `the rest, ${f(callBeyondNode)} ms, is the WAN hop (floor ${f(wan?.rttMs ?? 0)} ms RTT + ` +
    `${kib((wan?.bytesUpPerCall ?? 0) + (wan?.bytesDownPerCall ?? 0))} per call) plus fetch/Connect), ` +
    `edge's own ${f(edgeOwn)}]. Floor ${f(r.floor.ms)} ms = RTT ${f(r.floor.rttMs)} + transfer ` +
    `${f(r.floor.transferMs)} + compute ${f(r.floor.computeMs)}. New connections during the ` +
    `${r.calls} calls: ${conns}. Other load ${f(r.otherCores, 2)} cores.`
  );
}

/** Where (3)'s time goes. */
export function tritonAccount(r: Row): string {
  const wan = r.hops.find((h) => h.role === "wan");
  const rpcBeyond =
    stage(r, "client-rpc") - stage(r, "server-compute") - r.floor.rttMs - r.floor.transferMs;
  return (
    `p50 ${f(r.latencyMs.p50)} ms = client decode ${f(stage(r, "client-decode"))} + FP32 pack ` +
    `${f(stage(r, "client-pack"))} + ModelInfer ${f(stage(r, "client-rpc"))} ms (link floor: RTT ` +
    `${f(r.floor.rttMs)} + ${kib(wan?.bytesUpPerCall ?? 0)} up at ${f(wan?.upMbit ?? 0, 0)} Mbit/s = ` +
    `${f(r.floor.transferMs)} ms; the double's compute ${f(stage(r, "server-compute"))} ms; ` +
    `the rest, ${f(rpcBeyond)} ms, is protobuf and HTTP/2 work on both ends). Floor ${f(r.floor.ms)} ms. ` +
    `Other load ${f(r.otherCores, 2)} cores.`
  );
}

/**
 * Extra round trips real TCP would need to move `bytes` on a fresh or idle connection (initial
 * window 10 segments of 1448 B, doubling per RTT, no loss), which the split-TCP emulator does not
 * charge.
 */
export function slowStartRtts(bytes: number): number {
  let sent = 0;
  let cwnd = 10 * 1448;
  let rounds = 0;
  while (sent < bytes && rounds < 64) {
    sent += cwnd;
    cwnd *= 2;
    rounds++;
  }
  return Math.max(0, rounds - 1);
}

/** wrangler's dev proxy on the seed's workload: the same calls through it and straight past it. */
export interface DevProxyCost {
  readonly batch: number;
  /** Calls each way, in turns. */
  readonly calls: number;
  readonly viaProxyP50Ms: number;
  readonly directP50Ms: number;
  /** Median over the rounds of (through the proxy − straight), each round's two calls back to back. */
  readonly addsMs: number;
}

export interface TargetContext {
  /** p50 of GET /healthz straight to wrangler dev's runtime (no emulator, no dev proxy): its no-op cost. */
  readonly edgeNoopP50Ms: number;
  /** The same for the Worker's production bundle on workerd (e2e/workerd-child.ts). */
  readonly workerNoopP50Ms: number;
  /**
   * wrangler's dev proxy, measured apart (the Worker's rows are measured without it, as a
   * deployed Worker has none): see edge-child.ts for what it does.
   */
  readonly devProxy: readonly DevProxyCost[];
}

/** What wrangler's dev proxy added to a call of `batch` seed images, where that was measured. */
function devProxyMs(ctx: TargetContext, batch: number): number | undefined {
  return ctx.devProxy.find((d) => d.batch === batch)?.addsMs;
}

/**
 * What the same calls cost under wrangler dev (its runtime, past the dev proxy), and what the
 * proxy adds on top, beside a row of the Worker on workerd.
 */
function wranglerDevNote(ctx: TargetContext, dev: Row | undefined, batch: number): string {
  const ms = devProxyMs(ctx, batch);
  const proxy = ms === undefined ? "" : `; wrangler's dev proxy adds ${f(ms)} ms p50 more`;
  return dev
    ? ` (under wrangler dev: p50 ${f(dev.latencyMs.p50)} ms, ${f(dev.imagesPerSecond)} img/s${proxy})`
    : "";
}

export const rowKey = (r: Row) => `${r.backend}/${r.variant}/${r.profile}/${r.input}/${r.batch}`;

/** The earlier tails a row answers to: the Worker on workerd to the Worker's, measured under wrangler dev. */
export const tailsKey = (r: Row) => rowKey(r.variant === "worker" ? { ...r, variant: "edge" } : r);

/** p95 and p99 as multiples of p50. */
export function tailRatios(r: Row): { p95: number; p99: number } {
  return { p95: r.latencyMs.p95 / r.latencyMs.p50, p99: r.latencyMs.p99 / r.latencyMs.p50 };
}

/** Issue 15's targets on the seed's own workload (random-noise PNGs, base64 JSON, new connections). */
export function evaluateSeedWorkload(rows: readonly Row[], ctx: TargetContext): TargetResult[] {
  const out: TargetResult[] = [];
  const at = (variant: VariantId, profile: string, batch: number) =>
    rows.find(
      (r) =>
        r.variant === variant &&
        r.profile === profile &&
        r.backend === "vit-tiny" &&
        r.input === "seed-png" &&
        r.batch === batch,
    );
  // The Worker as deployed: its production bundle on workerd ("worker"); its rows under wrangler
  // dev ("edge") are reported beside it.
  const edges = [
    ["node-edge", "Node edge"],
    ["worker", "Worker"],
  ] as const;
  const load = (r: Row) => `other load ${f(r.otherCores, 2)} cores`;
  for (const [variant, name] of edges) {
    const t = `seed workload, seed link: ${name} single-image p50 ≤ ${SEED_WORKLOAD_TARGETS.singleP50Ms} ms (≥ 1.8x the seed's ${SEED_PUBLISHED.singleP50Ms} ms)`;
    const r = at(variant, "seed", 1);
    if (!r) {
      out.push(notRunResult(`seed-single-${variant}`, t));
      continue;
    }
    const p50 = r.latencyMs.p50;
    out.push({
      id: `seed-single-${variant}`,
      target: t,
      result: `p50 ${f(p50)} ms (${f(SEED_PUBLISHED.singleP50Ms / p50, 2)}x the seed)${variant === "worker" ? wranglerDevNote(ctx, at("edge", "seed", 1), 1) : ""}`,
      verdict: p50 <= SEED_WORKLOAD_TARGETS.singleP50Ms ? "PASS" : "MISS",
      why: `${edgeAccount(r, ctx)} CPU per image: client ${f(r.cpuMsPerImage.client, 2)}, edge ${f(r.cpuMsPerImage.edge, 2)}, gpu-node ${f(r.cpuMsPerImage.gpuNode, 2)} ms; ${load(r)}.`,
    });
  }
  for (const [variant, name] of edges) {
    const t = `seed workload, seed link: ${name} batch 32 ≥ ${SEED_WORKLOAD_TARGETS.batch32ImagesPerSecond} img/s (≥ 3x the seed's ${SEED_PUBLISHED.batch32ImagesPerSecond})`;
    const r = at(variant, "seed", 32);
    if (!r) {
      out.push(notRunResult(`seed-batch32-${variant}`, t));
      continue;
    }
    const ips = r.imagesPerSecond;
    out.push({
      id: `seed-batch32-${variant}`,
      target: t,
      result:
        `${f(ips)} img/s (${f(ips / SEED_PUBLISHED.batch32ImagesPerSecond, 2)}x the seed)` +
        (variant === "worker" ? wranglerDevNote(ctx, at("edge", "seed", 32), 32) : ""),
      verdict: ips >= SEED_WORKLOAD_TARGETS.batch32ImagesPerSecond ? "PASS" : "MISS",
      why: `${edgeAccount(r, ctx)} CPU per image: client ${f(r.cpuMsPerImage.client, 2)}, edge ${f(r.cpuMsPerImage.edge, 2)}, gpu-node ${f(r.cpuMsPerImage.gpuNode, 2)} ms; ${load(r)}.`,
    });
  }
  for (const batch of [1, 32]) {
    const t = `seed workload, loopback, batch ${batch}: the Worker's own time per image ≤ the Node edge's`;
    const w = at("worker", "loopback", batch);
    const dev = at("edge", "loopback", batch);
    const n = at("node-edge", "loopback", batch);
    if (!w || !n) {
      out.push(notRunResult(`loopback-own-${batch}`, t));
      continue;
    }
    const wo = w.ownMsPerImage;
    const no = n.ownMsPerImage;
    out.push({
      id: `loopback-own-${batch}`,
      target: t,
      result:
        `Worker ${f(wo, 2)} ms/img vs Node edge ${f(no, 2)} ms/img (${f(wo / no, 2)}x); edge CPU ` +
        `${f(w.cpuMsPerImage.edgeWorkerd, 2)} (workerd) vs ${f(n.cpuMsPerImage.edge, 2)} ms/img` +
        (dev
          ? `; under wrangler dev (past its proxy) ${f(dev.ownMsPerImage, 2)} ms/img (${f(dev.ownMsPerImage / no, 2)}x)`
          : ""),
      verdict: wo <= no ? "PASS" : "MISS",
      why:
        `Own time = median over the calls of (call time − the edge's gpu-node call) ÷ batch (the Worker's clock has 1 ms steps); the Worker is its production bundle on workerd, with no wrangler dev layers. ` +
        `Worker: p50 ${f(w.latencyMs.p50)} ms, gpu-node call ${f(stage(w, "edge-gpu-call"))}, resize ${f(stage(w, "edge-resize"))}, ${load(w)}. ` +
        `Node edge: p50 ${f(n.latencyMs.p50)} ms, gpu-node call ${f(stage(n, "edge-gpu-call"))}, resize ${f(stage(n, "edge-resize"))}, ${load(n)}. ` +
        `Under wrangler dev a request also passes Miniflare's entry Worker and wrangler's dev middleware (no-op GET: ${f(ctx.edgeNoopP50Ms)} ms there, ${f(ctx.workerNoopP50Ms)} ms on workerd).`,
    });
  }
  const tails = rows.filter((r) => r.batch === 1 && r.calls >= 20 && PREVIOUS_TAILS[tailsKey(r)]);
  for (const r of tails) {
    const prev = PREVIOUS_TAILS[tailsKey(r)]!;
    const now = tailRatios(r);
    out.push({
      id: `tails-${rowKey(r)}`,
      target: `tails do not grow: ${rowKey(r)} p95/p50 ≤ ${f(prev.p95, 2)} and p99/p50 ≤ ${f(prev.p99, 2)} (${tailsKey(r) === rowKey(r) ? "" : "the Worker's under wrangler dev, "}run ${prev.run})`,
      result: `p50 ${f(r.latencyMs.p50)}, p95 ${f(r.latencyMs.p95)} (${f(now.p95, 2)}x), p99 ${f(r.latencyMs.p99)} ms (${f(now.p99, 2)}x)`,
      verdict: now.p95 <= prev.p95 && now.p99 <= prev.p99 ? "PASS" : "MISS",
      why: `${r.calls} calls (p99 is the slowest); ${load(r)}: tails on this shared machine follow its other load.`,
    });
  }
  return out;
}

function notRunResult(id: string, target: string): TargetResult {
  return {
    id,
    target,
    result: "–",
    verdict: "NOT RUN",
    why: "the rows this target needs were not measured in this run",
  };
}

export function evaluateTargets(rows: readonly Row[], ctx: TargetContext): TargetResult[] {
  const out: TargetResult[] = evaluateSeedWorkload(rows, ctx);
  const e1 = find(rows, "edge", "seed-224", 1);
  const t1 = find(rows, "triton", "seed-224", 1);
  const e32 = find(rows, "edge", "seed-224", 32);
  const t32 = find(rows, "triton", "seed-224", 32);
  const notRun = notRunResult;

  const target1 = `(1) single-image p50 within ${TARGETS.p50OverFloorMs} ms of its floor (vit-tiny, seed link)`;
  if (e1) {
    const gap = e1.gapMs;
    out.push({
      id: "edge-floor",
      target: target1,
      result: `p50 ${f(e1.latencyMs.p50)} ms, floor ${f(e1.floor.ms)} ms: ${f(gap)} ms above (median per call)`,
      verdict: gap <= TARGETS.p50OverFloorMs ? "PASS" : "MISS",
      why: edgeAccount(e1, ctx),
    });
  } else out.push(notRun("edge-floor", target1));

  const target2 = `(1) ≥ ${TARGETS.singleSpeedup}x faster than (3) at batch 1 (p50, vit-tiny, seed link)`;
  if (e1 && t1) {
    const ratio = t1.latencyMs.p50 / e1.latencyMs.p50;
    const floorRatio = t1.floor.ms / e1.floor.ms;
    const wanUp = t1.hops.find((h) => h.role === "wan")?.bytesUpPerCall ?? 0;
    const extra = slowStartRtts(wanUp);
    const rtt = t1.floor.rttMs;
    out.push({
      id: "single-speedup",
      target: target2,
      result: `(3) ${f(t1.latencyMs.p50)} ms / (1) ${f(e1.latencyMs.p50)} ms = ${f(ratio, 2)}x`,
      verdict: ratio >= TARGETS.singleSpeedup ? "PASS" : "MISS",
      why:
        `At their floors the ratio would be ${f(floorRatio, 2)}x ((3) ${f(t1.floor.ms)} ms vs ` +
        `(1) ${f(e1.floor.ms)} ms): with ${f(rtt)} ms RTT and ${f(wanUp / 1024, 0)} KiB per ` +
        `image at ${f(t1.hops[0]?.upMbit ?? 0, 0)} Mbit/s, the link alone cannot make (3) ` +
        `${TARGETS.singleSpeedup}x slower than (1)'s RTT + compute` +
        (floorRatio >= TARGETS.singleSpeedup ? " — yet it does here; see the stages" : "") +
        `. (3): ${tritonAccount(t1)} (1): p50 ${f(e1.latencyMs.p50)} ms, floor ${f(e1.floor.ms)}. ` +
        `Not modelled: on a fresh or idle connection (slow-start restart after ~1 RTO idle) real ` +
        `TCP would need ${extra} more RTTs (~${f(extra * rtt, 0)} ms) to move (3)'s ` +
        `${f(wanUp / 1024, 0)} KiB, and none for (1)'s request, which fits the initial window; ` +
        `the seed's 182.9 ms for (3) likely includes such effects and Python-side preprocessing.`,
    });
  } else out.push(notRun("single-speedup", target2));

  const target3 = `(1) ≥ ${TARGETS.batch32Throughput}x the throughput of (3) at batch 32 (vit-tiny, seed link)`;
  if (e32 && t32) {
    const ratio = e32.imagesPerSecond / t32.imagesPerSecond;
    const floorRatio = e32.floor.imagesPerSecond / t32.floor.imagesPerSecond;
    // The edge's resize runs at the point of presence, not on the GPU host: the floor without it.
    const withoutResize = e32.floor.ms - stage(e32, "edge-resize");
    const floorRatioNoResize = 32_000 / withoutResize / t32.floor.imagesPerSecond;
    out.push({
      id: "batch32-throughput",
      target: target3,
      result: `(1) ${f(e32.imagesPerSecond)} img/s / (3) ${f(t32.imagesPerSecond)} img/s = ${f(ratio, 2)}x`,
      verdict: ratio >= TARGETS.batch32Throughput ? "PASS" : "MISS",
      why:
        `Floors: (1) ${f(e32.floor.imagesPerSecond)} img/s, (3) ${f(t32.floor.imagesPerSecond)} ` +
        `img/s (ratio ${f(floorRatio, 2)}x); without the edge's resize of 32 images ` +
        `(${f(stage(e32, "edge-resize"))} ms here, through the dev runtime's local Images binding on ` +
        `these 2 cores) (1)'s floor would be ${f(withoutResize)} ms, ${f(floorRatioNoResize, 1)}x ` +
        `(3)'s floor throughput. (1) at batch 32: ${edgeAccount(e32)} ` +
        `(3) at batch 32: ${tritonAccount(t32)} On this 2-core machine the edge's resize, the ` +
        `gpu-node's decode and the client all share the same cores (other load ` +
        `${f(e32.otherCores, 2)} / ${f(t32.otherCores, 2)} cores); in production the edge runs ` +
        `at Cloudflare and only the gpu-node's decode is on the GPU host.`,
    });
  } else out.push(notRun("batch32-throughput", target3));

  const pe = find(rows, "edge", "phone-12mp", 1);
  const pn = find(rows, "no-edge", "phone-12mp", 1);
  const target4 = `phone photos: the edge cuts WAN bytes and GPU-host CPU per image by ~${TARGETS.phoneReduction}x vs (2) (vit-tiny, seed link)`;
  if (pe && pn) {
    const bytes = pn.wanBytesPerImage / pe.wanBytesPerImage;
    const cpu = pn.cpuMsPerImage.gpuHost / pe.cpuMsPerImage.gpuHost;
    const ok = bytes >= TARGETS.phoneReduction && cpu >= TARGETS.phoneReduction;
    out.push({
      id: "phone-reduction",
      target: target4,
      result:
        `WAN ${kib(pn.wanBytesPerImage)} → ${kib(pe.wanBytesPerImage)} per image (${f(bytes, 0)}x); ` +
        `GPU-host CPU ${f(pn.cpuMsPerImage.gpuHost)} → ${f(pe.cpuMsPerImage.gpuHost)} ms per image (${f(cpu, 0)}x)`,
      verdict: ok ? "PASS" : "MISS",
      why:
        `(2)'s GPU host runs the edge (wrangler's dev runtime: workerd + the local Images binding's sharp, ` +
        `resize ${f(stage(pn, "edge-resize"))} ms wall per photo) on the original, then the ` +
        `gpu-node on the small JPEG (decode ${f(stage(pn, "gpu-decode"))} ms); (1)'s GPU host only ` +
        `runs the gpu-node on the edge's ${kib(pe.wanBytesPerImage)} (decode ` +
        `${f(stage(pe, "gpu-decode"))} ms, inference ${f(stage(pe, "gpu-inference"))} ms, gpu-node ` +
        `total ${f(stage(pe, "gpu-total"))} ms wall). The resize moves to the point of presence: ` +
        `${f(pe.cpuMsPerImage.clientSide)} ms CPU per photo there. ` +
        (cpu >= TARGETS.phoneReduction
          ? ""
          : `The CPU ratio stays below ${TARGETS.phoneReduction}x because (1)'s ` +
            `${f(pe.cpuMsPerImage.gpuHost)} ms per image on the GPU host is the gpu-node's whole ` +
            `call (HTTP, Connect, decode, the ONNX session, batching, logging), not just the ` +
            `decode; CPU comes from /proc in 10 ms ticks over ${pe.calls} calls, so it is coarse. `) +
        `Other load ${f(pe.otherCores, 2)} / ${f(pn.otherCores, 2)} cores.`,
    });
  } else out.push(notRun("phone-reduction", target4));
  return out;
}
