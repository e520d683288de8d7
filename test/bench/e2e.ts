/**
 * `npm run bench`: the seed's own workload (random-noise 224-px PNGs as base64 JSON to
 * /embed/base64, a new connection per call) through the Worker and the Node edge, and the
 * end-to-end comparison over an emulated WAN, side by side in one run —
 * (1) this project (client → edge under wrangler's dev runtime → WAN → gpu-node), (2) no edge (the original
 * photo crosses the WAN to the same edge API placed beside the gpu-node), (3) Triton-style (the
 * client preprocesses and sends FP32 tensors over KServe v2 gRPC to the test double) — over the
 * seed's link, a mobile link and loopback, with 224-px images and 12 MP phone photos, vit-tiny
 * and vit-b32. Writes .cache/bench/<run>/report.json, report.md and chart.svg.
 *
 *   npm run bench               # full, ~5-7 min on 2 cores (shared: more under load)
 *   npm run bench -- --quick    # smoke, < 1 min: vit-tiny, the targets' rows
 *
 * Every server is a child process (gpu-node CLI, two edges in wrangler's dev runtime, the edge on
 * Node, the KServe double, the WAN emulator); this process is the client. Progress goes to stderr, the report to stdout.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { GRPCInferenceService } from "../../proto/gen/inference/grpc_service_pb.js";
import { parseCli } from "../support/cli.ts";
import { BENCH_GPU_NODE, type GpuNodeProcess, ROOT, spawnGpuNode } from "../support/processes.ts";
import { installedVersion } from "../support/report.ts";
import { median } from "../support/stats.ts";
import { edgeClient, type KServeClient, kserveClient, seedClient } from "./e2e/clients.ts";
import {
  type InputName,
  type InputSet,
  phonePhotos,
  realPhonePhoto,
  seedImages,
  seedNoisePngs,
} from "./e2e/inputs.ts";
import {
  type BackendName,
  type Hop,
  type Row,
  type RowMeasurer,
  type RowSpec,
  startRow,
  type VariantId,
} from "./e2e/measure.ts";
import { FULL, type Plan, QUICK, type Scenario } from "./e2e/plan.ts";
import {
  type DoubleChild,
  type EdgeDev,
  startDouble,
  startEdgeDev,
  startNodeEdge,
  startWorkerdEdge,
  type WorkerDev,
} from "./e2e/stack.ts";
import { type DevProxyCost, evaluateTargets } from "./e2e/targets.ts";
import { writeReport } from "./report/index.ts";
import { PASS_THROUGH } from "./wan/link.ts";
import { startWanProcess, type WanProcess } from "./wan/process.ts";
import { PROFILES, type ProfileName } from "./wan/profiles.ts";

const THREADS = 2;
/** Rows of one batch size take turns in up to this many rounds. */
const ROUNDS = 3;
/** A row whose warm-up call took longer than this is measured in one go. */
const SLOW_CALL_MS = 1500;
/** Rows whose calls are quicker than this make an untimed call before each later round. */
const REWARM_BELOW_MS = 500;

function progress(message: string): void {
  process.stderr.write(`[bench ${(performance.now() / 1000).toFixed(1)}s] ${message}\n`);
}

/** The WAN emulator's links, by the hop they stand for. */
const LINKS = {
  /** (1) client → edge */
  edgeAccess: "edge.access",
  /** (1) client → the Worker's production bundle on workerd */
  workerAccess: "worker.access",
  /** (1) client → the edge on Node */
  nodeEdgeAccess: "node-edge.access",
  /** (1) edge → gpu-node */
  edgeBackbone: "edge.backbone",
  /** (2) client → edge beside the gpu-node */
  noEdgeDirect: "no-edge.direct",
  /** (2) edge → gpu-node, both at the GPU site */
  noEdgeLocal: "no-edge.local",
  /** (3) client → test double */
  tritonDirect: "triton.direct",
} as const;

function hopsFor(variant: VariantId, profile: ProfileName): Hop[] {
  const p = PROFILES[profile];
  switch (variant) {
    case "edge":
      return [
        { link: LINKS.edgeAccess, role: "access", settings: p.access },
        { link: LINKS.edgeBackbone, role: "wan", settings: p.backbone },
      ];
    case "worker":
      return [
        { link: LINKS.workerAccess, role: "access", settings: p.access },
        { link: LINKS.edgeBackbone, role: "wan", settings: p.backbone },
      ];
    case "node-edge":
      return [
        { link: LINKS.nodeEdgeAccess, role: "access", settings: p.access },
        { link: LINKS.edgeBackbone, role: "wan", settings: p.backbone },
      ];
    case "no-edge":
      return [
        { link: LINKS.noEdgeDirect, role: "wan", settings: p.direct },
        { link: LINKS.noEdgeLocal, role: "local", settings: PASS_THROUGH },
      ];
    case "triton":
      return [{ link: LINKS.tritonDirect, role: "wan", settings: p.direct }];
  }
}

const loopback = (port: number) => ({ host: "127.0.0.1", port });
const portOf = (url: string) => Number(new URL(url).port);

interface Backends {
  readonly name: BackendName;
  readonly gpu: GpuNodeProcess;
  readonly double: DoubleChild;
  readonly kserve: KServeClient;
  /** The double's cumulative compute (input + infer + output) and executions, read directly. */
  readonly serverCompute: () => Promise<{ ms: number; executions: number }>;
  stop(): Promise<void>;
}

async function startBackends(
  name: BackendName,
  cacheDir: string,
  wan: WanProcess,
  tritonUrl: string,
): Promise<Backends> {
  const [gpu, double] = await Promise.all([
    spawnGpuNode(
      ["--model", name, "--threads", String(THREADS), "--cache-dir", cacheDir],
      BENCH_GPU_NODE,
    ),
    startDouble(name, cacheDir, THREADS),
  ]);
  progress(
    `${name}: gpu-node ${gpu.url} (${gpu.startMs.toFixed(0)} ms), KServe double ${double.url} (${double.startMs.toFixed(0)} ms)`,
  );
  await wan.set(LINKS.edgeBackbone, { target: loopback(portOf(gpu.url)) });
  await wan.set(LINKS.noEdgeLocal, { target: loopback(portOf(gpu.url)) });
  await wan.set(LINKS.tritonDirect, { target: loopback(double.port) });
  const stats = createClient(GRPCInferenceService, createGrpcTransport({ baseUrl: double.url }));
  const kserve = kserveClient(tritonUrl, name, 32);
  return {
    name,
    gpu,
    double,
    kserve,
    async serverCompute() {
      const res = await stats.modelStatistics({ name });
      const s = res.modelStats[0];
      const i = s?.inferenceStats;
      const ns = [i?.computeInput, i?.computeInfer, i?.computeOutput].reduce(
        (sum, d) => sum + Number(d?.ns ?? 0n),
        0,
      );
      return { ms: ns / 1e6, executions: Number(s?.executionCount ?? 0n) };
    },
    async stop() {
      kserve.close();
      await Promise.all([gpu.stop(), double.stop()]);
    },
  };
}

async function versions() {
  const pkg = installedVersion;
  return {
    node: process.version,
    wrangler: await pkg("wrangler"),
    sharp: await pkg("sharp"),
    onnxruntimeNode: await pkg("onnxruntime-node"),
    connectNode: await pkg("@connectrpc/connect-node"),
  };
}

const USAGE = `usage: npm run bench -- [--quick] [--only BACKEND/PROFILE/INPUT] [--cache-dir DIR]
                       [--worker-resizer images|wasm|auto]

The seed's own workload (random-noise PNGs as base64 JSON, a new connection per call) through
the Worker and the Node edge, then the end-to-end comparison over an emulated WAN (this project,
no edge, Triton-style), ~5-7 min on 2 cores; --quick is the smoke run (< 1 min). Writes .cache/bench/<run>/report.json, report.md
and chart.svg; progress on stderr, the report on stdout. --worker-resizer sets both Workers' RESIZER
(default: wrangler.toml's, the Images binding, whose local stand-in under wrangler dev runs sharp in
wrangler's own process; auto is what a Workers Paid deployment would choose).`;

async function main(): Promise<void> {
  const { values } = parseCli(USAGE, {
    options: {
      quick: { type: "boolean", default: false },
      /** Only scenarios whose "backend/profile/input" contains this (for debugging a row). */
      only: { type: "string" },
      "cache-dir": { type: "string", default: resolve(ROOT, ".cache") },
      "worker-resizer": { type: "string" },
    },
  });
  const workerResizer = values["worker-resizer"];
  if (workerResizer !== undefined && !["images", "wasm", "auto"].includes(workerResizer)) {
    throw new Error(`--worker-resizer must be images, wasm or auto, got "${workerResizer}"`);
  }
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      progress(`${signal}: stopping`);
      process.exit(130);
    });
  }
  const chosen = values.quick ? QUICK : FULL;
  const only = values.only;
  const plan: Plan = only
    ? {
        ...chosen,
        scenarios: chosen.scenarios.filter((s) =>
          `${s.backend}/${s.profile}/${s.input}`.includes(only),
        ),
      }
    : chosen;
  const cacheDir = resolve(values["cache-dir"]);
  const started = new Date();
  const run = `e2e-${plan.mode}-${started.toISOString().replace(/[:.]/g, "-")}`;
  const outDir = join(cacheDir, "bench", run);
  await mkdir(outDir, { recursive: true });
  const env = {
    ...(await versions()),
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? "",
    loadavgAtStart: loadavg(),
    mode: plan.mode,
    date: started.toISOString(),
    workerResizer: workerResizer ?? "images (wrangler.toml)",
  };
  progress(
    `${plan.mode} run on ${env.cpus} CPUs, load ${env.loadavgAtStart.map((l) => l.toFixed(2))}`,
  );

  const [seedPng, seed, phone, real] = await Promise.all([
    seedNoisePngs(plan.seedImages),
    seedImages(plan.seedImages),
    phonePhotos(plan.phonePhotos, cacheDir),
    realPhonePhoto(),
  ]);
  const inputs = new Map<InputName, InputSet>([
    ["seed-png", seedPng],
    ["seed-224", seed],
    ["phone-12mp", phone],
  ]);
  if (real) inputs.set("phone-real", real);
  else progress("../shared/corpus absent: the real phone photo rows are skipped");
  for (const i of inputs.values()) {
    progress(
      `input ${i.name}: ${i.images.length} images, mean ${(i.meanBytes / 1024).toFixed(1)} KiB`,
    );
  }

  const token = randomBytes(24).toString("base64url");
  const apiKey = `bench-${randomBytes(18).toString("base64url")}`;
  const apiKeyHash = createHash("sha256").update(apiKey).digest("hex");
  // The gpu-node child reads its token from the environment (never on a command line).
  process.env.GPU_NODE_TOKEN = token;

  const wan = await startWanProcess();
  const edges: EdgeDev[] = [];
  let backends: Backends | undefined;
  const rows: Row[] = [];
  let edgeNoopP50Ms = Number.NaN;
  let workerNoopP50Ms = Number.NaN;
  let devProxy: DevProxyCost[] = [];
  try {
    // Links first (targets are set once the servers are up), then the two edges.
    const placeholder = loopback(9);
    const backbone = await wan.open(LINKS.edgeBackbone, placeholder, PASS_THROUGH);
    const local = await wan.open(LINKS.noEdgeLocal, placeholder, PASS_THROUGH);
    const triton = await wan.open(LINKS.tritonDirect, placeholder, PASS_THROUGH);
    const edgeVars = (gpuUrl: string) => ({
      GPU_NODE_URLS: gpuUrl,
      GPU_NODE_TOKEN: token,
      API_KEY_HASHES: apiKeyHash,
      ...(workerResizer ? { RESIZER: workerResizer } : {}),
    });
    const backendOrder = [...new Set(plan.scenarios.map((s) => s.backend))];
    const started = await Promise.allSettled([
      startEdgeDev("edge", edgeVars(backbone.url), cacheDir),
      startEdgeDev("no-edge", edgeVars(local.url), cacheDir),
      startNodeEdge(edgeVars(backbone.url)),
      // No Images binding on bare workerd: its Worker resizes in WASM whatever the flag says.
      startWorkerdEdge({ ...edgeVars(backbone.url), RESIZER: "wasm" }, cacheDir),
      startBackends(backendOrder[0]!, cacheDir, wan, triton.url),
    ] as const);
    for (const s of started.slice(0, 4))
      if (s.status === "fulfilled") edges.push(s.value as EdgeDev);
    if (started[4].status === "fulfilled") backends = started[4].value;
    for (const s of started) if (s.status === "rejected") throw s.reason;
    const [edge, noEdge, nodeEdge, workerd] = edges as [WorkerDev, WorkerDev, EdgeDev, EdgeDev];
    let b = backends!;
    edgeNoopP50Ms = await noopRoundTrip(edge.workerUrl);
    workerNoopP50Ms = await noopRoundTrip(workerd.url);
    progress(
      `edges up (no-op GET /healthz p50: wrangler dev's runtime ${edgeNoopP50Ms.toFixed(1)} ms, ` +
        `workerd ${workerNoopP50Ms.toFixed(1)} ms): ${edge.workerUrl} (${edge.startMs.toFixed(0)} ms), ` +
        `${noEdge.workerUrl} (${noEdge.startMs.toFixed(0)} ms), ${nodeEdge.url} ` +
        `(${nodeEdge.startMs.toFixed(0)} ms), ${workerd.url} (${workerd.startMs.toFixed(0)} ms)`,
    );
    if (plan.scenarios.some((s) => s.input === "seed-png" && s.variants.includes("edge"))) {
      devProxy = await measureDevProxy(edge, seedPng.images, apiKey);
      progress(
        `wrangler's dev proxy, measured apart: ${devProxy
          .map(
            (d) =>
              `batch ${d.batch} ${d.viaProxyP50Ms.toFixed(1)} vs ${d.directP50Ms.toFixed(1)} ms`,
          )
          .join(", ")}`,
      );
    }
    // The Worker's rows go straight to its runtime: a deployed Worker has no dev proxy.
    const access = await wan.open(LINKS.edgeAccess, loopback(portOf(edge.workerUrl)), PASS_THROUGH);
    const workerAccess = await wan.open(
      LINKS.workerAccess,
      loopback(portOf(workerd.url)),
      PASS_THROUGH,
    );
    const nodeAccess = await wan.open(
      LINKS.nodeEdgeAccess,
      loopback(portOf(nodeEdge.url)),
      PASS_THROUGH,
    );
    const direct = await wan.open(
      LINKS.noEdgeDirect,
      loopback(portOf(noEdge.workerUrl)),
      PASS_THROUGH,
    );
    const edgeCall = edgeClient(access.url, apiKey);
    const noEdgeCall = edgeClient(direct.url, apiKey);
    // The edges beside the client: their process, the seed's workload (base64 JSON, a new
    // connection per call) and the keep-alive /v1/embeddings client.
    const beside = {
      edge: { pid: edge.pid, seed: seedClient(access.url, apiKey), keepAlive: edgeCall },
      worker: {
        pid: workerd.pid,
        seed: seedClient(workerAccess.url, apiKey),
        keepAlive: edgeClient(workerAccess.url, apiKey),
      },
      "node-edge": {
        pid: nodeEdge.pid,
        seed: seedClient(nodeAccess.url, apiKey),
        keepAlive: edgeClient(nodeAccess.url, apiKey),
      },
    };

    for (const backend of backendOrder) {
      if (b.name !== backend) {
        backends = undefined;
        await b.stop();
        b = await startBackends(backend, cacheDir, wan, triton.url);
        backends = b;
      }
      for (const scenario of plan.scenarios.filter((s) => s.backend === backend)) {
        const input = inputs.get(scenario.input);
        if (!input) continue;
        const profile = PROFILES[scenario.profile];
        for (const variant of scenario.variants) {
          for (const hop of hopsFor(variant, scenario.profile)) {
            await wan.set(hop.link, { link: hop.settings });
          }
        }
        progress(`${backend} · ${profile.name} (${profile.summary}) · ${input.name}`);
        const seedWorkload = input.name === "seed-png";
        const variantProcesses = (variant: VariantId) => {
          const gpuNodePids = [b.gpu.pid];
          switch (variant) {
            case "edge":
            case "worker":
            case "node-edge": {
              const e = beside[variant];
              return {
                call: seedWorkload ? e.seed : e.keepAlive,
                gpuHostPids: [b.gpu.pid],
                clientPids: [process.pid, e.pid],
                edgePids: [e.pid],
                gpuNodePids,
              };
            }
            case "no-edge":
              return {
                call: noEdgeCall,
                gpuHostPids: [b.gpu.pid, noEdge.pid],
                clientPids: [process.pid],
                edgePids: [noEdge.pid],
                gpuNodePids,
              };
            case "triton":
              return {
                call: b.kserve.call,
                gpuHostPids: [b.double.pid],
                clientPids: [process.pid],
                edgePids: [],
                gpuNodePids: [b.double.pid],
                serverCompute: b.serverCompute,
              };
          }
        };
        const perVariant = scenario.variants.map((variant) => {
          const base: Omit<RowSpec, "batch" | "warmupCalls" | "calls"> = {
            variant,
            profile: scenario.profile,
            backend,
            input: input.name,
            images: input.images,
            hops: hopsFor(variant, scenario.profile),
            wan,
            ...variantProcesses(variant),
          };
          return rowSpecs(scenario, variant).map((r) => ({ ...base, ...r }) as RowSpec);
        });
        const batchSizes = [...new Set(perVariant.flat().map((r) => r.batch))].sort(
          (x, y) => x - y,
        );
        for (const batch of batchSizes) {
          const specs = perVariant.flat().filter((r) => r.batch === batch);
          rows.push(...(await measureInTurns(specs)));
        }
      }
    }
  } catch (error) {
    for (const e of edges) process.stderr.write(`edge output tail:\n${e.output()}\n`);
    if (backends) {
      process.stderr.write(`gpu-node output tail:\n${backends.gpu.output()}\n`);
      process.stderr.write(`double output tail:\n${backends.double.output()}\n`);
    }
    throw error;
  } finally {
    await backends?.stop();
    await Promise.all(edges.map((e) => e.stop()));
    await wan.stop();
  }

  const wallS = performance.now() / 1000;
  const context = {
    edgeNoopP50Ms,
    workerNoopP50Ms,
    devProxy,
    loadavgAtStart: env.loadavgAtStart,
  };
  const targets = evaluateTargets(rows, context);
  const report = {
    run,
    env: { ...env, loadavgAtEnd: loadavg(), wallS },
    plan,
    profiles: PROFILES,
    inputs: [...inputs.values()].map((i) => ({
      name: i.name,
      description: i.description,
      count: i.images.length,
      meanBytes: i.meanBytes,
      minBytes: Math.min(...i.images.map((b) => b.length)),
      maxBytes: Math.max(...i.images.map((b) => b.length)),
    })),
    context,
    rows,
    targets,
  };
  const files = await writeReport(outDir, report);
  process.stdout.write(files.markdown);
  process.stdout.write(`\nWrote ${files.paths.join(", ")}\n`);
}

/**
 * p50 of a no-op request straight to an edge (GET /healthz): what the local dev runtime itself
 * costs.
 */
async function noopRoundTrip(url: string, { calls = 30, warmup = 5 } = {}): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < warmup + calls; i++) {
    const t0 = performance.now();
    await (await fetch(`${url}/healthz`)).arrayBuffer();
    if (i >= warmup) times.push(performance.now() - t0);
  }
  return median(times);
}

/**
 * wrangler's dev proxy, measured apart on the seed's workload: the same calls (the seed's client,
 * a new connection each) through the proxy and straight to the Worker's runtime, in turns, on
 * loopback; what it adds is the median of each round's difference (a batch of 32 varies by ±10 ms
 * from call to call on this machine, as much as the proxy costs it). A no-op GET said 2 ms; a
 * batch of 32 (6.4 MB up, 340 KB of JSON down) costs it 8–16 ms.
 */
async function measureDevProxy(
  edge: WorkerDev,
  images: readonly Buffer[],
  apiKey: string,
): Promise<DevProxyCost[]> {
  const ways = [seedClient(edge.url, apiKey), seedClient(edge.workerUrl, apiKey)] as const;
  const out: DevProxyCost[] = [];
  for (const [batch, calls] of [
    [1, 30],
    [32, 20],
  ] as const) {
    const times: [number[], number[]] = [[], []];
    for (let k = 0; k < 2 + calls; k++) {
      const sent = Array.from(
        { length: batch },
        (_, j) => images[(k * batch + j) % images.length]!,
      );
      for (const w of [0, 1] as const) {
        const t0 = performance.now();
        await ways[w](sent);
        if (k >= 2) times[w].push(performance.now() - t0);
      }
    }
    out.push({
      batch,
      calls,
      viaProxyP50Ms: median(times[0]),
      directP50Ms: median(times[1]),
      addsMs: median(times[0].map((t, i) => t - times[1][i]!)),
    });
  }
  return out;
}

/**
 * The variants' rows of one batch size, measured in turns: warm-ups, then up to ROUNDS rounds in
 * which each row measures its next share of calls, so that background
 * load on this shared machine falls on all of them alike. Rows whose calls take seconds (slow
 * links, big batches on a busy machine) run in one go: their time is the link's or the CPU's,
 * and idle gaps would only close connections.
 */
async function measureInTurns(specs: readonly RowSpec[]): Promise<Row[]> {
  const measurers: { spec: RowSpec; row: RowMeasurer }[] = [];
  for (const spec of specs) measurers.push({ spec, row: await startRow(spec) });
  const slow = measurers.some((m) => m.row.warmupMs > SLOW_CALL_MS);
  const rounds = slow ? 1 : Math.min(ROUNDS, ...specs.map((s) => s.calls));
  for (let r = 0; r < rounds; r++) {
    for (const { spec, row } of measurers) {
      const share =
        Math.floor(((r + 1) * spec.calls) / rounds) - Math.floor((r * spec.calls) / rounds);
      // Between rounds the others ran: a fast row's idle keep-alive connection may have closed,
      // and a handshake RTT would weigh on its next call, so it first makes one untimed call.
      if (share > 0) await row.chunk(share, r > 0 && row.warmupMs < REWARM_BELOW_MS);
    }
  }
  return measurers.map(({ spec, row }) => {
    const done = row.finish();
    progress(
      `  ${spec.variant} batch ${done.batch}: p50 ${done.latencyMs.p50.toFixed(1)} ms ` +
        `(floor ${done.floor.ms.toFixed(1)}), ${done.imagesPerSecond.toFixed(1)} img/s, ` +
        `WAN ${(done.wanBytesPerImage / 1024).toFixed(1)} KiB/img, other load ${done.otherCores.toFixed(2)}`,
    );
    return done;
  });
}

/** The rows of one variant in a scenario: single images first, then each batch size. */
function rowSpecs(scenario: Scenario, variant: VariantId) {
  const o = scenario.override?.[variant];
  const single = o?.single ?? scenario.single;
  const batchRuns = o?.batchRuns ?? scenario.batchRuns ?? single;
  return [
    { batch: 1, ...single },
    ...(o?.batches ?? scenario.batches ?? []).map((batch) => ({ batch, ...batchRuns })),
  ];
}

main().then(
  // Exit explicitly: idle keep-alive sockets must not hold the process, and exiting kills any
  // child still running (test/support/processes.ts).
  () => process.exit(0),
  (error: unknown) => {
    const cause =
      error instanceof Error && error.cause ? `\ncaused by: ${String(error.cause)}` : "";
    process.stderr.write(
      `bench failed: ${error instanceof Error ? (error.stack ?? error.message) : error}${cause}\n`,
    );
    process.exit(1);
  },
);
