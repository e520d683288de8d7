/** The fuzzer's seed corpus and settings: small real JPEGs from ../shared/corpus (when present) plus generated ones with every common layout; FUZZ_ITERATIONS / FUZZ_SEED raise or move the run. */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import sharp from "sharp";
import { CORPUS } from "./hostile.ts";
import { photoPixels } from "./images.ts";

/** Iterations per fuzz test in `npm test` (CI); more with FUZZ_ITERATIONS=… or `npm run fuzz`. */
export const CI_FUZZ_ITERATIONS = 300;

/**
 * Test time each fuzz iteration may take: measured ≈24 ms (edge in workerd) and ≈21 ms (gpu-node,
 * two passes) on 2 idle cores; four times that leaves room for a loaded machine.
 */
export const FUZZ_MS_PER_ITERATION = 100;
/** Test time that does not depend on the iterations (set-up, reference calls, checks). */
export const FUZZ_BASE_MS = 60_000;

export interface FuzzSettings {
  readonly iterations: number;
  readonly seed: number;
  /** The fuzz test's timeout (and the gpu-node stream's deadline): grows with the iterations. */
  readonly timeoutMs: number;
}

/** A fuzz test's timeout for `iterations`: a fixed part plus a budget per iteration. */
export function fuzzTimeoutMs(iterations: number): number {
  return FUZZ_BASE_MS + iterations * FUZZ_MS_PER_ITERATION;
}

export function fuzzSettings(env: NodeJS.ProcessEnv = process.env): FuzzSettings {
  const iterations = Number(env.FUZZ_ITERATIONS ?? CI_FUZZ_ITERATIONS);
  const seed = Number(env.FUZZ_SEED ?? 20261128);
  if (!Number.isSafeInteger(iterations) || iterations < 1 || iterations > 10_000_000) {
    throw new Error(
      `FUZZ_ITERATIONS must be an integer from 1 to 10000000, got ${env.FUZZ_ITERATIONS}`,
    );
  }
  if (!Number.isSafeInteger(seed))
    throw new Error(`FUZZ_SEED must be an integer, got ${env.FUZZ_SEED}`);
  return { iterations, seed, timeoutMs: fuzzTimeoutMs(iterations) };
}

/** Real JPEGs up to this size join the seed corpus (bigger ones make each iteration slow). */
const MAX_CORPUS_BYTES = 200_000;

export async function fuzzSources(): Promise<{ name: string; bytes: Buffer }[]> {
  const raw = (w: number, h: number, seed: number) =>
    sharp(photoPixels(w, h, seed), { raw: { width: w, height: h, channels: 3 } });
  const generated: [string, Promise<Buffer>][] = [
    ["baseline-4:2:0", raw(320, 240, 81).jpeg({ quality: 85 }).toBuffer()],
    ["progressive", raw(300, 200, 82).jpeg({ progressive: true }).toBuffer()],
    ["4:4:4-q95", raw(256, 256, 83).jpeg({ quality: 95, chromaSubsampling: "4:4:4" }).toBuffer()],
    [
      "exif-orientation-6-icc",
      raw(240, 180, 84).jpeg().withIccProfile("p3").withMetadata({ orientation: 6 }).toBuffer(),
    ],
    ["grey", raw(200, 150, 85).greyscale().jpeg().toBuffer()],
    ["mozjpeg-trellis", raw(280, 210, 86).jpeg({ mozjpeg: true }).toBuffer()],
  ];
  const out = await Promise.all(generated.map(async ([name, p]) => ({ name, bytes: await p })));
  if (existsSync(CORPUS)) {
    for (const dir of ["photos", "odd-metadata"]) {
      for (const f of readdirSync(join(CORPUS, dir)).sort()) {
        const path = join(CORPUS, dir, f);
        if (f.endsWith(".jpg") && statSync(path).size <= MAX_CORPUS_BYTES) {
          out.push({ name: `corpus/${dir}/${f}`, bytes: readFileSync(path) });
        }
      }
    }
  }
  return out;
}

/** HEIC, PNG and WebP seeds for the in-Worker decoders' fuzz pass (RESIZER=wasm): small files of every layout they read. */
export async function formatFuzzSources(): Promise<{ name: string; bytes: Buffer }[]> {
  const raw = (w: number, h: number, seed: number) =>
    sharp(photoPixels(w, h, seed), { raw: { width: w, height: h, channels: 3 } });
  const heic = (f: string) => readFileSync(resolve(import.meta.dirname, "../fixtures/heic", f));
  const generated: [string, Promise<Buffer>][] = [
    ["heic-10bit-imir", Promise.resolve(heic("single-10bit-imir.heic"))],
    ["heic-grid-irot-p3", Promise.resolve(heic("grid-irot1-p3.heic"))],
    ["png-rgb", raw(160, 120, 91).png().toBuffer()],
    [
      "png-16bit-adam7",
      raw(120, 90, 92).toColourspace("rgb16").png({ progressive: true }).toBuffer(),
    ],
    ["png-palette", raw(140, 100, 93).png({ palette: true }).toBuffer()],
    ["webp-lossy", raw(200, 150, 94).webp({ quality: 80 }).toBuffer()],
    ["webp-lossless", raw(120, 90, 95).webp({ lossless: true }).toBuffer()],
  ];
  return Promise.all(generated.map(async ([name, p]) => ({ name, bytes: await p })));
}
