/**
 * GPU-host benchmark (`npm run bench:gpu-host`): how many images per second the gpu-node's CPU
 * side serves through the full RPC path (gRPC over h2c, or Connect over HTTP/1.1 as the edge
 * calls it; protobuf, admission, decode and preprocessing, micro-batching, the no-op backend: no
 * model) for 256-px JPEGs (341x256 q80, what the edge sends by default) and exact 224x224 JPEGs
 * (RESIZE_MODE=crop-224), with 1, 2, 4, … up to the core count of processes (--processes), and
 * the scaling efficiency against one process. Then, in this process: CPU per image of each
 * decoder, and the cost of shipping pixels between processes (the onnxruntime backend's pixel
 * channel).
 *
 *   node test/bench/gpu-host.ts [--quick] [--max-processes N | --counts 1,16] [--images-per-call N]
 *                               [--protocol grpc|connect] [--stub-decoder]
 *                               [--server-args="--decode-concurrency 16 ..."]
 *
 * Self-contained: generated images, loopback only, no network, no python. Prints Markdown; writes
 * the full results as JSON to $OUT/ if OUT is set, else to .cache/bench/. The load comes from
 * this process (raw calls with pre-encoded requests, so that the client costs little); its CPU,
 * the server's (all its processes) and everyone else's ("other load") are reported beside each
 * row.
 */
import { fork } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import { availableParallelism, cpus, loadavg } from "node:os";
import { join, resolve } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import sharp from "sharp";
import { MicroBatcher } from "../../gpu-node/batching/batcher.ts";
import { createRemoteBatcher, hostChannel } from "../../gpu-node/cluster/channel.ts";
import {
  chooseJpegDecoder,
  decodeForClip,
  decodeFull,
  jpegFastPath,
} from "../../gpu-node/preprocess/decode.ts";
import type { JpegDecoderName } from "../../gpu-node/preprocess/jpeg-fast-path.ts";
import { loadClipNative } from "../../imaging/native/clip-native.ts";
import {
  EmbedRequestSchema,
  EmbedResponseSchema,
} from "../../proto/gen/embedder/v1/embedder_pb.js";
import { parseCli } from "../support/cli.ts";
import { BENCH_HEIGHT, BENCH_WIDTH, benchPhotos } from "../support/images.ts";
import { machineBusySeconds, ownCpuSeconds, treeCpuSeconds } from "../support/proc.ts";
import { BENCH_GPU_NODE, type GpuNodeProcess, ROOT, spawnGpuNode } from "../support/processes.ts";
import { fmt, markdownTable, pct } from "../support/report.ts";
import { median } from "../support/stats.ts";

const IMAGE_BYTES = 224 * 224 * 3;
const LIMITS = { maxPixels: 100_000_000, maxBytes: 20 * 1024 * 1024 } as const;
/** The issue's targets on a 16-core host (context for the table, not a verdict here). */
const TARGETS = { exact224: 20_000, px256: 6000, efficiency: 0.6, cores: 16 } as const;

interface Plan {
  readonly reps: number;
  readonly warmupMs: number;
  readonly measureMs: number;
  readonly decoderMs: number;
  readonly channelImages: number;
}
const FULL: Plan = {
  reps: 2,
  warmupMs: 1500,
  measureMs: 4000,
  decoderMs: 1500,
  channelImages: 6000,
};
const QUICK: Plan = {
  reps: 1,
  warmupMs: 700,
  measureMs: 1500,
  decoderMs: 600,
  channelImages: 2000,
};

function progress(message: string): void {
  process.stderr.write(`[gpu-host ${(performance.now() / 1000).toFixed(1)}s] ${message}\n`);
}

// ---------------------------------------------------------------------------------------------
// Inputs

type Kind = "256-px" | "exact-224";
const KINDS: readonly Kind[] = ["256-px", "exact-224"];

/** The edge's two outputs for the same photos: 341x256 q80, and its 224x224 centre crop at q80. */
async function inputs(count: number): Promise<Record<Kind, Buffer[]>> {
  const px256 = await benchPhotos(count);
  const exact = await Promise.all(
    px256.map(async (jpeg) => {
      const { data } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
      const left = Math.round((BENCH_WIDTH - 224) / 2);
      const top = Math.round((BENCH_HEIGHT - 224) / 2);
      const crop = Buffer.alloc(IMAGE_BYTES);
      for (let y = 0; y < 224; y++) {
        const from = ((top + y) * BENCH_WIDTH + left) * 3;
        data.copy(crop, y * 224 * 3, from, from + 224 * 3);
      }
      return sharp(crop, { raw: { width: 224, height: 224, channels: 3 } })
        .jpeg({ quality: 80 })
        .toBuffer();
    }),
  );
  return { "256-px": px256, "exact-224": exact };
}

// ---------------------------------------------------------------------------------------------
// CPU accounting

// ---------------------------------------------------------------------------------------------
// Load: raw gRPC over HTTP/2 or Connect over HTTP/1.1, pre-encoded requests

const PATH = "/embedder.v1.EmbedderService/Embed";

/**
 * How the load reaches the gpu-node: gRPC over h2c (what gRPC clients and batch jobs use), or the
 * Connect protocol with binary protobuf over HTTP/1.1 keep-alive (what the edge's Worker sends,
 * through the tunnel: docs/deployment.md).
 */
type Protocol = "grpc" | "connect";
const PROTOCOLS: readonly Protocol[] = ["grpc", "connect"];
const PROTOCOL_LABEL: Record<Protocol, string> = {
  grpc: "gRPC (h2c)",
  connect: "Connect over HTTP/1.1 keep-alive (the edge's path)",
};

/** One call's request body: the protobuf message, in a gRPC frame for gRPC. */
function requestBody(
  protocol: Protocol,
  images: readonly Buffer[],
  perCall: number,
  offset: number,
): Buffer {
  const message = toBinary(
    EmbedRequestSchema,
    create(EmbedRequestSchema, {
      images: Array.from({ length: perCall }, (_, i) => ({
        id: String(i),
        data: images[(offset + i) % images.length]!,
      })),
    }),
  );
  const bytes = Buffer.from(message.buffer, message.byteOffset, message.length);
  if (protocol === "connect") return bytes;
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  bytes.copy(frame, 5);
  return frame;
}

/** A client connection that makes unary calls; `call` resolves with the EmbedResponse bytes. */
interface Link {
  call(body: Buffer): Promise<Buffer>;
  close(): void;
}

/**
 * A gRPC link is one HTTP/2 connection. A Connect link holds up to two HTTP/1.1 keep-alive
 * connections, one per call in flight (HTTP/1.1 carries one call at a time).
 */
function openLink(url: string, protocol: Protocol): Link {
  if (protocol === "grpc") {
    const session = http2.connect(url, { settings: { initialWindowSize: 4 * 1024 * 1024 } });
    session.on("error", () => {});
    return {
      call: async (body) => (await grpcCall(session, body)).subarray(5),
      close: () => session.close(),
    };
  }
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  const target = new URL(PATH, url);
  return { call: (body) => connectCall(agent, target, body), close: () => agent.destroy() };
}

/** One Connect unary call; resolves with the response message, rejects on any other status. */
function connectCall(agent: http.Agent, target: URL, body: Buffer): Promise<Buffer> {
  return new Promise((resolveCall, reject) => {
    const req = http.request(
      target,
      {
        agent,
        method: "POST",
        headers: {
          "content-type": "application/proto",
          "connect-protocol-version": "1",
          "content-length": body.length,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("error", reject);
        res.on("end", () => {
          const all = Buffer.concat(chunks);
          if (res.statusCode === 200) resolveCall(all);
          else reject(new Error(`HTTP ${res.statusCode}: ${all.toString("utf8").slice(0, 200)}`));
        });
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** One unary call on `session`; resolves with the response body, rejects on a non-OK status. */
function grpcCall(session: http2.ClientHttp2Session, body: Buffer): Promise<Buffer> {
  return new Promise((resolveCall, reject) => {
    const req = session.request({
      ":method": "POST",
      ":path": PATH,
      "content-type": "application/grpc+proto",
      te: "trailers",
    });
    const chunks: Buffer[] = [];
    let status: string | undefined;
    req.on("trailers", (t) => {
      status = String(t["grpc-status"] ?? "");
    });
    req.on("response", (h) => {
      if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
    });
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("error", reject);
    req.on("end", () => {
      if (status === "0") resolveCall(Buffer.concat(chunks));
      else reject(new Error(`grpc-status ${status}`));
    });
    req.end(body);
  });
}

interface RpcRun {
  readonly kind: Kind;
  readonly processes: number;
  readonly rep: number;
  readonly imagesPerSecond: number;
  readonly images: number;
  readonly elapsedMs: number;
  readonly serverCores: number;
  readonly clientCores: number;
  readonly otherCores: number;
  readonly serverCpuMsPerImage: number;
}

/**
 * Drives `node` with `connections` links (the primary hands each connection to a worker in turn),
 * two calls in flight on each, `perCall` images per call, for plan.warmupMs + measureMs.
 */
async function drive(
  node: GpuNodeProcess,
  plan: Plan,
  protocol: Protocol,
  bodies: readonly Buffer[],
  perCall: number,
  connections: number,
): Promise<Omit<RpcRun, "kind" | "processes" | "rep">> {
  const links = Array.from({ length: connections }, () => openLink(node.url, protocol));
  // Every link's first call is checked in full: the right number of 512-d vectors.
  await Promise.all(
    links.map(async (s, i) => {
      const res = await s.call(bodies[i % bodies.length]!);
      const decoded = fromBinary(EmbedResponseSchema, res);
      if (decoded.embeddings.length !== perCall || decoded.dimension !== 512) {
        throw new Error(`expected ${perCall} 512-d vectors, got ${decoded.embeddings.length}`);
      }
    }),
  );
  let counting = false;
  let stop = false;
  let images = 0;
  let seq = 0;
  const loop = async (s: Link) => {
    while (!stop) {
      await s.call(bodies[seq++ % bodies.length]!);
      if (counting && !stop) images += perCall;
    }
  };
  const loops = links.flatMap((s) => [loop(s), loop(s)]);
  await new Promise((r) => setTimeout(r, plan.warmupMs));
  const t0 = performance.now();
  const cpu0 = {
    server: treeCpuSeconds(node.pid),
    own: ownCpuSeconds(),
    machine: machineBusySeconds(),
  };
  counting = true;
  await new Promise((r) => setTimeout(r, plan.measureMs));
  counting = false;
  const elapsedMs = performance.now() - t0;
  const server = treeCpuSeconds(node.pid) - cpu0.server;
  const own = ownCpuSeconds() - cpu0.own;
  const machine = machineBusySeconds() - cpu0.machine;
  stop = true;
  await Promise.all(loops);
  for (const s of links) s.close();
  const seconds = elapsedMs / 1000;
  return {
    imagesPerSecond: images / seconds,
    images,
    elapsedMs,
    serverCores: server / seconds,
    clientCores: own / seconds,
    otherCores: Math.max(0, machine - server - own) / seconds,
    serverCpuMsPerImage: (server * 1000) / images,
  };
}

function processCounts(max: number): number[] {
  const counts: number[] = [];
  for (let n = 1; n < max; n *= 2) counts.push(n);
  counts.push(max);
  return counts;
}

async function benchRpc(
  plan: Plan,
  protocol: Protocol,
  images: Record<Kind, Buffer[]>,
  counts: readonly number[],
  perCall: number,
  serverArgs: readonly string[],
  entry: string | undefined,
): Promise<RpcRun[]> {
  const runs: RpcRun[] = [];
  const bodies: Record<Kind, Buffer[]> = {
    "256-px": [],
    "exact-224": [],
  };
  for (const kind of Object.keys(bodies) as Kind[]) {
    for (let i = 0; i < 16; i++) {
      bodies[kind].push(requestBody(protocol, images[kind], perCall, i * perCall));
    }
  }
  for (let rep = 0; rep < plan.reps; rep++) {
    // Alternate the order between repetitions, so that drifting background load spreads evenly.
    const order = rep % 2 === 0 ? counts : [...counts].reverse();
    for (const processes of order) {
      const node = await spawnGpuNode(
        [
          "--backend",
          "noop",
          "--processes",
          String(processes),
          "--metrics-port",
          "0",
          ...serverArgs,
        ],
        { ...BENCH_GPU_NODE, ...(entry ? { entry } : {}) },
      );
      const connections = Math.max(4, 2 * processes);
      try {
        // A fresh node is still compiling and sizing its heap after one warm-up: whichever kind
        // went first cost ~20% more CPU per call (--stub-decoder, 2-core machine). So both kinds
        // run once, unmeasured, before either is measured.
        for (const kind of KINDS) {
          await drive(
            node,
            { ...plan, measureMs: plan.warmupMs },
            protocol,
            bodies[kind],
            perCall,
            connections,
          );
        }
        for (const kind of KINDS) {
          const r = await drive(node, plan, protocol, bodies[kind], perCall, connections);
          runs.push({ kind, processes, rep, ...r });
          progress(
            `${kind}, ${processes} process(es): ${r.imagesPerSecond.toFixed(0)} img/s ` +
              `(server ${r.serverCores.toFixed(2)} cores, client ${r.clientCores.toFixed(2)}, other ${r.otherCores.toFixed(2)})`,
          );
        }
      } catch (error) {
        process.stderr.write(`gpu-node output tail:\n${node.output()}\n`);
        throw error;
      } finally {
        await node.stop();
      }
    }
  }
  return runs;
}

// ---------------------------------------------------------------------------------------------
// Decoders, one process (item 3: what each costs per image)

interface DecoderRun {
  readonly label: string;
  readonly inFlight: number;
  readonly imagesPerSecond: number;
  readonly cpuUsPerImage: number;
}

async function benchDecoders(plan: Plan, images: Record<Kind, Buffer[]>): Promise<DecoderRun[]> {
  const fast = (engine: JpegDecoderName) => async (d: Buffer) => {
    if ((await jpegFastPath()) !== engine) {
      chooseJpegDecoder(engine);
      if ((await jpegFastPath()) !== engine) throw new Error(`the ${engine} decoder is off`);
    }
    return decodeForClip(d, LIMITS);
  };
  const engines: JpegDecoderName[] = loadClipNative().addon ? ["native", "wasm"] : ["wasm"];
  const cases: [string, Buffer[], (d: Buffer) => Promise<unknown>][] = [
    ["256-px JPEG, sharp (the full path)", images["256-px"], (d) => decodeFull(d, LIMITS)],
    ...engines.map((e): [string, Buffer[], (d: Buffer) => Promise<unknown>] => [
      `256-px JPEG, ${e} decode + Pillow resize (fast path)`,
      images["256-px"],
      fast(e),
    ]),
    ["exact-224 JPEG, sharp (the full path)", images["exact-224"], (d) => decodeFull(d, LIMITS)],
    ...engines.map((e): [string, Buffer[], (d: Buffer) => Promise<unknown>] => [
      `exact-224 JPEG, ${e} decode (fast path)`,
      images["exact-224"],
      fast(e),
    ]),
  ];
  const out: DecoderRun[] = [];
  for (const [label, set, decode] of cases) {
    for (const inFlight of [1, 4]) {
      for (let i = 0; i < 16; i++) await decode(set[i % set.length]!);
      let n = 0;
      const t0 = performance.now();
      const c0 = ownCpuSeconds();
      await Promise.all(
        Array.from({ length: inFlight }, async () => {
          while (performance.now() - t0 < plan.decoderMs) await decode(set[n++ % set.length]!);
        }),
      );
      const ms = performance.now() - t0;
      const cpu = ownCpuSeconds() - c0;
      out.push({
        label,
        inFlight,
        imagesPerSecond: (n * 1000) / ms,
        cpuUsPerImage: (cpu * 1e6) / n,
      });
      progress(`${label}, ${inFlight} in flight: ${((n * 1000) / ms).toFixed(0)} img/s`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Pixel channel: 150,528-byte images from a child process to this one's batcher and back

interface ChannelRun {
  readonly images: number;
  readonly imagesPerSecond: number;
  readonly megabytesPerSecond: number;
  /** CPU per image on the sending side (the worker) and the receiving side (the primary). */
  readonly senderCpuUsPerImage: number;
  readonly receiverCpuUsPerImage: number;
}

async function channelChild(): Promise<void> {
  const { Socket } = await import("node:net");
  const remote = createRemoteBatcher(new Socket({ fd: 3, readable: true, writable: true }));
  const count = Number(process.argv[3]);
  const pixels = Array.from({ length: 8 }, (_, i) => new Uint8Array(IMAGE_BYTES).fill(i));
  let next = 0;
  const t0 = performance.now();
  const c0 = ownCpuSeconds();
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < count) {
        const i = next++;
        remote.expect(1);
        const p = remote.embed(pixels[i % 8]!);
        remote.expect(-1);
        const r = await p;
        if (r.vector[0] !== i % 8) throw new Error("pixel channel: a vector reached another image");
      }
    }),
  );
  process.send!({ ms: performance.now() - t0, cpu: ownCpuSeconds() - c0 });
  remote.close();
}

async function benchChannel(plan: Plan): Promise<ChannelRun> {
  const batcher = new MicroBatcher({
    maxBatchSize: 32,
    maxWaitMs: 2,
    maxConcurrentBatches: 1,
    // A backend that only reads each image's first byte: the cost left is the transfer.
    run: async (batch) => ({
      vectors: batch.map((p) =>
        Float32Array.from({ length: 512 }, (_, d) => (d === 0 ? p[0]! : 1)),
      ),
      packUs: 0,
      inferUs: 0,
    }),
  });
  const child = fork(import.meta.filename, ["--pixel-channel-child", String(plan.channelImages)], {
    stdio: ["ignore", "inherit", "inherit", "pipe", "ipc"],
  });
  hostChannel(child.stdio[3] as import("node:net").Socket, {
    batcher,
    ready: async () => ({ ready: true }),
    onInternalError: (e) => progress(`pixel channel error: ${String(e)}`),
  });
  const c0 = ownCpuSeconds();
  const result = await new Promise<{ ms: number; cpu: number }>((r) =>
    child.once("message", (m) => r(m as { ms: number; cpu: number })),
  );
  const receiver = ownCpuSeconds() - c0;
  child.kill();
  const n = plan.channelImages;
  return {
    images: n,
    imagesPerSecond: (n * 1000) / result.ms,
    megabytesPerSecond: (n * IMAGE_BYTES) / 1e6 / (result.ms / 1000),
    senderCpuUsPerImage: (result.cpu * 1e6) / n,
    receiverCpuUsPerImage: (receiver * 1e6) / n,
  };
}

// ---------------------------------------------------------------------------------------------
// Report

function report(
  runs: readonly RpcRun[],
  decoders: readonly DecoderRun[],
  channel: ChannelRun,
  protocol: Protocol,
  perCall: number,
  kib: Record<Kind, number>,
  backend: string,
): string {
  const out: string[] = [];
  const byKey = new Map<string, RpcRun[]>();
  for (const r of runs) {
    const key = `${r.kind}/${r.processes}`;
    byKey.set(key, [...(byKey.get(key) ?? []), r]);
  }
  const counts = [...new Set(runs.map((r) => r.processes))].sort((a, b) => a - b);
  const rows: string[][] = [];
  for (const kind of ["exact-224", "256-px"] as const) {
    const base = median((byKey.get(`${kind}/1`) ?? []).map((r) => r.imagesPerSecond));
    for (const n of counts) {
      const rs = byKey.get(`${kind}/${n}`) ?? [];
      const ips = median(rs.map((r) => r.imagesPerSecond));
      rows.push([
        `${kind} (${kib[kind].toFixed(1)} KiB)`,
        String(n),
        fmt(ips, 0),
        rs.map((r) => fmt(r.imagesPerSecond, 0)).join(" / "),
        fmt(ips / n, 0),
        pct(ips / (n * base)),
        fmt(median(rs.map((r) => r.serverCpuMsPerImage)), 3),
        fmt(1000 / median(rs.map((r) => r.serverCpuMsPerImage)), 0),
        `${fmt(median(rs.map((r) => r.serverCores)), 2)} / ${fmt(median(rs.map((r) => r.clientCores)), 2)} / ${fmt(Math.max(...rs.map((r) => r.otherCores)), 2)}`,
      ]);
    }
  }
  out.push(
    `gpu-node through ${PROTOCOL_LABEL[protocol]}, ${backend}, ${perCall} image${perCall === 1 ? "" : "s"} per call, ` +
      (protocol === "grpc"
        ? "2 calls in flight per connection, max(4, 2 × processes) connections:\n"
        : "2 calls in flight per link of two connections, max(4, 2 × processes) links:\n"),
  );
  out.push(
    markdownTable(
      [
        "images",
        "processes",
        "img/s",
        "img/s per run",
        "img/s per process",
        "scaling efficiency",
        "server CPU ms/img",
        "img/s per server core",
        "cores: server / client / other",
      ],
      rows,
    ),
  );
  out.push(
    "\nScaling efficiency = img/s ÷ (processes × img/s of 1 process). One process already uses more " +
      "than one core (sharp's threads, HTTP/2, GC), so img/s per server core (CPU the gpu-node's " +
      "processes used, all of them) shows how much of the CPU turns into images; other load is " +
      "CPU used meanwhile by processes that are neither the gpu-node nor this client.\n",
  );
  out.push(
    `\nTargets on a ${TARGETS.cores}-core host: ≥ ${TARGETS.exact224} img/s exact-224, ≥ ${TARGETS.px256} img/s 256-px, scaling efficiency ≥ ${pct(TARGETS.efficiency)} from 1 to ${TARGETS.cores} processes.\n`,
  );
  out.push(
    "\nDecoders in one process (CPU per image). The gpu-node takes the fast paths for plain " +
      "JPEGs: exact-224 gives sharp's bytes, 256-px gives Pillow's (open_clip's) bytes:\n",
  );
  out.push(
    markdownTable(
      ["decoder", "in flight", "img/s", "CPU µs/img"],
      decoders.map((d) => [
        d.label,
        String(d.inFlight),
        fmt(d.imagesPerSecond, 0),
        fmt(d.cpuUsPerImage, 0),
      ]),
    ),
  );
  out.push(
    `\nPixel channel (onnxruntime backend: worker → primary, 150,528 B per image, socketpair): ` +
      `${fmt(channel.imagesPerSecond, 0)} img/s (${fmt(channel.megabytesPerSecond, 0)} MB/s), ` +
      `CPU ${fmt(channel.senderCpuUsPerImage, 0)} µs/img sending + ${fmt(channel.receiverCpuUsPerImage, 0)} µs/img receiving.\n`,
  );
  return out.join("");
}

const USAGE = `usage: npm run bench:gpu-host -- [--quick] [--max-processes N | --counts 1,16]
                              [--images-per-call N] [--protocol grpc|connect] [--stub-decoder]
                              [--server-args="--decode-concurrency 16 ..."]

Images per second through the gpu-node's CPU side (no-op backend) with 1, 2, 4, … processes, then
each decoder's CPU per image and the pixel channel's cost. --images-per-call (default 8): 1 is a
phone's single upload through the edge. --protocol: grpc (h2c, the default) or connect (binary
protobuf over HTTP/1.1 keep-alive, as the edge's Worker sends). --stub-decoder: one process whose
decoder returns fixed pixels without reading the file, so the CPU per image is the call's own
cost (HTTP, Connect, batching, the no-op backend). Prints Markdown; writes JSON to $OUT/ if OUT is
set, else to .cache/bench/.`;

async function main(): Promise<void> {
  const { values } = parseCli(USAGE, {
    options: {
      quick: { type: "boolean", default: false },
      "max-processes": { type: "string" },
      "images-per-call": { type: "string", default: "8" },
      "server-args": { type: "string", default: "" },
      protocol: { type: "string", default: "grpc" },
      counts: { type: "string" },
      "stub-decoder": { type: "boolean", default: false },
    },
  });
  const stub = values["stub-decoder"];
  const protocol = values.protocol as Protocol;
  if (!PROTOCOLS.includes(protocol)) throw new Error("--protocol is grpc or connect");
  const plan = values.quick ? QUICK : FULL;
  const cores = availableParallelism();
  const max = Number(values["max-processes"] ?? cores);
  const perCall = Number(values["images-per-call"]);
  if (!Number.isSafeInteger(max) || max < 1 || !Number.isSafeInteger(perCall) || perCall < 1) {
    throw new Error("--max-processes and --images-per-call must be positive integers");
  }
  const counts = values.counts
    ? values.counts.split(",").map((c) => Number(c.trim()))
    : stub
      ? [1]
      : processCounts(max);
  if (counts.some((c) => !Number.isSafeInteger(c) || c < 1)) {
    throw new Error("--counts takes positive integers, e.g. 1,16");
  }
  if (stub && (values["max-processes"] !== undefined || counts.some((c) => c !== 1))) {
    throw new Error("--stub-decoder runs one process: leave out --counts and --max-processes");
  }
  progress(`${cores} cores (${cpus()[0]?.model ?? "?"}), processes ${counts.join(", ")}`);
  const images = await inputs(64);
  const kib = {
    "256-px": median(images["256-px"].map((b) => b.length)) / 1024,
    "exact-224": median(images["exact-224"].map((b) => b.length)) / 1024,
  };
  const load0 = loadavg()[0]!;
  const serverArgs = values["server-args"].split(/\s+/).filter((a) => a !== "");
  const entry = stub ? join(ROOT, "test/bench/stub-decoder-node.ts") : undefined;
  const runs = await benchRpc(plan, protocol, images, counts, perCall, serverArgs, entry);
  const decoders = await benchDecoders(plan, images);
  const channel = await benchChannel(plan);
  progress(`pixel channel: ${channel.imagesPerSecond.toFixed(0)} img/s`);

  // The node starts with --backend noop; --server-args may name another (the last flag wins).
  const at = serverArgs.lastIndexOf("--backend");
  const backend =
    (at >= 0 ? serverArgs.slice(at).join(" ") : "--backend noop (CPU side only)") +
    (stub ? ", decoder stubbed (fixed pixels, no file read: the call's own cost)" : "");
  const text = report(runs, decoders, channel, protocol, perCall, kib, backend);
  const environment = {
    cores,
    cpu: cpus()[0]?.model,
    node: process.version,
    sharp: sharp.versions,
    loadAverageAtStart: load0,
    loadAverageAtEnd: loadavg()[0],
    quick: values.quick,
    protocol,
    serverArgs,
    stubDecoder: stub,
  };
  process.stdout.write(
    `\n## bench:gpu-host — ${cores} cores, ${environment.cpu}, Node ${process.version}` +
      `${serverArgs.length ? `, gpu-node ${serverArgs.join(" ")}` : ""}\n\n${text}`,
  );
  const dir = process.env.OUT ? resolve(process.env.OUT) : join(ROOT, ".cache/bench");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `gpu-host-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileSync(
    file,
    JSON.stringify(
      { environment, plan, protocol, perCall, kib, runs, decoders, channel, report: text },
      null,
      2,
    ),
  );
  process.stdout.write(`\nwrote ${file}\n`);
}

if (process.argv[2] === "--pixel-channel-child") {
  await channelChild();
} else {
  await main();
}
