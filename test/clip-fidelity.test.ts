// Fidelity with the calibrated vit-b32: our preprocessing gives the embeddings Pillow's would
// (cosine ≥ 0.999), and different real photos get clearly different embeddings (median ≤ 0.6).
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeForClip } from "../gpu-node/preprocess/decode.ts";
import { openEmbedder, type PixelEmbedder } from "./support/embedder.ts";
import { cosine } from "./support/gpu-node-client.ts";
import { median } from "./support/stats.ts";

const ROOT = resolve(import.meta.dirname, "..");
const PARITY = join(ROOT, "test/fixtures/parity");
const CORPUS = resolve(ROOT, "../shared/corpus");
const limits = { maxPixels: 100_000_000, maxBytes: 20 * 1024 * 1024 };

let embedder: PixelEmbedder;
beforeAll(async () => {
  embedder = await openEmbedder("vit-b32");
}, 180_000);
afterAll(() => embedder?.close());

const embed = (pixels: readonly Uint8Array[]) => embedder.embed(pixels);

describe("embedding fidelity (calibrated vit-b32)", () => {
  it("matches Pillow's preprocessing: cosine ≥ 0.999 on every parity fixture", async () => {
    const manifest = JSON.parse(readFileSync(join(PARITY, "manifest.json"), "utf8")) as {
      cases: { image: string; reference: string }[];
    };
    const ours = await Promise.all(
      manifest.cases.map(
        async (c) => (await decodeForClip(readFileSync(join(PARITY, c.image)), limits)).pixels,
      ),
    );
    const pillow = manifest.cases.map((c) => readFileSync(join(PARITY, c.reference)));
    const a = await embed(ours);
    const b = await embed(pillow);
    const cosines = manifest.cases.map((c, i) => [c.image, cosine(a[i]!, b[i]!)] as const);
    console.log("cosine vs Pillow:", cosines.map(([n, c]) => `${n} ${c.toFixed(6)}`).join(", "));
    for (const [name, c] of cosines) expect(c, name).toBeGreaterThanOrEqual(0.999);
  });

  it.skipIf(!existsSync(CORPUS))(
    "tells different real photos apart: median pairwise cosine ≤ 0.6",
    async () => {
      // One file per scene: the orientation_* files are one scene stored eight ways.
      const files = readdirSync(join(CORPUS, "photos"))
        .filter((f) => /\.(jpe?g|tiff?|heif)$/i.test(f))
        .filter((f) => !f.startsWith("orientation_") || f === "orientation_landscape_1.jpg")
        .map((f) => join(CORPUS, "photos", f));
      expect(files.length).toBeGreaterThanOrEqual(8);
      const pixels = await Promise.all(
        files.map(async (f) => (await decodeForClip(readFileSync(f), limits)).pixels),
      );
      const vs = await embed(pixels);
      const pairs: number[] = [];
      for (let i = 0; i < vs.length; i++) {
        for (let j = i + 1; j < vs.length; j++) pairs.push(cosine(vs[i]!, vs[j]!));
      }
      console.log(
        `${files.length} photos, median cosine ${median(pairs).toFixed(3)}, max ${Math.max(...pairs).toFixed(3)}`,
      );
      expect(median(pairs)).toBeLessThanOrEqual(0.6);
    },
  );
});
