/**
 * The Triton hop on loopback: what each way of sending a batch costs in bytes and time. The
 * KServe v2 double runs vit-tiny in its own process (as Triton would); this process drives the
 * gpu-node's triton backend directly with pre-packed batches of 1, 8 and 32 images:
 *   FP32 NCHW as bytes (the seed's model) · UINT8 NHWC as bytes · UINT8 NHWC through /dev/shm.
 * Prints a Markdown table: bytes on the wire per image (client → server, everything: frames,
 * headers, protobuf), round-trip latency, the double's own time per request (from
 * ModelStatistics) and what is left: the transport's share.
 *
 *   npm run bench:triton              # ~1 min
 *   npm run bench:triton -- --quick   # ~15 s
 */
import { mkdir, writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { IMAGE_BYTES } from "../../gpu-node/backends/backend.ts";
import { createTritonBackend, type TritonBackend } from "../../gpu-node/backends/triton/backend.ts";
import { testConfig } from "../../gpu-node/config.ts";
import { createLogger } from "../../gpu-node/logger.ts";
import { parseCli } from "../support/cli.ts";
import { tinyModelFiles } from "../support/kserve-double.ts";
import { ROOT, spawnKServeDouble } from "../support/processes.ts";
import { fmt, markdownTable } from "../support/report.ts";
import { median, percentile } from "../support/stats.ts";

interface Mode {
  readonly label: string;
  readonly model: string;
  readonly shm: boolean;
  readonly layout: "uint8-nhwc" | "float32-nchw";
}
const MODES: readonly Mode[] = [
  { label: "FP32 NCHW, bytes", model: "fp32", shm: false, layout: "float32-nchw" },
  { label: "UINT8 NHWC, bytes", model: "uint8", shm: false, layout: "uint8-nhwc" },
  { label: "UINT8 NHWC, shared memory", model: "uint8", shm: true, layout: "uint8-nhwc" },
];
const BATCHES = [1, 8, 32] as const;

interface Cell {
  latenciesMs: number[];
  sentBytes: number;
  images: number;
  serverUs: number;
  requests: number;
}

/** The double with vit-tiny in both layouts, as "uint8" and "fp32". */
function startDouble(files: { uint8: string; float32: string }) {
  return spawnKServeDouble(
    [
      { name: "uint8", path: files.uint8, layout: "uint8-nhwc", maxBatch: 32 },
      { name: "fp32", path: files.float32, layout: "float32-nchw", maxBatch: 32 },
    ],
    { threads: 1, keepLogs: false },
  );
}

function batchOf(mode: Mode, n: number) {
  // Same random pixels for every mode; FP32 gets them normalised-looking (values near 0).
  const bytes = new Uint8Array(n * IMAGE_BYTES);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 24;
  if (mode.layout === "uint8-nhwc") return { layout: mode.layout, data: bytes, count: n };
  const floats = Float32Array.from(bytes, (b) => (b - 120) / 60);
  return { layout: mode.layout, data: floats, count: n };
}

const USAGE = `usage: npm run bench:triton -- [--quick]

The Triton hop on loopback (~1 min; --quick ~15 s): bytes on the wire and round trips per image
for FP32 NCHW bytes, UINT8 NHWC bytes and UINT8 NHWC through /dev/shm, against the KServe v2
double. Prints a Markdown table.`;

async function main(): Promise<void> {
  const { values } = parseCli(USAGE, { options: { quick: { type: "boolean", default: false } } });
  const rounds = values.quick ? 2 : 5;
  const callsPerRound: Record<number, number> = values.quick
    ? { 1: 20, 8: 6, 32: 3 }
    : { 1: 60, 8: 20, 32: 8 };
  const files = await tinyModelFiles(testConfig().cacheDir);
  const double = await startDouble(files);
  const backends = new Map<Mode, TritonBackend>();
  try {
    for (const mode of MODES) {
      const b = createTritonBackend({
        url: `127.0.0.1:${double.port}`,
        model: mode.model,
        modelVersion: "",
        shm: mode.shm,
        concurrency: 1,
        maxBatchSize: 32,
        timeoutMs: 30_000,
        startTimeoutMs: 10_000,
        healthIntervalMs: 60_000,
        statsIntervalMs: 0,
        log: createLogger("warn"),
      });
      await b.start();
      if (b.transportInfo().mode !== (mode.shm ? "shm" : "bytes")) throw new Error("shm refused");
      backends.set(mode, b);
    }
    const cells = new Map<string, Cell>();
    const key = (m: Mode, n: number) => `${m.label}|${n}`;
    // Warm-up, then rounds in which the modes take turns (drift and noise hit all alike).
    for (const [mode, b] of backends) for (const n of BATCHES) await b.infer(batchOf(mode, n));
    for (let r = 0; r < rounds; r++) {
      for (const n of BATCHES) {
        for (const [mode, b] of backends) {
          const batch = batchOf(mode, n);
          const cell = cells.get(key(mode, n)) ?? {
            latenciesMs: [],
            sentBytes: 0,
            images: 0,
            serverUs: 0,
            requests: 0,
          };
          cells.set(key(mode, n), cell);
          const before = await b.refreshStats();
          const sent0 = b.transportInfo().wireBytes.sent;
          for (let c = 0; c < callsPerRound[n]!; c++) {
            const t0 = performance.now();
            await b.infer(batch);
            cell.latenciesMs.push(performance.now() - t0);
          }
          cell.sentBytes += b.transportInfo().wireBytes.sent - sent0;
          cell.images += n * callsPerRound[n]!;
          const after = await b.refreshStats();
          // The statistics calls themselves are not inferences: only success time counts.
          cell.serverUs += (after?.total.us.success ?? 0) - (before?.total.us.success ?? 0);
          cell.requests += (after?.total.success ?? 0) - (before?.total.success ?? 0);
        }
      }
    }
    const rows: string[][] = [];
    const results: Record<string, unknown>[] = [];
    for (const n of BATCHES) {
      for (const mode of MODES) {
        const c = cells.get(key(mode, n))!;
        const p50 = median(c.latenciesMs);
        const serverMs = c.serverUs / c.requests / 1000;
        const perImage = c.sentBytes / c.images;
        rows.push([
          String(n),
          mode.label,
          Math.round(perImage).toLocaleString("en-US"),
          fmt(p50, 2),
          fmt(percentile(c.latenciesMs, 0.95), 2),
          fmt(serverMs, 2),
          fmt(p50 - serverMs, 2),
        ]);
        results.push({ batch: n, mode: mode.label, bytesPerImage: perImage, p50, serverMs });
      }
    }
    console.log(
      `\nTriton hop on loopback (vit-tiny in the KServe v2 double, its own process, 1 ORT thread; ${rounds} rounds)\n`,
    );
    console.log(
      markdownTable(
        [
          "batch",
          "input",
          "bytes sent / image",
          "latency p50 ms",
          "p95 ms",
          "in the double ms",
          "transport ms (p50 − double)",
        ],
        rows,
      ),
    );
    const out = resolve(ROOT, ".cache/bench");
    await mkdir(out, { recursive: true });
    await writeFile(resolve(out, "triton.json"), JSON.stringify(results, null, 2));
  } finally {
    for (const b of backends.values()) await b.close();
    double.child.kill("SIGTERM");
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
