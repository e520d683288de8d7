// The in-Worker resizer's HEIC, PNG and WebP paths on Node (the same .wasm modules workerd bundles):
// HEIC against libheif (heic-decode) and against its JPEG twin (same orientation, same colour),
// PNG and WebP variants against sharp, memory for 12 MP and 48 MP HEIC grids, the reduced-scale
// decode, the Node edge's fallback. Hostile inputs: ../hostile.test.ts and test/hostile-inputs.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { deflateSync } from "node:zlib";
import sharp from "sharp";
import { describe, expect, it } from "vitest";
import { HevcWasm } from "../../imaging/heif/codec.ts";
import { planHeif, primaryHevcItem } from "../../imaging/heif/container.ts";
import { orient } from "../../imaging/resample/pixels.ts";
import {
  buildIcc,
  COLORANTS,
  SRGB_CURVE,
  withIcc,
  withSegments,
} from "../../imaging/testing/icc-profiles.ts";
import { compileWasm } from "../../imaging/wasm-instance.ts";
import { HEIC_FIXTURES, heicFixture } from "../../test/fixtures/heic/fixtures.ts";
import { writeHeif } from "../../test/support/heif.ts";
import { pngChunk as chunk, photoLike, withAlpha } from "../../test/support/images.ts";
import { createSharpResizer } from "../node/sharp-resizer.ts";
import { rejection } from "../testing/rejection.ts";
import { readHeader, sniffFormat } from "../validate/index.ts";
import type { ResizeInput } from "./resizer.ts";
import { createWasmResizer } from "./wasm/formats.ts";

const MiB = 1024 * 1024;
// libheif in WASM (the gpu-node's HEIC decoder), as the reference.
const decodeHeifReference = createRequire(import.meta.url)("heic-decode") as (input: {
  buffer: Uint8Array;
}) => Promise<{ width: number; height: number; data: Uint8ClampedArray }>;
const file = (p: string) => readFileSync(new URL(`../../imaging/${p}`, import.meta.url));
const modules = {
  jpeg: await compileWasm(file("jpeg/jpeg.wasm")),
  hevc: await compileWasm(file("heif/hevc.wasm")),
  webp: await compileWasm(file("webp/webp.wasm")),
};
const opts = { shortSide: 256, quality: 85 };

function inputOf(bytes: Uint8Array): ResizeInput {
  const format = sniffFormat(bytes)!;
  const h = readHeader(bytes, format);
  return { bytes, format, width: h.width, height: h.height, orientation: h.orientation };
}

async function rawOf(jpeg: Uint8Array) {
  const { data, info } = await sharp(jpeg).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

function meanAbsDiff(a: Uint8Array, b: Uint8Array) {
  expect(a.length).toBe(b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
}

/** Both resized outputs decoded: same size, and their mean |difference| in grey levels. */
async function outputDiff(a: Uint8Array, b: Uint8Array) {
  const [ra, rb] = await Promise.all([rawOf(a), rawOf(b)]);
  expect([ra.width, ra.height]).toEqual([rb.width, rb.height]);
  return meanAbsDiff(ra.data, rb.data);
}

/** An APP1 EXIF segment holding only an orientation tag. */
function exifOrientation(o: number): Uint8Array {
  const tiff = Buffer.from([
    0x49,
    0x49,
    0x2a,
    0,
    8,
    0,
    0,
    0,
    1,
    0,
    0x12,
    0x01,
    3,
    0,
    1,
    0,
    0,
    0,
    o,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
  ]);
  const body = Buffer.concat([Buffer.from("Exif\0\0", "latin1"), tiff]);
  return Buffer.concat([
    Buffer.from([0xff, 0xe1, (body.length + 2) >> 8, (body.length + 2) & 255]),
    body,
  ]);
}

const p3 = buildIcc({ colorants: COLORANTS.displayP3, trc: SRGB_CURVE });

describe("HEIC through the WASM resizer", () => {
  it("decodes a grid tile by tile as libheif does (2x2 tiles overhanging the image)", async () => {
    const bytes = heicFixture(HEIC_FIXTURES.grid);
    const plan = planHeif(bytes, 1e8);
    expect([plan.grid, plan.tiles.length, plan.tileWidth, plan.width]).toEqual([true, 4, 512, 600]);
    const ours = await new HevcWasm(modules.hevc).decodeReduced(plan, 1);
    const ref = await decodeHeifReference({ buffer: bytes });
    // libheif applies irot itself; ours is stored, turned here. libheif leaves the ICC alone.
    const turned = orient({ width: ours.width, height: ours.height, data: ours.data }, 8);
    expect([turned.width, turned.height]).toEqual([ref.width, ref.height]);
    const refRgb = new Uint8Array(ref.width * ref.height * 3);
    for (let i = 0; i < ref.width * ref.height; i++)
      refRgb.set(ref.data.subarray(i * 4, i * 4 + 3), i * 3);
    expect(meanAbsDiff(turned.data, refRgb)).toBeLessThan(1);
  });

  it.each(Object.entries(HEIC_FIXTURES))(
    "%s: same orientation and colour as its JPEG twin (EXIF orientation, ICC in APP2)",
    async (_name, f) => {
      const resizer = createWasmResizer(modules);
      const heic = await resizer.resize(inputOf(heicFixture(f)), opts);
      expect(resizer.lastRun).toMatchObject({
        format: "heic",
        orientation: f.orientation,
        icc: f.p3 ? "converted" : "none",
      });
      const rgb = photoLike(f.width, f.height, f.seed);
      const plainJpeg = await sharp(rgb, { raw: { width: f.width, height: f.height, channels: 3 } })
        .jpeg({ quality: 95 })
        .toBuffer();
      let jpeg = withSegments(plainJpeg, [exifOrientation(f.orientation)]);
      if (f.p3) jpeg = withIcc(jpeg, p3);
      const twin = await resizer.resize(inputOf(jpeg), opts);
      expect([heic.width, heic.height]).toEqual([twin.width, twin.height]);
      expect(await outputDiff(heic.bytes, twin.bytes)).toBeLessThan(3);
      // The check has teeth: the twin left untagged (P3 read as sRGB) or unturned is far off.
      if (f.p3 || f.orientation !== 1) {
        const plain = f.p3 ? withSegments(plainJpeg, [exifOrientation(f.orientation)]) : plainJpeg;
        const wrong = await resizer.resize(inputOf(plain), opts);
        expect(await outputDiff(heic.bytes, wrong.bytes)).toBeGreaterThan(4);
      }
    },
  );

  it("keeps a 48 MP iPhone-like grid far inside the Worker's 128 MB", async () => {
    // One coded 512x512 tile repeated 16x12 times (48 MP), as iPhones tile (12 MP: the benchmark).
    const tile = primaryHevcItem(heicFixture(HEIC_FIXTURES.tile));
    for (const [cols, rows] of [[16, 12]] as const) {
      const bytes = writeHeif({
        width: cols * 512 - 64,
        height: rows * 512 - 48,
        tiles: Array.from({ length: cols * rows }, () => tile),
        columns: cols,
        tileWidth: 512,
        tileHeight: 512,
      });
      const resizer = createWasmResizer(modules);
      const out = await resizer.resize(inputOf(bytes), opts);
      expect(Math.min(out.width, out.height)).toBe(256);
      expect(resizer.lastRun!.denom).toBeGreaterThanOrEqual(23);
      expect(resizer.lastRun!.wasmMemoryBytes).toBeLessThan(16 * MiB);
    }
  });

  it("answers AV1 (AVIF) primaries with 415 and a broken tile with 422", async () => {
    const resizer = createWasmResizer(modules);
    const bytes = heicFixture(HEIC_FIXTURES.tenBit);
    const avif = bytes.slice();
    // The primary item's type hvc1 → av01 (first infe).
    const at = Buffer.from(avif).indexOf("hvc1", 0, "latin1");
    avif.set(Buffer.from("av01", "latin1"), at);
    expect((await rejection(resizer.resize(inputOf(avif), opts))).status).toBe(415);
    // The tile's first NAL unit claims more bytes than the item holds.
    const broken = bytes.slice();
    const mdat = Buffer.from(broken).indexOf("mdat", 0, "latin1");
    broken.set([0x7f, 0xff, 0xff, 0xff], mdat + 4);
    expect((await rejection(resizer.resize(inputOf(broken), opts))).status).toBe(422);
    // The resizer still works afterwards (a failed instance is dropped).
    expect((await resizer.resize(inputOf(bytes), opts)).width).toBe(320);
  });
});

/** An APNG of two frames whose first (the IDAT, shown by any PNG reader) is `png`'s image. */
function apngOf(png: Buffer, second: Buffer): Buffer {
  const idatAt = png.indexOf("IDAT", 0, "latin1") - 4;
  const w = png.readUInt32BE(16);
  const h = png.readUInt32BE(20);
  const fctl = (seq: number) => {
    const d = Buffer.alloc(26);
    d.writeUInt32BE(seq);
    d.writeUInt32BE(w, 4);
    d.writeUInt32BE(h, 8);
    d.writeUInt16BE(1, 20);
    d.writeUInt16BE(10, 22);
    return chunk("fcTL", d);
  };
  const actl = Buffer.alloc(8);
  actl.writeUInt32BE(2);
  const secondIdat = second.subarray(second.indexOf("IDAT", 0, "latin1") + 4);
  const len = second.readUInt32BE(second.indexOf("IDAT", 0, "latin1") - 4);
  const fdat = Buffer.concat([Buffer.from([0, 0, 0, 2]), secondIdat.subarray(0, len)]);
  const iend = png.length - 12;
  return Buffer.concat([
    png.subarray(0, idatAt),
    chunk("acTL", actl),
    fctl(0),
    png.subarray(idatAt, iend),
    fctl(1),
    chunk("fdAT", fdat),
    png.subarray(iend),
  ]);
}

describe("PNG and WebP through the WASM resizer, against sharp", () => {
  const W = 900;
  const H = 640;
  const rgb = photoLike(W, H, 5);
  const rgba = withAlpha(rgb, (i) => 255 - (i % 200));
  const src = () => sharp(rgb, { raw: { width: W, height: H, channels: 3 } });
  const variants: [string, () => Promise<Buffer>][] = [
    ["PNG 8-bit RGB", () => src().png().toBuffer()],
    ["PNG 16-bit RGB", () => src().toColourspace("rgb16").png().toBuffer()],
    ["PNG palette", () => src().png({ palette: true, colours: 256 }).toBuffer()],
    ["PNG greyscale", () => src().greyscale().png().toBuffer()],
    ["PNG interlaced (Adam7)", () => src().png({ progressive: true }).toBuffer()],
    ["PNG with EXIF orientation 6", () => src().withMetadata({ orientation: 6 }).png().toBuffer()],
    ["WebP lossy", () => src().webp({ quality: 90 }).toBuffer()],
    ["WebP lossless", () => src().webp({ lossless: true }).toBuffer()],
  ];
  it.each(variants)("%s", async (_name, make) => {
    const bytes = new Uint8Array(await make());
    const resizer = createWasmResizer(modules);
    const ours = await resizer.resize(inputOf(bytes), opts);
    const ref = await createSharpResizer().resize(inputOf(bytes), opts);
    expect(await outputDiff(ours.bytes, ref.bytes)).toBeLessThan(3);
    // Decoded at reduced scale: 900x640 → 256 short side is a factor of 2.
    expect(resizer.lastRun!.denom).toBe(2);
  });

  it("drops alpha as the gpu-node does (Pillow's convert('RGB')), whatever the transparency", async () => {
    const png = await sharp(rgba, { raw: { width: W, height: H, channels: 4 } })
      .png()
      .toBuffer();
    const opaque = await src().png().toBuffer();
    const resizer = createWasmResizer(modules);
    const a = await resizer.resize(inputOf(png), opts);
    const b = await resizer.resize(inputOf(opaque), opts);
    expect(await outputDiff(a.bytes, b.bytes)).toBeLessThan(0.5);
  });

  it("reads an APNG's first frame (its default image)", async () => {
    const first = await src().png().toBuffer();
    const other = await sharp(photoLike(W, H, 99), { raw: { width: W, height: H, channels: 3 } })
      .png()
      .toBuffer();
    const apng = apngOf(first, other);
    expect(inputOf(apng).format).toBe("png");
    const resizer = createWasmResizer(modules);
    const a = await resizer.resize(inputOf(apng), opts);
    const b = await resizer.resize(inputOf(first), opts);
    expect(await outputDiff(a.bytes, b.bytes)).toBe(0);
  });

  it("stops a zlib bomb at the size its header declares", async () => {
    // A 64x64 header, then 64 MB of zeros deflated to ~64 KB.
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(64);
    ihdr.writeUInt32BE(64, 4);
    ihdr[8] = 8;
    ihdr[9] = 2;
    const bomb = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk("IHDR", ihdr),
      chunk("IDAT", deflateSync(Buffer.alloc(64 * MiB))),
      chunk("IEND", new Uint8Array(0)),
    ]);
    const e = await rejection(createWasmResizer(modules).resize(inputOf(bomb), opts));
    expect([e.status, e.message]).toEqual([422, expect.stringMatching(/inflates past/)]);
  });

  it("converts an iCCP Display P3 profile to sRGB", async () => {
    const tagged = await src().withIccProfile("p3").png().toBuffer();
    const resizer = createWasmResizer(modules);
    const ours = await resizer.resize(inputOf(tagged), opts);
    expect(resizer.lastRun!.icc).toBe("converted");
    const ref = await createSharpResizer().resize(inputOf(tagged), opts);
    expect(await outputDiff(ours.bytes, ref.bytes)).toBeLessThan(3);
  });
});

describe("one resize at a time, in arrival order", () => {
  const png = (w: number, h: number, seed: number) =>
    sharp(photoLike(w, h, seed), { raw: { width: w, height: h, channels: 3 } })
      .png()
      .toBuffer();

  it("finishes images in the order they came, and a failed one holds up none after it", async () => {
    const big = inputOf(await png(1600, 1200, 1));
    const small = inputOf(await png(300, 200, 2));
    // Its zlib stream cut short: refused (422) once inflating reaches the cut.
    const whole = await png(900, 600, 3);
    const idat = whole.indexOf("IDAT", 0, "latin1");
    const broken = { ...inputOf(whole), bytes: new Uint8Array(whole.subarray(0, idat + 4000)) };
    const resizer = createWasmResizer(modules);
    const finished: string[] = [];
    const runs = [big, small, broken, small].map((input, i) =>
      resizer.resize(input, opts).then(
        () => finished.push(`${i} ok`),
        (e: unknown) => finished.push(`${i} ${(e as { status?: number }).status}`),
      ),
    );
    await Promise.all(runs);
    // Side by side, the small ones (1, 3) finished first while the big one inflated.
    expect(finished).toEqual(["0 ok", "1 ok", "2 422", "3 ok"]);
  });

  it("lets the event loop turn between two resizes (a gpu-node call's I/O goes on meanwhile)", async () => {
    const jpeg = inputOf(
      await sharp(photoLike(640, 480, 4), { raw: { width: 640, height: 480, channels: 3 } })
        .jpeg()
        .toBuffer(),
    );
    const resizer = createWasmResizer(modules);
    await resizer.resize(jpeg, opts); // instantiates jpeg.wasm
    let turns = 0;
    let ticking = true;
    const tick = () => {
      turns++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const seen: number[] = [];
    // A JPEG resize has no I/O of its own: without the turn, all four finish in one.
    await Promise.all(
      [1, 2, 3, 4].map(() => resizer.resize(jpeg, opts).then(() => seen.push(turns))),
    );
    ticking = false;
    for (let i = 1; i < seen.length; i++) expect(seen[i]).toBeGreaterThan(seen[i - 1]!);
  });
});
