/** The run as a Markdown report: targets with reasons, the setup and what the emulator leaves out, the seed-style tables per backend and link, phone photos, per-stage times. */

import { fmt, markdownTable } from "../../support/report.ts";
import { type Row, VARIANTS, type VariantId } from "../e2e/measure.ts";
import {
  PREVIOUS_TAILS,
  rowKey,
  SEED_PUBLISHED,
  SEED_WORKLOAD_TARGETS,
  tailRatios,
} from "../e2e/targets.ts";
import { WAN_NOT_MODELLED } from "../wan/link.ts";
import type { Report } from "./index.ts";

const kib = (bytes: number) => fmt(bytes / 1024, 1);
const mbit = (x: number) => (Number.isFinite(x) ? `${fmt(x, 0)} Mbit/s` : "unlimited");

/** The seed's A100 figures (14 ms RTT), for the seed-link tables. */
const SEED_REFERENCE = {
  single: [
    ["seed: PyTorch FastAPI, base64 JPEG (A100)", "56.9", "55.8", "68.9", "72.3"],
    ["seed: Triton ONNX, raw FP32 (A100)", "182.9", "", "", ""],
  ],
  batch32: [
    ["seed: PyTorch FastAPI (A100)", "64.3"],
    ["seed: Triton ONNX, FP32 (A100; 19.3 MB per batch)", "32.3"],
  ],
} as const;

/** CPU ms per image of each tier, wherever it runs. */
function tiers(r: Row): string {
  const c = r.cpuMsPerImage;
  return `${fmt(c.client, 2)} / ${r.variant === "triton" ? "–" : fmt(c.edge, 2)} / ${fmt(c.gpuNode, 2)}`;
}

/** x.xx× */
const times = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : "–");

const SEED_EDGE_LABELS: Partial<Record<VariantId, string>> = {
  worker: "Worker on workerd",
  edge: "Worker under wrangler dev (no proxy)",
  "node-edge": "Node edge",
};

/**
 * The seed's own benchmark through the edges: per link and batch size, p50 with its tails (and
 * their ratio to p50), img/s, CPU per image per tier; the seed's published figures beside them.
 */
function seedWorkload(report: Report): string[] {
  const rows = report.rows.filter((r) => r.input === "seed-png");
  if (!rows.length) return [];
  const ctx = report.context;
  const out: string[] = [];
  out.push(`## The seed's own workload\n`);
  out.push(
    `What the seed's benchmark sends, as it sends it: 224×224 random-noise PNGs (~148 KiB each) ` +
      `as base64 JSON to \`POST /embed/base64\`, a NEW connection per call (Python \`requests\` ` +
      `without a session), the JSON answer (512 floats per image) parsed in full; 30 single calls ` +
      `after warm-up, then batches of 4, 8, 16 and 32. The edge sits beside the client (loopback); ` +
      `the gpu-node (vit-tiny, standing in for a GPU) behind the link. Worker on workerd = the ` +
      `bundle \`wrangler deploy\` would upload, on workerd itself with none of wrangler dev's ` +
      `layers (test/bench/e2e/workerd-child.ts; WASM resizer): the targets' Worker; Worker under ` +
      `wrangler dev = the same Worker in wrangler's dev runtime, past its dev proxy (a request ` +
      `there also passes Miniflare's entry Worker and wrangler's dev middleware: a no-op GET takes ` +
      `${fmt(ctx.edgeNoopP50Ms)} ms there, ${fmt(ctx.workerNoopP50Ms)} ms on workerd); Node edge = ` +
      `\`edge/node/server.ts\` (sharp). Seed's published A100 figures: single p50 ${SEED_PUBLISHED.singleP50Ms} ms, batch ` +
      `32 ${SEED_PUBLISHED.batch32ImagesPerSecond} img/s; targets: p50 ≤ ` +
      `${SEED_WORKLOAD_TARGETS.singleP50Ms} ms, batch 32 ≥ ${SEED_WORKLOAD_TARGETS.batch32ImagesPerSecond} img/s.\n`,
  );
  if (ctx.devProxy.length) {
    out.push(
      `The wrangler dev rows are measured straight to its runtime, past wrangler's dev proxy, which ` +
        `a deployed Worker does not have (test/bench/e2e/edge-child.ts says what the proxy does). ` +
        `The proxy, measured apart: the same seed calls through it and straight past it, in turns, ` +
        `loopback:\n`,
    );
    out.push(
      markdownTable(
        [
          "batch",
          "calls each way",
          "p50 through the proxy",
          "p50 straight",
          "the proxy adds (median of the rounds' differences)",
        ],
        ctx.devProxy.map((d) => [
          String(d.batch),
          String(d.calls),
          `${fmt(d.viaProxyP50Ms)} ms`,
          `${fmt(d.directP50Ms)} ms`,
          `${fmt(d.addsMs)} ms`,
        ]),
      ),
    );
  }
  for (const profile of [...new Set(rows.map((r) => r.profile))]) {
    const pr = rows
      .filter((r) => r.profile === profile)
      .sort((a, b) => a.batch - b.batch || a.variant.localeCompare(b.variant));
    out.push(`### ${profile} link (${report.profiles[profile].summary})\n`);
    // The seed's published A100 figures in this table's columns (label, batch, p50, p95, p99, img/s).
    const ref = (batch: string, p50: string, p95: string, p99: string, ips: string) => {
      const cells = Array<string>(12).fill("");
      cells[0] = "seed: PyTorch FastAPI (A100, published)";
      cells[1] = batch;
      cells[3] = p50;
      cells[4] = p95;
      cells[5] = p99;
      cells[6] = ips;
      return cells;
    };
    const seedRef =
      profile === "seed"
        ? [
            ref("1", String(SEED_PUBLISHED.singleP50Ms), "68.9 (1.23×)", "72.3 (1.30×)", ""),
            ref("32", "", "", "", String(SEED_PUBLISHED.batch32ImagesPerSecond)),
          ]
        : [];
    out.push(
      markdownTable(
        [
          "edge",
          "batch",
          "calls",
          "p50 ms",
          "p95 ms (÷p50)",
          "p99 ms (÷p50)",
          "img/s",
          "own ms/img",
          "CPU ms/img: client / edge / gpu-node",
          "edge CPU: workerd / wrangler's Node",
          "WAN KiB/img",
          "other load",
        ],
        [
          ...pr.map((r) => {
            const t = tailRatios(r);
            return [
              SEED_EDGE_LABELS[r.variant] ?? r.variant,
              String(r.batch),
              String(r.calls),
              fmt(r.latencyMs.p50),
              `${fmt(r.latencyMs.p95)} (${times(t.p95)})`,
              `${fmt(r.latencyMs.p99)} (${times(t.p99)})`,
              fmt(r.imagesPerSecond),
              fmt(r.ownMsPerImage, 2),
              tiers(r),
              r.variant !== "node-edge"
                ? `${fmt(r.cpuMsPerImage.edgeWorkerd, 2)} / ${fmt(r.cpuMsPerImage.edge - r.cpuMsPerImage.edgeWorkerd, 2)}`
                : "",
              kib(r.wanBytesPerImage),
              fmt(r.otherCores, 2),
            ];
          }),
          ...seedRef,
        ],
      ),
    );
  }
  out.push(
    `"own ms/img" = the median over the calls of (call time − the edge's gpu-node call, from its ` +
      `Server-Timing, whose steps are 1 ms on the Workers) ÷ batch: the edge's ` +
      `validate, resize and JSON plus HTTP and the client's share. ` +
      `CPU per image per tier: client = this process (its own counter, µs); edge = the edge's ` +
      `process tree (for the Worker: wrangler's Node process with the local Images binding's ` +
      `sharp, and workerd, shown apart: workerd runs the Worker itself; on bare workerd the Node ` +
      `part is the idle process that started it); gpu-node = its process tree; ` +
      `/proc counts 10 ms ticks.\n`,
  );
  const prev = Object.entries(PREVIOUS_TAILS).filter(([k]) => rows.some((r) => rowKey(r) === k));
  if (prev.length) {
    out.push(
      `Earlier tail ratios (p95, p99 ÷ p50): ${prev.map(([k, v]) => `${k} ${times(v.p95)}, ${times(v.p99)} (${v.run})`).join("; ")}.\n`,
    );
  }
  return out;
}

function groupKey(r: Row): string {
  return `${r.backend}|${r.profile}`;
}

function connectionReuse(rows: readonly Row[]): string[] {
  const opened = (v: VariantId) => {
    const rs = rows.filter((r) => r.variant === v);
    const calls = rs.reduce((s, r) => s + r.calls, 0);
    const per = new Map<string, number>();
    for (const r of rs)
      for (const h of r.hops) per.set(h.link, (per.get(h.link) ?? 0) + h.connectionsOpened);
    return `${[...per].map(([link, n]) => `${link} ${n}`).join(", ")} new connections over ${calls} measured calls`;
  };
  return [
    `- (1) edge: the client's fetch (undici) keeps its connection to the edge alive; the Worker's ` +
      `outbound fetch to the gpu-node (Connect over HTTP/1.1) is pooled by workerd. Measured: ` +
      `${opened("edge")}.`,
    `- (2) no edge: the client keeps one connection to the far edge alive across the WAN; the ` +
      `edge → gpu-node hop is local. Measured: ${opened("no-edge")}.`,
    `- (3) Triton-style: one HTTP/2 connection (connect-node's session manager), every call a ` +
      `stream on it. The double's connection-level HTTP/2 window is opened to 16 MiB ` +
      `(test/bench/e2e/double-child.ts: Node's default 64 KiB would cap the link at ~19 Mbit/s; ` +
      `Triton's gRPC core grows its windows). Measured: ${opened("triton")}.`,
    `- Warm-up calls (not counted) open the connections; the emulator charges one RTT for every ` +
      `new connection's handshake, and the floors assume warm connections.`,
  ];
}

export function toMarkdown(report: Report, chartFile: string): string {
  const { env, rows } = report;
  const out: string[] = [];
  const load = (l: readonly number[]) => l.map((x) => x.toFixed(2)).join(" ");
  out.push(`# End-to-end benchmark: edge vs no edge vs Triton-style over an emulated WAN\n`);
  out.push(
    `Run \`${report.run}\` (${env.mode}), ${env.date}. Node ${env.node}, wrangler ${env.wrangler}, ` +
      `sharp ${env.sharp}, onnxruntime-node ${env.onnxruntimeNode}, connect-node ${env.connectNode}; ` +
      `${env.cpus} CPUs (${env.cpuModel}); load average ${load(env.loadavgAtStart)} at start, ` +
      `${load(env.loadavgAtEnd)} at end; wall ${env.wallS.toFixed(0)} s; the Workers' RESIZER: ` +
      `${env.workerResizer}. Command: \`npm run bench${env.mode === "quick" ? " -- --quick" : ""}\`.\n`,
  );
  const noisy = rows.filter((r) => r.otherCores > 0.2);
  out.push(
    `"other load" = cores' worth of CPU used by processes outside this benchmark during a row's ` +
      `measured calls (this machine is shared; above ~0.2 of its ${env.cpus} cores a row is noisy). ` +
      (noisy.length
        ? `${noisy.length} of ${rows.length} rows ran with more than 0.2 cores of other load: ` +
          `their latencies are inflated.\n`
        : `No row ran with more than 0.2 cores of other load.\n`),
  );

  out.push(`## Targets\n`);
  out.push(
    markdownTable(
      ["target", "result", "verdict"],
      report.targets.map((t) => [t.target, t.result, t.verdict]),
    ),
  );
  for (const t of report.targets) out.push(`- **${t.verdict}** ${t.target}: ${t.why}\n`);

  out.push(...seedWorkload(report));

  out.push(`## Setup\n`);
  out.push(`Variants:\n`);
  for (const v of Object.values(VARIANTS)) out.push(`- ${v.label}: ${v.path}`);
  out.push("");
  out.push(
    `The edges of (1) and (2) run the project's Worker (wrangler.toml, Images-binding resizer) ` +
      `in wrangler's dev runtime through \`unstable_startWorker\`, each in its own process ` +
      `(test/bench/e2e/edge-child.ts): the same Miniflare, workerd and local Images binding ` +
      `(sharp) as \`wrangler dev\` and \`npm start\`, but built once — \`wrangler dev\` watches ` +
      `the sources and reloaded mid-run when edge/ changed. The gpu-node is its CLI with default ` +
      `settings plus --threads 2; the KServe double runs the same generated weights with the ` +
      `seed's FP32 [N,3,224,224] input, 2 ONNX Runtime threads. The seed workload also runs the ` +
      `Worker as deployed: the bundle \`wrangler deploy --dry-run\` writes, on wrangler's own ` +
      `workerd with a generated config (test/bench/e2e/workerd-child.ts), no Images binding.\n`,
  );
  out.push(
    markdownTable(
      ["profile", "client ↔ GPU site", "(1) client → edge", "(1) edge → gpu-node", "why"],
      Object.values(report.profiles).map((p) => [
        p.name,
        `${fmt(p.direct.up.delayMs + p.direct.down.delayMs, 0)} ms RTT, ${mbit(p.direct.down.bitsPerSecond / 1e6)} down / ${mbit(p.direct.up.bitsPerSecond / 1e6)} up`,
        `${fmt(p.access.up.delayMs + p.access.down.delayMs, 0)} ms, ${mbit(p.access.down.bitsPerSecond / 1e6)} / ${mbit(p.access.up.bitsPerSecond / 1e6)}`,
        `${fmt(p.backbone.up.delayMs + p.backbone.down.delayMs, 0)} ms, ${mbit(p.backbone.down.bitsPerSecond / 1e6)} / ${mbit(p.backbone.up.bitsPerSecond / 1e6)}`,
        p.rationale,
      ]),
    ),
  );
  out.push(
    markdownTable(
      ["input", "what", "images", "mean", "min – max"],
      report.inputs.map((i) => [
        i.name,
        i.description,
        String(i.count),
        `${kib(i.meanBytes)} KiB`,
        `${kib(i.minBytes)} – ${kib(i.maxBytes)} KiB`,
      ]),
    ),
  );
  out.push(
    `Method: calls are sequential (one in flight), after warm-up calls that are not counted. ` +
      `Percentiles are nearest-rank (with 30 calls p99 is the slowest call). img/s = images ÷ ` +
      `the sum of the call times. Bytes are TCP payload in both directions as the emulator ` +
      `forwarded them (HTTP and protobuf framing included), read between calls. CPU per image is ` +
      `/proc CPU time over the measured calls ÷ images (10 ms ticks: coarse for rows of few ` +
      `calls): "GPU host" = the gpu-node ((1)), the gpu-node plus the edge beside it ((2): ` +
      `wrangler and workerd), the KServe double ((3)); "client side" = this process plus, for ` +
      `(1), the edge at the point of presence. Each call's floor = one RTT per hop + that call's ` +
      `bytes at each hop's rate + its measured compute (edge validate + resize + gpu-node decode + ` +
      `pack + inference for (1)/(2); client decode + FP32 pack + the double's compute for (3)); ` +
      `queues, protocol work and waiting are not floor. Tables show the median floor and the ` +
      `median of (call time − its floor). vit-tiny stands in for a GPU (compute negligible); ` +
      `vit-b32 runs on these 2 CPU cores.\n`,
  );
  out.push(
    `Edge stage times come from workerd, whose clock advances only at I/O (a Workers timing ` +
      `side-channel defence): they have ~1 ms resolution and CPU-only stages such as validate ` +
      `read 0. A no-op request straight to the edge (GET /healthz, loopback, ` +
      `no emulator, no dev proxy) takes ${fmt(report.context.edgeNoopP50Ms)} ms p50: workerd's ` +
      `own HTTP work, part of every (1) and (2) call here and not of the floor.\n`,
  );
  out.push(`Connection reuse:\n`);
  out.push(...connectionReuse(rows), "");
  out.push(`What the WAN emulator (test/bench/wan, a user-space TCP proxy) does not model:\n`);
  out.push(...WAN_NOT_MODELLED.map((s) => `- ${s}`), "");
  const lateness = Math.max(...rows.flatMap((r) => r.hops.map((h) => h.latenessMeanMs)));
  out.push(
    `Emulator timing in this run: mean delivery lateness per link at most ${fmt(lateness, 2)} ms.\n`,
  );

  const groups = [...new Set(rows.map(groupKey))];
  for (const g of groups) {
    const gr = rows.filter((r) => groupKey(r) === g);
    const [backend, profile] = g.split("|") as [string, string];
    const p = report.profiles[profile as keyof typeof report.profiles];
    out.push(`## ${backend}, ${profile} link (${p.summary})\n`);
    for (const input of [...new Set(gr.map((r) => r.input))]) {
      const single = gr.filter((r) => r.input === input && r.batch === 1);
      if (single.length) {
        out.push(
          `### Single image, ${input} (${single.map((r) => `${VARIANTS[r.variant].label}: ${r.calls} calls after ${r.warmupCalls} warm-up`).join("; ")})\n`,
        );
        const refs =
          profile === "seed" && input === "seed-224"
            ? SEED_REFERENCE.single.map((r) => [...r, "", "", "", "", "", "", "", ""])
            : [];
        out.push(
          markdownTable(
            [
              "variant",
              "mean ms",
              "p50 ms",
              "p95 ms",
              "p99 ms",
              "floor ms",
              "above floor",
              "WAN KiB/img",
              "GPU-host CPU ms/img",
              "client-side CPU ms/img",
              "CPU ms/img: client / edge / gpu-node",
              "other load",
            ],
            [
              ...single.map((r) => [
                VARIANTS[r.variant].label,
                fmt(r.latencyMs.mean),
                fmt(r.latencyMs.p50),
                fmt(r.latencyMs.p95),
                fmt(r.latencyMs.p99),
                fmt(r.floor.ms),
                fmt(r.gapMs),
                kib(r.wanBytesPerImage),
                fmt(r.cpuMsPerImage.gpuHost),
                fmt(r.cpuMsPerImage.clientSide),
                tiers(r),
                fmt(r.otherCores, 2),
              ]),
              ...refs,
            ],
          ),
        );
      }
      const batched = gr.filter((r) => r.input === input && r.batch > 1);
      if (batched.length) {
        const withOne = gr
          .filter((r) => r.input === input)
          .sort((a, b) => a.variant.localeCompare(b.variant) || a.batch - b.batch);
        out.push(`### Batches, ${input} (sequential calls; batch 1 = the single-image row)\n`);
        const refs =
          profile === "seed" && input === "seed-224"
            ? SEED_REFERENCE.batch32.map(([label, ips]) => [
                label,
                "32",
                "",
                "",
                "",
                ips,
                "",
                "",
                "",
                "",
              ])
            : [];
        out.push(
          markdownTable(
            [
              "variant",
              "batch",
              "calls",
              "mean ms",
              "p50 ms",
              "img/s",
              "floor ms",
              "floor img/s",
              "WAN KiB/img",
              "other load",
            ],
            [
              ...withOne.map((r) => [
                VARIANTS[r.variant].label,
                String(r.batch),
                String(r.calls),
                fmt(r.latencyMs.mean),
                fmt(r.latencyMs.p50),
                fmt(r.imagesPerSecond),
                fmt(r.floor.ms),
                fmt(r.floor.imagesPerSecond),
                kib(r.wanBytesPerImage),
                fmt(r.otherCores, 2),
              ]),
              ...refs,
            ],
          ),
        );
      }
    }
  }

  const phone = rows.filter((r) => r.input.startsWith("phone") && r.batch === 1);
  if (phone.length) {
    out.push(`## Phone photos: bytes on the WAN and CPU on the GPU host\n`);
    out.push(
      `WAN = the hop into the GPU site ((1): edge → gpu-node; (2), (3): client → GPU site). ` +
        `In the mobile profile the original photo also crosses the phone's uplink in (1), to the edge ` +
        `(access column). CPU per image covers the whole measured window, idle time included: on ` +
        `the mobile link a call is mostly waiting for the upload, and the servers' idle CPU ` +
        `(timers, metrics) inflates those rows; compare CPU on the seed and loopback rows.\n`,
    );
    out.push(
      markdownTable(
        [
          "backend",
          "profile",
          "input",
          "variant",
          "p50 ms",
          "floor ms",
          "WAN KiB/img",
          "access KiB/img",
          "GPU-host CPU ms/img",
          "client-side CPU ms/img",
          "other load",
        ],
        phone.map((r) => {
          const access = r.hops.find((h) => h.role === "access");
          return [
            r.backend,
            r.profile,
            r.input,
            VARIANTS[r.variant].label,
            fmt(r.latencyMs.p50),
            fmt(r.floor.ms),
            kib(r.wanBytesPerImage),
            // Only where the access link is a real link (mobile); elsewhere the edge is local.
            access && (access.rttMs > 0 || Number.isFinite(access.upMbit))
              ? kib(access.bytesUpPerCall + access.bytesDownPerCall)
              : "",
            fmt(r.cpuMsPerImage.gpuHost),
            fmt(r.cpuMsPerImage.clientSide),
            fmt(r.otherCores, 2),
          ];
        }),
      ),
    );
  }

  out.push(`## Per-stage times (median per call, ms)\n`);
  out.push(
    `edge-* from the edge's Server-Timing (edge-gpu-call = the whole gpu-node call as the edge saw ` +
      `it); gpu-* the gpu-node's own timings (decode, queue and inference are the call's slowest ` +
      `image or batch); client-* measured in the client; server-compute = the double's compute ` +
      `(input + infer + output) per call from its statistics.\n`,
  );
  const stageNames = [...new Set(rows.flatMap((r) => Object.keys(r.stagesP50)))];
  out.push(
    markdownTable(
      ["backend", "profile", "input", "variant", "batch", "p50", ...stageNames],
      rows.map((r) => [
        r.backend,
        r.profile,
        r.input,
        VARIANTS[r.variant].label,
        String(r.batch),
        fmt(r.latencyMs.p50),
        ...stageNames.map((s) => (r.stagesP50[s] === undefined ? "" : fmt(r.stagesP50[s]!, 2))),
      ]),
    ),
  );
  out.push(`## Chart\n`);
  out.push(
    `![p50 latency and throughput against batch size per variant, floors dashed](${chartFile})\n`,
  );
  return out.join("\n");
}
