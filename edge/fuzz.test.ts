// The seeded mutation fuzzer against the edge inside workerd (gpu-node stand-in): JPEG mutants
// through the real Images binding, and HEIC/PNG/WebP mutants through the in-Worker decoders
// (RESIZER=wasm). Every mutant gets 200 or a 4xx with a JSON error — never a 5xx, never a throw —
// and whatever is accepted reaches the gpu-node only as a clean JPEG. Iterations:
// FUZZ_ITERATIONS (default in test/support/fuzz-sources.ts), seed FUZZ_SEED; `npm run fuzz` runs
// more.
import { beforeAll, describe, expect, inject, it } from "vitest";
import { countBy, recordFigures } from "../test/reliability/figures.ts";
import type { FuzzFixture } from "../test/support/hostile-fixtures.setup.ts";
import { type Mutation, mutate, prng, tally } from "../test/support/mutate.ts";
import { fromBase64, type TestApp, testApp } from "./testing/test-app.ts";
import { readHeader } from "./validate/index.ts";

const fuzz = inject("fuzz") as FuzzFixture;
const ALLOWED = new Set([200, 413, 415, 422]);

let app: TestApp;
let wasmApp: TestApp;
beforeAll(async () => {
  app = await testApp();
  wasmApp = await testApp({ vars: { RESIZER: "wasm" } });
});

/** `iterations` mutants of `sources` against `target`, each checked; the figures for the report. */
async function fuzzPass(
  target: TestApp,
  sources: FuzzFixture["sources"],
  iterations: number,
  contentType: string,
) {
  const bytes = sources.map((s) => fromBase64(s.base64));
  const rnd = prng(fuzz.seed);
  const results: { status: number; mutations: readonly Mutation[] }[] = [];
  const t0 = performance.now();
  for (let i = 0; i < iterations; i++) {
    const m = mutate(bytes, rnd);
    const before = target.standIn.received.length;
    const res = await target.request("/v1/embeddings", {
      method: "POST",
      headers: { "content-type": contentType },
      body: m.bytes,
    });
    const text = await res.text();
    const what = `iteration ${i} (seed ${fuzz.seed}, ${m.mutations.join("+")} on ${sources[m.source]!.name}): ${res.status} ${text.slice(0, 300)}`;
    expect(ALLOWED.has(res.status), what).toBe(true);
    if (res.status === 200) {
      const sent = target.standIn.received.at(-1)!;
      expect(target.standIn.received.length - before, what).toBe(1);
      const h = readHeader(sent, "jpeg");
      expect(Math.min(h.width, h.height), what).toBeLessThanOrEqual(256);
    } else {
      const body = JSON.parse(text) as { error: { code: string; message: string } };
      expect(body.error.message, what).toMatch(/^image 0: /);
      expect(target.standIn.received.length, what).toBe(before);
    }
    results.push({ status: res.status, mutations: m.mutations });
  }
  expect((await target.request("/readyz", {}, null)).status).toBe(200);
  return {
    iterations,
    seed: fuzz.seed,
    sources: sources.length,
    byStatus: countBy(results, (r) => String(r.status)),
    mutations: tally(results),
    fiveHundreds: 0,
    ms: Math.round(performance.now() - t0),
  };
}

describe("JPEG mutation fuzzer against the edge (workerd)", () => {
  it(`answers ${fuzz.iterations} mutants (seed ${fuzz.seed}) with 200 or a clean 4xx`, {
    timeout: fuzz.timeoutMs,
  }, async ({ task }) => {
    recordFigures(task, {
      section: "fuzz",
      title: `JPEG mutation fuzzer, ${fuzz.iterations} iterations, seed ${fuzz.seed}`,
      target: "edge in workerd (real Images binding, gpu-node stand-in)",
      data: await fuzzPass(app, fuzz.sources, fuzz.iterations, "image/jpeg"),
    });
  });
});

describe("HEIC, PNG and WebP mutation fuzzer against the in-Worker decoders (RESIZER=wasm)", () => {
  // A third of the JPEG pass's iterations: each HEIC mutant decodes HEVC tiles.
  const iterations = Math.max(30, Math.round(fuzz.iterations / 3));
  it(`answers ${iterations} mutants (seed ${fuzz.seed}) with 200 or a clean 4xx`, {
    timeout: fuzz.timeoutMs,
  }, async ({ task }) => {
    recordFigures(task, {
      section: "fuzz",
      title: `HEIC/PNG/WebP mutation fuzzer, ${iterations} iterations, seed ${fuzz.seed}`,
      target: "edge in workerd (RESIZER=wasm: libde265, PNG inflate, libwebp; gpu-node stand-in)",
      data: await fuzzPass(wasmApp, fuzz.formatSources, iterations, "application/octet-stream"),
    });
  });
});
