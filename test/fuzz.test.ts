// The seeded JPEG mutation fuzzer against the gpu-node CLI (its own processes, vit-tiny): every
// mutant goes through one EmbedStream and comes back as a unit vector or a per-item
// invalid_argument — never an internal error, never a dead stream or process — and the edge's
// header validation (edge/validate/, run here in Node) never throws anything but its HttpError.
// FUZZ_ITERATIONS / FUZZ_SEED change the run (`npm run fuzz -- --fuzz-iterations 20000`); the
// test's timeout grows with the iterations (fuzzTimeoutMs).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpError } from "../edge/errors.ts";
import { validateImage } from "../edge/validate/index.ts";
import { testConfig } from "../gpu-node/config.ts";
import { countBy, recordFigures } from "./reliability/figures.ts";
import { fuzzSettings, fuzzSources } from "./support/fuzz-sources.ts";
import { embedderClient, maxAbsDiff, norm, toFloats } from "./support/gpu-node-client.ts";
import { photo } from "./support/images.ts";
import { type Mutant, mutate, prng, tally } from "./support/mutate.ts";
import { MiB } from "./support/proc.ts";
import { type GpuNodeProcess, spawnGpuNode } from "./support/processes.ts";

const settings = fuzzSettings();
/**
 * Each pass is one EmbedStream with the test's timeout as its deadline; above the gpu-node's
 * default cap (--max-deadline-ms, 10 min) this node is started to allow it (up to its 24 h bound).
 */
const streamDeadlineMs = Math.min(settings.timeoutMs, 86_400_000);
const deadlineArgs =
  streamDeadlineMs > testConfig().maxDeadlineMs
    ? ["--max-deadline-ms", String(streamDeadlineMs)]
    : [];
let gpu: GpuNodeProcess;
let sources: { name: string; bytes: Buffer }[];

beforeAll(async () => {
  [gpu, sources] = await Promise.all([
    spawnGpuNode(["--model", "vit-tiny", "--threads", "1", ...deadlineArgs], {
      // A capped heap without NODE_FLAGS' 64 MB starting budget, so that RSS shows what is
      // retained (see hostile-inputs.test.ts).
      nodeArgs: [],
      env: { NODE_OPTIONS: "--max-old-space-size=96 --max-semi-space-size=4" },
    }),
    fuzzSources(),
  ]);
}, 120_000);
afterAll(() => gpu?.stop("SIGKILL"));

describe("JPEG mutation fuzzer against the gpu-node", () => {
  it(`answers ${settings.iterations} mutants (seed ${settings.seed}) with a vector or invalid_argument each`, {
    timeout: settings.timeoutMs,
  }, async ({ task }) => {
    const rnd = prng(settings.seed);
    const mutants: Mutant[] = Array.from({ length: settings.iterations }, () =>
      mutate(
        sources.map((s) => s.bytes),
        rnd,
      ),
    );
    const client = embedderClient(gpu.url, "grpc");
    const good = await photo(256, 200, 3);
    const before = toFloats(
      (await client.embed({ images: [{ id: "g", data: good }] })).embeddings[0]!.vector,
    );

    // The edge's own verdict on each mutant, from its header parser alone.
    const edge = mutants.map((m, i) => {
      try {
        validateImage(m.bytes, { maxBytes: 20 * MiB, maxPixels: 100_000_000 }, "image 0");
        return "accepted";
      } catch (err) {
        expect(err, `iteration ${i}: ${m.mutations.join("+")}`).toBeInstanceOf(HttpError);
        return String((err as HttpError).status);
      }
    });

    /** One EmbedStream of every mutant; the verdict per iteration. */
    const streamAll = async (): Promise<Map<number, string>> => {
      async function* requests() {
        for (const [i, m] of mutants.entries()) yield { image: { id: String(i), data: m.bytes } };
      }
      const got = new Map<number, string>();
      for await (const r of client.embedStream(requests(), { timeoutMs: streamDeadlineMs })) {
        const i = Number(r.id);
        const what = `iteration ${i} (seed ${settings.seed}, ${mutants[i]!.mutations.join("+")} on ${sources[mutants[i]!.source]!.name})`;
        if (r.result.case === "vector") {
          expect(norm(toFloats(r.result.value)), what).toBeCloseTo(1, 4);
          got.set(i, "ok");
        } else {
          expect(r.result.value!.code, `${what}: ${r.result.value!.message}`).toBe(
            "invalid_argument",
          );
          expect(r.result.value!.message, what).toMatch(
            /^image \d+ \(id "\d+"\): (corrupt|unsupported_format|too_many_pixels|empty): /,
          );
          got.set(i, "invalid_argument");
        }
      }
      expect(got.size).toBe(mutants.length);
      return got;
    };
    const t0 = performance.now();
    const got = await streamAll();
    const ms = performance.now() - t0;
    // Mutants may legitimately claim up to the pixel limit (a 65500x600 strip decodes to ~180 MB
    // of transient memory): the first pass reaches that peak, the second may not go past it.
    const rssBefore = gpu.rss();
    const again = await streamAll();
    const rssAfter = gpu.rss();
    expect(Object.fromEntries(again)).toEqual(Object.fromEntries(got)); // same bytes, same verdict
    expect(gpu.alive()).toBe(true);
    expect((await fetch(`${gpu.url}/readyz`)).status).toBe(200);
    const after = toFloats(
      (await client.embed({ images: [{ id: "g", data: good }] })).embeddings[0]!.vector,
    );
    expect(maxAbsDiff(before, after)).toBeLessThanOrEqual(1e-6);
    expect(rssAfter - rssBefore).toBeLessThan(64 * MiB);

    const both = mutants.map((_, i) => `edge ${edge[i]} / gpu-node ${got.get(i)}`);
    recordFigures(task, {
      section: "fuzz",
      title: `JPEG mutation fuzzer, ${settings.iterations} iterations, seed ${settings.seed}`,
      target: "gpu-node (CLI process, EmbedStream) and the edge's header validation (in Node)",
      data: {
        iterations: settings.iterations,
        seed: settings.seed,
        sources: sources.length,
        gpuNode: countBy([...got.values()], (v) => v),
        edgeValidation: countBy(edge, (v) => v),
        crossTab: countBy(both, (v) => v),
        mutations: tally(mutants),
        internalErrors: 0,
        imagesPerSecond: Math.round((mutants.length * 1000) / ms),
        rssMiB: [+(rssBefore / MiB).toFixed(1), +(rssAfter / MiB).toFixed(1)],
      },
    });
  });
});
