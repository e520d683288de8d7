/**
 * RESIZE_MODE=crop-224 in Node, where the gpu-node's preprocessing is at hand: the edge cuts
 * exactly open_clip's crop (same arithmetic as the gpu-node), the sharp and WASM resizers send a
 * plain 224x224 JPEG that takes the gpu-node's exact-224 fast path, and its pixels are what the
 * gpu-node would have made of the original, up to JPEG loss. Small images are never upscaled.
 */
import { readFileSync } from "node:fs";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { decodeForClip } from "../../gpu-node/preprocess/decode.ts";
import { isPlainJpeg224 } from "../../gpu-node/preprocess/jpeg-fast-path.ts";
import { centreCropOffset, clipCrop, clipResizeSize } from "../../imaging/clip.ts";
import { compileJpegWasm } from "../../imaging/jpeg/codec.ts";
import { photo } from "../../test/support/images.ts";
import { createSharpResizer } from "../node/sharp-resizer.ts";
import { stripJpegMetadata } from "../strip-metadata.ts";
import { validateImage } from "../validate/index.ts";
import type { Resizer } from "./resizer.ts";
import { createJpegWasmResizer } from "./wasm/core.ts";

const LIMITS = { maxPixels: 100_000_000, maxBytes: 50 * 1024 * 1024 };
const wasm = createJpegWasmResizer(
  await compileJpegWasm(readFileSync(new URL("../../imaging/jpeg/jpeg.wasm", import.meta.url))),
);
const RESIZERS: Resizer[] = [createSharpResizer(), wasm];

async function viaEdge(resizer: Resizer, bytes: Uint8Array, quality = 90) {
  const v = validateImage(bytes, { maxBytes: LIMITS.maxBytes, maxPixels: LIMITS.maxPixels }, "x");
  const out = await resizer.resize(
    { bytes, format: v.format, width: v.width, height: v.height, orientation: v.orientation },
    { shortSide: 256, quality, crop224: true },
  );
  return { ...out, bytes: stripJpegMetadata(out.bytes) };
}

function meanAbsDiff(a: Uint8Array, b: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
}

describe("crop-224: the edge sends open_clip's centre crop", () => {
  it("cuts the gpu-node's crop for every size (torchvision sizes, Python rounding)", () => {
    for (let w = 224; w < 700; w += 7) {
      for (const h of [224, 225, 256, 301, 341, 480, 1000, 4032]) {
        const c = clipCrop(w, h)!;
        const r = clipResizeSize(w, h);
        expect([c.resizeWidth, c.resizeHeight]).toEqual([r.width, r.height]);
        expect([c.left, c.top]).toEqual([centreCropOffset(r.width), centreCropOffset(r.height)]);
      }
    }
    expect(clipCrop(223, 4000)).toBeUndefined();
  });

  it.each(RESIZERS.map((r) => [r.name, r] as const))(
    "%s: a plain 224x224 JPEG close to the gpu-node's own preprocessing of the original",
    async (_, resizer) => {
      for (const [w, h, seed] of [
        [1600, 1200, 1],
        [1200, 1600, 2],
        [4032, 3024, 3],
        [300, 225, 4],
      ] as const) {
        const original = await photo(w, h, seed, "jpeg", 92);
        const out = await viaEdge(resizer, original);
        expect([out.width, out.height]).toEqual([224, 224]);
        expect(isPlainJpeg224(out.bytes)).toBe(true);
        const sent = await decodeForClip(out.bytes, LIMITS);
        const direct = await decodeForClip(original, LIMITS);
        // JPEG loss at q90 (and, for WASM, Pillow's kernel against libvips'): a few grey levels.
        expect(meanAbsDiff(sent.pixels, direct.pixels)).toBeLessThan(3);
      }
    },
  );

  it.each(RESIZERS.map((r) => [r.name, r] as const))(
    "%s: crops the image as displayed (EXIF orientation 6)",
    async (_, resizer) => {
      const upright = await photo(900, 1200, 7, "jpeg", 92);
      // Stored rotated; orientation 6 turns it back upright.
      const stored = await sharp(upright)
        .rotate(-90)
        .jpeg({ quality: 92 })
        .withMetadata({ orientation: 6 })
        .toBuffer();
      const out = await viaEdge(resizer, stored);
      const sent = await decodeForClip(out.bytes, LIMITS);
      const direct = await decodeForClip(upright, LIMITS);
      expect(meanAbsDiff(sent.pixels, direct.pixels)).toBeLessThan(4);
    },
  );

  it.each(RESIZERS.map((r) => [r.name, r] as const))(
    "%s: never upscales an image whose short side is under 224",
    async (_, resizer) => {
      const small = await photo(300, 200, 9, "jpeg", 92);
      const out = await viaEdge(resizer, small);
      expect([out.width, out.height]).toEqual([300, 200]);
    },
  );
});
