/**
 * Resize benchmark: the edge's in-Worker WASM JPEG resizer (edge/resize/wasm/core.ts, the module
 * the Worker runs, here in Node's V8) against sharp (a stand-in for the Images binding, which
 * runs through sharp under `wrangler dev`), for 0.3, 3, 12 and 48 MP photo-like JPEGs.
 *
 *   npm exec -- node test/bench/resize.ts [--runs 5] [--short 256] [--quality 80]
 *
 * Prints a Markdown table: median time, bytes out and peak memory. For WASM, peak memory is the
 * WASM linear memory (what counts against the isolate's 128 MB, with the input bytes and a few MB
 * of JS-side buffers); for sharp, the peak RSS growth of a fresh process doing one resize (native,
 * multi-threaded, libvips' cache off).
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import sharp from "sharp";
import { targetSize } from "../../edge/resize/resizer.ts";
import { createJpegWasmResizer, type WasmResizeInput } from "../../edge/resize/wasm/core.ts";
import { createWasmResizer } from "../../edge/resize/wasm/formats.ts";
import { readHeader, sniffFormat } from "../../edge/validate/index.ts";
import { primaryHevcItem } from "../../imaging/heif/container.ts";
import { compileJpegWasm } from "../../imaging/jpeg/codec.ts";
import { compileWasm } from "../../imaging/wasm-instance.ts";
import { HEIC_FIXTURES, heicFixture } from "../fixtures/heic/fixtures.ts";
import { parseCli } from "../support/cli.ts";
import { writeHeif } from "../support/heif.ts";
import { photoLike } from "../support/images.ts";
import { median } from "../support/stats.ts";

const USAGE = `usage: npm run bench:resize -- [--runs 5] [--short 256] [--quality 80] [--formats]

The edge's in-Worker WASM JPEG resizer against sharp for 0.3, 3, 12 and 48 MP photo-like JPEGs:
median time, bytes out and peak memory, as a Markdown table. --formats: instead, the WASM
resizer's CPU time and memory per format (JPEG, HEIC grid, PNG, WebP lossy and lossless) at 12 and
48 MP, the figures behind RESIZER=auto's estimates and the cost table in docs/formats.md.`;

const { values } = parseCli(USAGE, {
  options: {
    runs: { type: "string", default: "5" },
    short: { type: "string", default: "256" },
    quality: { type: "string", default: "80" },
    formats: { type: "boolean", default: false },
  },
});
const runs = Math.max(1, Number(values.runs));
const shortSide = Number(values.short);
const quality = Number(values.quality);
const MiB = 1024 * 1024;
const run = promisify(execFile);

sharp.cache(false);

/**
 * sharp's memory for one resize: peak RSS of a fresh Node process that loads sharp and does just
 * that, minus the same process's RSS before the resize (native memory, invisible to V8).
 */
async function sharpPeakRss(input: Buffer, width: number, height: number): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "resize-bench-"));
  const file = join(dir, "in.jpg");
  writeFileSync(file, input);
  const script = `
    import { readFileSync } from "node:fs";
    import sharp from "sharp";
    sharp.cache(false);
    const input = readFileSync(${JSON.stringify(file)});
    const before = process.memoryUsage.rss();
    await sharp(input).rotate().resize(${width}, ${height}, { fit: "fill", kernel: "cubic" })
      .jpeg({ quality: ${quality} }).toBuffer();
    console.log(process.resourceUsage().maxRSS * 1024 - before);`;
  try {
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], {
      cwd: fileURLToPath(new URL("../..", import.meta.url)),
    });
    return Math.max(0, Number(stdout.trim()));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (values.formats) {
  await benchFormats();
  process.exit(0);
}

/**
 * The WASM resizer per format at 12 and 48 MP: CPU time of one resize (process CPU time, the
 * decoders are synchronous), WASM linear memory at its peak and the JS-side reduced buffers.
 * HEIC: an iPhone-like grid of one coded 512x512 photo-like tile repeated (every tile is decoded).
 */
async function benchFormats(): Promise<void> {
  const file = (p: string) => readFileSync(new URL(`../../imaging/${p}`, import.meta.url));
  const modules = {
    jpeg: await compileWasm(file("jpeg/jpeg.wasm")),
    hevc: await compileWasm(file("heif/hevc.wasm")),
    webp: await compileWasm(file("webp/webp.wasm")),
  };
  const tile = primaryHevcItem(heicFixture(HEIC_FIXTURES.tile));
  const sizes = [
    { label: "12 MP", w: 4032, h: 3024 },
    { label: "48 MP", w: 8064, h: 6048 },
  ];
  const out: string[] = [];
  for (const size of sizes) {
    const raw = () =>
      sharp(photoLike(size.w, size.h, 1, 16), {
        raw: { width: size.w, height: size.h, channels: 3 },
      });
    const cols = Math.ceil(size.w / 512);
    const rows = Math.ceil(size.h / 512);
    const inputs: [string, Promise<Buffer>][] = [
      ["JPEG q90", raw().jpeg({ quality: 90 }).toBuffer()],
      [
        `HEIC grid ${cols}x${rows}`,
        Promise.resolve(
          writeHeif({
            width: size.w,
            height: size.h,
            tiles: Array.from({ length: cols * rows }, () => tile),
            columns: cols,
            tileWidth: 512,
            tileHeight: 512,
          }),
        ),
      ],
      ["PNG 8-bit RGB", raw().png({ compressionLevel: 6 }).toBuffer()],
      ["WebP lossy q80", raw().webp({ quality: 80 }).toBuffer()],
      ["WebP lossless", raw().webp({ lossless: true, effort: 0 }).toBuffer()],
    ];
    for (const [label, make] of inputs) {
      const bytes = new Uint8Array(await make);
      const format = sniffFormat(bytes)!;
      const h = readHeader(bytes, format);
      const input = { bytes, format, width: h.width, height: h.height, orientation: h.orientation };
      // A fresh resizer per input, so that its memory is this input's alone.
      const resizer = createWasmResizer(modules);
      try {
        await resizer.resize(input, { shortSide, quality }); // warm-up
      } catch (e) {
        // Refused cleanly (e.g. a lossless WebP whose ARGB image exceeds the WASM cap): say so.
        out.push(
          `| ${size.label} ${label} | ${(bytes.length / MiB).toFixed(1)} MB | refused: ${e instanceof Error ? e.message : e} | | | |`,
        );
        console.error(out.at(-1));
        continue;
      }
      const cpu: number[] = [];
      for (let i = 0; i < runs; i++) {
        const c0 = process.cpuUsage();
        await resizer.resize(input, { shortSide, quality });
        const c = process.cpuUsage(c0);
        cpu.push((c.user + c.system) / 1000);
      }
      const r = resizer.lastRun!;
      const reducedMb = (r.decodedWidth * r.decodedHeight * 15) / MiB;
      out.push(
        `| ${size.label} ${label} | ${(bytes.length / MiB).toFixed(1)} MB | 1/${r.denom} → ${r.decodedWidth}x${r.decodedHeight} | ${median(cpu).toFixed(0)} | ${(median(cpu) / ((size.w * size.h) / 1e6)).toFixed(1)} | ${(resizer.peakMemoryBytes / MiB).toFixed(1)} MB + ${reducedMb.toFixed(1)} MB JS |`,
      );
      console.error(out.at(-1));
    }
  }
  console.log(
    `\nWASM resizer per format, short side ${shortSide}, q${quality}; median CPU time of ${runs} runs after one warm-up; Node ${process.versions.node}.\n`,
  );
  console.log("| input | file | decoded at | CPU ms | ms per MP | memory (WASM + reduced image) |");
  console.log("| --- | ---: | --- | ---: | ---: | ---: |");
  for (const r of out) console.log(r);
}

const cases = [
  { label: "0.3 MP", w: 640, h: 480, progressive: false },
  { label: "3 MP", w: 2000, h: 1500, progressive: false },
  { label: "12 MP", w: 4032, h: 3024, progressive: false },
  { label: "12 MP progressive", w: 4032, h: 3024, progressive: true },
  { label: "48 MP", w: 8000, h: 6000, progressive: false },
];

const module = await compileJpegWasm(
  readFileSync(new URL("../../imaging/jpeg/jpeg.wasm", import.meta.url)),
);

const rows: string[] = [];
for (const c of cases) {
  const input = await sharp(photoLike(c.w, c.h, 1, 16), {
    raw: { width: c.w, height: c.h, channels: 3 },
  })
    .jpeg({ quality: 90, progressive: c.progressive })
    .toBuffer();
  const t = targetSize(c.w, c.h, shortSide);
  const inLabel = `${c.label} (${c.w}x${c.h}, ${(input.length / MiB).toFixed(2)} MB)`;

  // WASM: a fresh resizer per input, so its peak is this input's; one warm-up run.
  const resizer = createJpegWasmResizer(module);
  const wasmIn = { bytes: input, format: "jpeg", width: c.w, height: c.h } as WasmResizeInput;
  await resizer.resize(wasmIn, { shortSide, quality });
  const times: number[] = [];
  let outBytes = 0;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const out = await resizer.resize(wasmIn, { shortSide, quality });
    times.push(performance.now() - t0);
    outBytes = out.bytes.length;
  }
  const run = resizer.lastRun!;
  rows.push(
    `| ${inLabel} | wasm (1/${run.denom} → ${run.decodedWidth}x${run.decodedHeight}) | ${median(times).toFixed(1)} | ${(outBytes / 1024).toFixed(1)} KB | ${(resizer.peakMemoryBytes / MiB).toFixed(1)} MB WASM |`,
  );

  // sharp, as the Images binding runs locally: shrink-on-load on, cubic, EXIF rotate, q as given.
  const sharpOnce = () =>
    sharp(input)
      .rotate()
      .resize(t.width, t.height, { fit: "fill", kernel: "cubic" })
      .jpeg({ quality })
      .toBuffer();
  await sharpOnce();
  const sTimes: number[] = [];
  let sBytes = 0;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const out = await sharpOnce();
    sTimes.push(performance.now() - t0);
    sBytes = out.length;
  }
  const sharpPeak = await sharpPeakRss(input, t.width, t.height);
  rows.push(
    `| ${inLabel} | sharp (Images-binding stand-in) | ${median(sTimes).toFixed(1)} | ${(sBytes / 1024).toFixed(1)} KB | ${(sharpPeak / MiB).toFixed(1)} MB RSS |`,
  );
}

console.log(
  `\nResize to short side ${shortSide}, q${quality}; median of ${runs} runs after one warm-up; Node ${process.versions.node}, sharp ${sharp.versions.sharp} (libvips ${sharp.versions.vips}).\n`,
);
console.log("| input | resizer | time (ms) | bytes out | peak memory |");
console.log("| --- | --- | ---: | ---: | ---: |");
for (const r of rows) console.log(r);
