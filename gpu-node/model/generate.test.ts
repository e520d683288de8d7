import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { generateVitModel } from "./generate.ts";
import { embed, IMAGE_BYTES, openSession } from "./ort-run.ts";
import { syntheticBatch } from "./synthetic-images.ts";
import { INPUT_NAME, OUTPUT_NAME } from "./vit-graph.ts";

const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

describe("generateVitModel", () => {
  it("is byte-identical for one seed and differs across seeds", async () => {
    const [a, b, c] = await Promise.all([
      generateVitModel("vit-tiny", { seed: 7 }),
      generateVitModel("vit-tiny", { seed: 7 }),
      generateVitModel("vit-tiny", { seed: 8 }),
    ]);
    expect(sha(a)).toBe(sha(b));
    expect(sha(a)).not.toBe(sha(c));
    expect(a.length).toBe(c.length);
  });

  it("rejects a bad seed", async () => {
    await expect(generateVitModel("vit-tiny", { seed: -1 })).rejects.toThrow(/seed/);
    await expect(generateVitModel("vit-tiny", { seed: 1.5 })).rejects.toThrow(/seed/);
  });

  it("takes UINT8 NHWC with a dynamic batch and gives unit-length [N, 512] rows", async () => {
    const session = await openSession(await generateVitModel("vit-tiny"), 2);
    try {
      expect(session.inputNames).toEqual([INPUT_NAME]);
      expect(session.outputNames).toEqual([OUTPUT_NAME]);
      const images = syntheticBatch(1, 3);
      const three = await embed(session, images);
      expect(three.dim).toBe(512);
      expect(three.data.length).toBe(3 * 512);
      for (let i = 0; i < 3; i++) {
        const row = three.data.subarray(i * 512, (i + 1) * 512);
        expect(Math.hypot(...row)).toBeCloseTo(1, 5);
        // A row does not depend on its batch neighbours.
        const alone = await embed(session, images.subarray(i * IMAGE_BYTES, (i + 1) * IMAGE_BYTES));
        for (let j = 0; j < 512; j++) expect(alone.data[j]).toBeCloseTo(row[j]!, 5);
      }
    } finally {
      await session.release();
    }
  });
});
