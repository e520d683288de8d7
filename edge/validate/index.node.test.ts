import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { bigJpeg, randomBytes } from "../../test/support/images.ts";
import { HttpError } from "../errors.ts";
import { validateImage } from "./index.ts";

// Node side of the validation tests: the real-photo corpus (read from disk, checked against what
// sharp/libvips reads) and timings with a real clock.

const LIMITS = { maxBytes: 20 * 1024 * 1024, maxPixels: 100_000_000 };
const CORPUS = join(import.meta.dirname, "..", "..", "..", "shared", "corpus");
const files = existsSync(CORPUS)
  ? ["photos", "odd-metadata"].flatMap((dir) =>
      readdirSync(join(CORPUS, dir))
        .filter((f) => /\.(jpe?g|png|webp|gif|tiff?|heic|heif|avif)$/i.test(f))
        .map((f) => `${dir}/${f}`),
    )
  : [];

describe.skipIf(files.length === 0)("corpus (../shared/corpus)", () => {
  it.each(files)("%s: validates with sharp's format, size and orientation", async (file) => {
    const buffer = readFileSync(join(CORPUS, file));
    const v = validateImage(new Uint8Array(buffer), LIMITS, file);
    const m = await sharp(buffer).metadata();
    if (m.format === "heif") {
      expect(["heic", "avif"]).toContain(v.format);
      // libheif applies irot/imir itself and reports the display size.
      expect([v.orientedWidth, v.orientedHeight]).toEqual([m.width, m.height]);
    } else {
      expect(v.format).toBe(m.format);
      expect([v.width, v.height]).toEqual([m.width, m.height]);
      expect(v.orientation).toBe(m.orientation ?? 1);
    }
  });
});

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Median µs per call over batches of `n` calls. */
function time(fn: () => unknown, n: number): number {
  const batches: number[] = [];
  for (let b = 0; b < 9; b++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fn();
    batches.push(((performance.now() - t0) * 1000) / n);
  }
  return median(batches);
}

describe("timing (Node, V8 as in workerd)", () => {
  it("validates a ~4 MB JPEG in well under 1 ms, and stays cheap on the slow paths", async () => {
    const jpeg = new Uint8Array(await bigJpeg());
    // Motion-photo style: 4 MB of non-JPEG data after the EOI (the backward EOI search runs).
    const trailing = new Uint8Array(jpeg.length + 4 * 1024 * 1024);
    trailing.set(jpeg);
    trailing.set(randomBytes(4 * 1024 * 1024, 3), jpeg.length);
    // Truncated: no EOI anywhere after the scan starts (the search covers the whole body).
    const cut = jpeg.subarray(0, jpeg.length - 1000);
    const rejects = () => {
      try {
        validateImage(cut, LIMITS, "x");
      } catch (err) {
        if (err instanceof HttpError && err.status === 422) return;
        throw err;
      }
      throw new Error("truncated JPEG accepted");
    };

    const whole = time(() => validateImage(jpeg, LIMITS, "x"), 2000);
    const withTrailer = time(() => validateImage(trailing, LIMITS, "x"), 200);
    const truncated = time(rejects, 5);
    console.log(
      `validateImage, ${jpeg.length} B JPEG: ${whole.toFixed(1)} µs; ` +
        `+4 MB after EOI: ${withTrailer.toFixed(1)} µs; truncated (full scan): ${truncated.toFixed(0)} µs`,
    );
    expect(whole).toBeLessThan(100);
    expect(withTrailer).toBeLessThan(5_000);
    expect(truncated).toBeLessThan(50_000);
  });
});
