/** Vitest globalSetup (runs in Node): encodes real images with sharp and provides them, base64, to the workerd tests as `inject("edgeFixtures")`. */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import sharp, { type Sharp } from "sharp";
import type { TestProject } from "vitest/node";
import { bigJpeg, photoPixels } from "./images.ts";

/** One encoded image and what sharp itself reads back from it. */
export interface EdgeFixture {
  base64: string;
  /** sharp's metadata().format ("jpeg", "png", "webp", "gif", "tiff", "heif"). */
  format: string;
  /** sharp's metadata(): stored size, except HEIF, where libheif reports the display size. */
  width: number;
  height: number;
  /** 1 when sharp reports none (HEIF: the transforms are applied by the decoder). */
  orientation: number;
  pages: number;
  hasAlpha: boolean;
}

declare module "vitest" {
  export interface ProvidedContext {
    edgeFixtures: Record<string, EdgeFixture>;
  }
}

function base(width: number, height: number, seed: number, alpha = false): Sharp {
  const rgb = photoPixels(width, height, seed);
  if (!alpha) return sharp(rgb, { raw: { width, height, channels: 3 } });
  const rgba = Buffer.alloc(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    rgb.copy(rgba, i * 4, i * 3, i * 3 + 3);
    rgba[i * 4 + 3] = (i * 7) % 256;
  }
  return sharp(rgba, { raw: { width, height, channels: 4 } });
}

async function fixture(buffer: Buffer): Promise<EdgeFixture> {
  const m = await sharp(buffer).metadata();
  return {
    base64: buffer.toString("base64"),
    format: m.format ?? "",
    width: m.width ?? 0,
    height: m.height ?? 0,
    orientation: m.orientation ?? 1,
    pages: m.pages ?? 1,
    hasAlpha: m.hasAlpha ?? false,
  };
}

const heicFile = (name: string) =>
  readFileSync(resolve(import.meta.dirname, "../fixtures/heic", name));

export async function makeEdgeFixtures(): Promise<Record<string, EdgeFixture>> {
  const gifFrames = [0, 1, 2].map((seed) => photoPixels(40, 30, seed));
  const animated = await sharp(Buffer.concat(gifFrames), {
    raw: { width: 40, height: 90, channels: 3, pageHeight: 30 },
  })
    .gif()
    .toBuffer();
  const buffers: Record<string, Promise<Buffer>> = {
    jpegOrientation6: base(64, 48, 1).jpeg().withMetadata({ orientation: 6 }).toBuffer(),
    jpegProgressive: base(80, 60, 2).jpeg({ progressive: true }).toBuffer(),
    png: base(33, 17, 3).png().toBuffer(),
    pngAlpha: base(20, 10, 4, true).png().toBuffer(),
    webpLossy: base(50, 30, 5).webp({ quality: 80 }).toBuffer(),
    webpLossless: base(31, 29, 6).webp({ lossless: true }).toBuffer(),
    webpAlpha: base(24, 16, 7, true).webp({ quality: 80 }).toBuffer(),
    webpOrientation8: base(40, 20, 8).webp().withMetadata({ orientation: 8 }).toBuffer(),
    gif: base(37, 23, 9).gif().toBuffer(),
    gifAnimated: Promise.resolve(animated),
    tiff: base(45, 35, 10).tiff().toBuffer(),
    tiffOrientation6: base(30, 20, 11).tiff().withMetadata({ orientation: 6 }).toBuffer(),
    tiffAlpha: base(16, 12, 12, true).tiff({ compression: "lzw" }).toBuffer(),
    avif: base(64, 40, 13).avif({ quality: 50, effort: 0 }).toBuffer(),
    // libheif stores the orientation as irot/imir transforms; sharp then reports the display size.
    avifOrientation6: base(64, 40, 15)
      .avif({ quality: 50, effort: 0 })
      .withMetadata({ orientation: 6 })
      .toBuffer(),
    avifAlpha: base(32, 32, 14, true).avif({ quality: 50, effort: 0 }).toBuffer(),
    jpegBig: bigJpeg(),
    // A phone-like photo with everything the edge must drop: orientation, GPS, camera, ICC.
    photoWithGps: base(640, 480, 16)
      .jpeg({ quality: 90 })
      .withIccProfile("p3")
      .withExif({
        IFD0: { Make: "TestPhone", Model: "Model X" },
        IFD3: { GPSLatitudeRef: "N", GPSLatitude: "48/1 51/1 24/1" },
      })
      .withMetadata({ orientation: 6 })
      .toBuffer(),
    // The same pixels turned the way orientation 6 displays them, stored upright.
    photoUpright: base(640, 480, 16).rotate(90).jpeg({ quality: 90 }).toBuffer(),
    // An iPhone-like HEIC grid (irot, Display P3) and a 10-bit one (imir): test/fixtures/heic.
    heicGrid: Promise.resolve(heicFile("grid-irot1-p3.heic")),
    heic10Bit: Promise.resolve(heicFile("single-10bit-imir.heic")),
    png16: base(90, 60, 17).toColourspace("rgb16").png().toBuffer(),
  };
  const out: Record<string, EdgeFixture> = {};
  for (const [name, buffer] of Object.entries(buffers)) out[name] = await fixture(await buffer);
  return out;
}

export default async function setup(project: TestProject): Promise<void> {
  project.provide("edgeFixtures", await makeEdgeFixtures());
}
