/**
 * The WASM JPEG resizer's pipeline (edge/resize/wasm/core.ts, the same module the Worker runs)
 * in Node, where sharp makes fixtures and references: fidelity against sharp, every EXIF
 * orientation, grey and CMYK input, progressive files, the 48 MP memory bound, fuzzed input, and
 * embedded ICC profiles converted as sharp/lcms converts them (synthetic and ../shared/corpus).
 *
 * `UPDATE_WASM_FIXTURES=1 npx vitest run --project node edge/resize/wasm-jpeg.node.test.ts`
 * regenerates edge/resize/wasm/test-fixtures.ts (the workerd test's sharp-made JPEGs).
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import sharp, { type JpegOptions } from "sharp";
import { describe, expect, it } from "vitest";
import { iccToSrgb } from "../../imaging/icc.ts";
import { compileJpegWasm } from "../../imaging/jpeg/codec.ts";
import { readIccProfile } from "../../imaging/jpeg/markers.ts";
import {
  buildIcc,
  COLORANTS,
  type Curve,
  iccSegments,
  SRGB_CURVE,
  withIcc,
  withSegments,
} from "../../imaging/testing/icc-profiles.ts";
import { photoLike } from "../../test/support/images.ts";
import { HttpError } from "../errors.ts";
import { segmentMarkers } from "../testing/jpeg-markers.ts";
import { targetSize } from "./resizer.ts";
import { createJpegWasmResizer, type WasmResizeInput } from "./wasm/core.ts";

const MiB = 1024 * 1024;
const CORPUS_PHOTOS = resolve(import.meta.dirname, "../../../shared/corpus/photos");
const wasmModule = await compileJpegWasm(
  readFileSync(new URL("../../imaging/jpeg/jpeg.wasm", import.meta.url)),
);

function jpegOf(w: number, h: number, options: JpegOptions = {}, orientation = 1) {
  let img = sharp(photoLike(w, h), { raw: { width: w, height: h, channels: 3 } });
  if (orientation !== 1) img = img.withMetadata({ orientation });
  return img.jpeg({ quality: 85, ...options }).toBuffer();
}

function input(bytes: Uint8Array, w: number, h: number, extra: Partial<WasmResizeInput> = {}) {
  return { bytes, format: "jpeg", width: w, height: h, ...extra } as WasmResizeInput;
}

async function rawOf(jpeg: Uint8Array) {
  const { data, info } = await sharp(jpeg)
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

/** sharp's reference: full-resolution decode (no shrink-on-load), EXIF rotation, cubic resize. */
async function sharpReference(jpeg: Uint8Array, width: number, height: number) {
  const { data } = await sharp(jpeg, { failOn: "none" })
    .rotate()
    .resize(width, height, { fit: "fill", kernel: "cubic", fastShrinkOnLoad: false })
    .toColourspace("srgb")
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return data;
}

function meanAbsDiff(a: Uint8Array, b: Uint8Array) {
  expect(a.length).toBe(b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
}

async function expectHttpError(p: Promise<unknown>, status: number) {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(HttpError);
  expect((e as HttpError).status).toBe(status);
  return e as HttpError;
}

describe("wasm JPEG resizer (Node)", () => {
  it("matches sharp's full-resolution cubic resize at every DCT scale", async () => {
    const resizer = createJpegWasmResizer(wasmModule);
    // denom 1, 2, 4, 8 and 8 with a 2.9x remaining reduction
    const cases = [
      [480, 360, 1],
      [1024, 768, 2],
      [2000, 1500, 4],
      [4032, 3024, 8],
      [6000, 4500, 8],
    ] as const;
    for (const [w, h, denom] of cases) {
      const src = await jpegOf(w, h, { quality: 90 });
      const out = await resizer.resize(input(src, w, h), { shortSide: 256, quality: 90 });
      const t = targetSize(w, h, 256);
      expect([out.width, out.height]).toEqual([t.width, t.height]);
      expect(resizer.lastRun?.denom).toBe(denom);
      const got = await rawOf(out.bytes);
      expect([got.width, got.height, got.channels]).toEqual([t.width, t.height, 3]);
      const diff = meanAbsDiff(got.data, await sharpReference(src, t.width, t.height));
      console.log(`${w}x${h} denom ${denom}: mean |diff| vs sharp ${diff.toFixed(2)}`);
      expect(diff, `${w}x${h}`).toBeLessThan(3);
    }
  });

  it("applies all eight EXIF orientations like sharp's rotate()", async () => {
    const resizer = createJpegWasmResizer(wasmModule);
    for (let o = 1; o <= 8; o++) {
      const src = await jpegOf(1200, 800, {}, o);
      const out = await resizer.resize(input(src, 1200, 800), { shortSide: 224, quality: 90 });
      const expected = o >= 5 ? [224, 336] : [336, 224];
      expect([out.width, out.height], `orientation ${o}`).toEqual(expected);
      expect(resizer.lastRun?.orientation).toBe(o);
      const diff = meanAbsDiff(
        (await rawOf(out.bytes)).data,
        await sharpReference(src, out.width, out.height),
      );
      expect(diff, `orientation ${o}`).toBeLessThan(3);
    }
  });

  it("takes the orientation from the caller when given", async () => {
    const resizer = createJpegWasmResizer(wasmModule);
    const src = await jpegOf(1200, 800);
    const out = await resizer.resize(input(src, 1200, 800, { orientation: 8 }), {
      shortSide: 224,
      quality: 80,
    });
    expect([out.width, out.height]).toEqual([224, 336]);
  });

  it("writes a bare baseline JPEG: no EXIF, XMP, ICC or comments", async () => {
    const resizer = createJpegWasmResizer(wasmModule);
    const src = await sharp(photoLike(1600, 1200), {
      raw: { width: 1600, height: 1200, channels: 3 },
    })
      .withXmp('<x:xmpmeta xmlns:x="adobe:ns:meta/"></x:xmpmeta>')
      .withMetadata({ orientation: 3 })
      .withIccProfile("p3")
      .jpeg({ quality: 80, progressive: true })
      .toBuffer();
    expect(segmentMarkers(src)).toContain(0xe1);
    expect(segmentMarkers(src)).toContain(0xe2);
    const out = await resizer.resize(input(src, 1600, 1200), { shortSide: 256, quality: 80 });
    const m = segmentMarkers(out.bytes);
    expect(new Set(m)).toEqual(new Set([0xe0, 0xdb, 0xc0, 0xc4, 0xda]));
    expect(out.bytes.subarray(-2)).toEqual(new Uint8Array([0xff, 0xd9]));
    const meta = await sharp(out.bytes).metadata();
    expect(meta.isProgressive).toBe(false);
    expect(meta.icc).toBeUndefined();
    expect(meta.exif).toBeUndefined();
    expect(meta.xmp).toBeUndefined();
    expect(meta.chromaSubsampling).toBe("4:2:0");
    expect(resizer.lastRun?.progressive).toBe(true);
  });

  it("turns greyscale into RGB", async () => {
    const resizer = createJpegWasmResizer(wasmModule);
    const src = await sharp(photoLike(1000, 800), {
      raw: { width: 1000, height: 800, channels: 3 },
    })
      .toColourspace("b-w")
      .jpeg({ quality: 90 })
      .toBuffer();
    expect((await sharp(src).metadata()).channels).toBe(1);
    const out = await resizer.resize(input(src, 1000, 800), { shortSide: 256, quality: 90 });
    const got = await rawOf(out.bytes);
    expect(got.channels).toBe(3);
    expect(meanAbsDiff(got.data, await sharpReference(src, out.width, out.height))).toBeLessThan(3);
  });

  it("turns Adobe (inverted) CMYK into RGB", async () => {
    const resizer = createJpegWasmResizer(wasmModule);
    const src = await sharp(photoLike(1000, 800), {
      raw: { width: 1000, height: 800, channels: 3 },
    })
      .toColourspace("cmyk")
      .jpeg({ quality: 90 })
      .toBuffer();
    const meta = await sharp(src).metadata();
    expect(meta.space).toBe("cmyk");
    const out = await resizer.resize(input(src, 1000, 800), { shortSide: 256, quality: 90 });
    const got = await rawOf(out.bytes);
    // sharp converts through an ICC CMYK profile; we use the naive formula (as Pillow does), so
    // colours differ somewhat but the picture must be the same, not inverted or garbage.
    const diff = meanAbsDiff(got.data, await sharpReference(src, out.width, out.height));
    console.log(`CMYK: mean |diff| vs sharp ${diff.toFixed(2)}`);
    expect(diff).toBeLessThan(25);
    const inverted = Uint8Array.from(got.data, (v) => 255 - v);
    expect(meanAbsDiff(inverted, await sharpReference(src, out.width, out.height))).toBeGreaterThan(
      60,
    );
  });

  it("decodes a 12 MP progressive JPEG", async () => {
    const resizer = createJpegWasmResizer(wasmModule);
    const src = await jpegOf(4032, 3024, { progressive: true, quality: 85 });
    const out = await resizer.resize(input(src, 4032, 3024), { shortSide: 256, quality: 80 });
    expect([out.width, out.height]).toEqual([341, 256]);
    expect(resizer.lastRun?.progressive).toBe(true);
    expect(resizer.lastRun?.denom).toBe(8);
    expect(resizer.peakMemoryBytes).toBeLessThanOrEqual(96 * MiB);
    const diff = meanAbsDiff((await rawOf(out.bytes)).data, await sharpReference(src, 341, 256));
    expect(diff).toBeLessThan(3);
  });

  it("48 MP baseline: decoded at 1/8, WASM memory far under 128 MB", async () => {
    const resizer = createJpegWasmResizer(wasmModule);
    const src = await jpegOf(8000, 6000, { quality: 90 });
    const out = await resizer.resize(input(src, 8000, 6000), { shortSide: 256, quality: 80 });
    expect([out.width, out.height]).toEqual([341, 256]);
    expect(resizer.lastRun?.denom).toBe(8);
    expect([resizer.lastRun?.decodedWidth, resizer.lastRun?.decodedHeight]).toEqual([1000, 750]);
    // input copy + 1000x750 RGB + libjpeg's working set
    expect(resizer.lastRun!.wasmMemoryBytes).toBeLessThanOrEqual(src.length + 16 * MiB);
    expect(resizer.peakMemoryBytes).toBeLessThanOrEqual(128 * MiB);
  });

  it("48 MP progressive: refused with 422 instead of growing past the budget", async () => {
    const resizer = createJpegWasmResizer(wasmModule);
    // 4:2:0 progressive needs its whole coefficient buffer: 8000x6000x1.5x2 B = 144 MB
    const src = await jpegOf(8000, 6000, { progressive: true, quality: 70 });
    const e = await expectHttpError(
      resizer.resize(input(src, 8000, 6000), { shortSide: 256, quality: 80 }),
      422,
    );
    expect(e.code).toBe("unprocessable_image");
    expect(e.message).toMatch(/too large/);
    expect(resizer.peakMemoryBytes).toBeLessThanOrEqual(96 * MiB);
    // and the resizer still works afterwards
    const ok = await jpegOf(640, 480);
    await expect(
      resizer.resize(input(ok, 640, 480), { shortSide: 256, quality: 80 }),
    ).resolves.toMatchObject({ width: 341, height: 256 });
  });

  it("refuses truncated, corrupt and non-JPEG data with 422, and recovers", async () => {
    const resizer = createJpegWasmResizer(wasmModule);
    const src = await jpegOf(1600, 1200);
    const opts = { shortSide: 256, quality: 80 };
    for (const cut of [0, 2, 100, 600, Math.floor(src.length / 2), src.length - 2]) {
      const e = await expectHttpError(
        resizer.resize(input(src.subarray(0, cut), 1600, 1200), opts),
        422,
      );
      expect(e.code).toBe("unprocessable_image");
    }
    const garbage = new Uint8Array(5000).map((_, i) => (i * 7919) & 255);
    await expectHttpError(resizer.resize(input(garbage, 10, 10), opts), 422);
    // a JPEG-looking start with nonsense after it
    const fake = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0x00, 0x00, ...garbage]);
    await expectHttpError(resizer.resize(input(fake, 10, 10), opts), 422);
    // lossless (SOF3) is a JPEG variant this build cannot decode: 415
    const sof3 = Uint8Array.from(src);
    const at = sof3.findIndex((v, i) => v === 0xff && sof3[i + 1] === 0xc0);
    sof3[at + 1] = 0xc3;
    const e415 = await expectHttpError(resizer.resize(input(sof3, 1600, 1200), opts), 415);
    expect(e415.code).toBe("unsupported_media_type");
    // non-JPEG formats are refused before any work
    expect(resizer.supports("png" as WasmResizeInput["format"])).toBe(false);
    await expectHttpError(
      resizer.resize(
        { ...input(src, 1600, 1200), format: "png" as WasmResizeInput["format"] },
        opts,
      ),
      415,
    );
    const ok = await resizer.resize(input(src, 1600, 1200), opts);
    expect([ok.width, ok.height]).toEqual([341, 256]);
  });

  it("fuzz: corrupted bytes only ever give a JPEG or a 4xx, in bounded time and memory", async () => {
    const resizer = createJpegWasmResizer(wasmModule);
    const src = await jpegOf(2000, 1500, { quality: 80 });
    let seed = 12345;
    const rnd = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    let failures = 0;
    for (let round = 0; round < 60; round++) {
      const bad = Uint8Array.from(src);
      const flips = 1 + Math.floor(rnd() * 20);
      for (let f = 0; f < flips; f++) bad[Math.floor(rnd() * bad.length)] = Math.floor(rnd() * 256);
      const t = performance.now();
      try {
        await resizer.resize(input(bad, 2000, 1500), { shortSide: 256, quality: 80 });
      } catch (e) {
        expect(e).toBeInstanceOf(HttpError);
        expect([415, 422]).toContain((e as HttpError).status);
        failures++;
      }
      expect(performance.now() - t).toBeLessThan(5000);
    }
    expect(failures).toBeGreaterThan(0);
    expect(resizer.peakMemoryBytes).toBeLessThanOrEqual(32 * MiB);
  });

  it("extreme aspect ratios decode at a smaller scale instead of past the pixel cap", async () => {
    const resizer = createJpegWasmResizer(wasmModule, { decodedBytes: 4 * MiB });
    const src = await jpegOf(400, 6000, { quality: 80 });
    // 400x6000x3 = 7.2 MB at 1/1 is over the 4 MiB cap: decoded at 1/2 (3.6 MB) instead
    const out = await resizer.resize(input(src, 400, 6000), { shortSide: 256, quality: 80 });
    expect(resizer.lastRun?.denom).toBe(2);
    expect([out.width, out.height]).toEqual([256, 3840]);
  });

  it("refuses scan bombs (more than 500 scans)", async () => {
    const resizer = createJpegWasmResizer(wasmModule);
    const bomb = new Uint8Array(2 + 501 * 2 + 2);
    bomb.set([0xff, 0xd8]);
    for (let i = 0; i < 501; i++) bomb.set([0xff, 0xda], 2 + i * 2);
    const e = await expectHttpError(
      resizer.resize(input(bomb, 100, 100), { shortSide: 256, quality: 80 }),
      422,
    );
    expect(e.message).toMatch(/scans/);
  });
});

/**
 * The colour conversion alone against lcms's, on the same decoded samples: sharp decodes the file
 * once ignoring its profile (our input) and once converting it to sRGB (the reference).
 */
async function colourParity(jpeg: Uint8Array, colour: "rgb" | "gray") {
  const profile = readIccProfile(jpeg);
  expect(profile).toBeInstanceOf(Uint8Array);
  const plain = await sharp(jpeg, { ignoreIcc: true }).toColourspace("srgb").raw().toBuffer();
  const lcms = await sharp(jpeg).toColourspace("srgb").raw().toBuffer();
  const conversion = iccToSrgb(profile as Uint8Array, colour);
  const ours = Uint8Array.from(plain);
  conversion.apply?.(ours);
  let max = 0;
  for (let i = 0; i < ours.length; i++) max = Math.max(max, Math.abs(ours[i]! - lcms[i]!));
  return {
    status: conversion.status,
    mean: meanAbsDiff(ours, lcms),
    max,
    unconverted: meanAbsDiff(plain, lcms),
  };
}

/** Every 8-bit hue and level: a 512x512 sweep through the RGB cube, 4:4:4 at q100. */
async function colourSweep(grey = false): Promise<Uint8Array> {
  const w = 512;
  const buf = Buffer.alloc(w * w * 3);
  for (let y = 0; y < w; y++) {
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * 3;
      buf[o] = x >> 1;
      buf[o + 1] = y >> 1;
      buf[o + 2] = (x * 7 + y * 13) & 255;
    }
  }
  let img = sharp(buf, { raw: { width: w, height: w, channels: 3 } });
  if (grey) img = img.toColourspace("b-w");
  return new Uint8Array(await img.jpeg({ quality: 100, chromaSubsampling: "4:4:4" }).toBuffer());
}

describe("embedded ICC profiles (Node, against sharp/lcms)", () => {
  const table: Curve = {
    kind: "table",
    values: Array.from({ length: 1024 }, (_, i) => (i / 1023) ** 2.2),
  };
  const cases: [string, () => Promise<Uint8Array>][] = [
    // sharp's own Display P3 (what phones embed), as lcms wrote it
    [
      "Display P3 (sharp's)",
      async () => {
        const tagged = await sharp(Buffer.alloc(12), { raw: { width: 2, height: 2, channels: 3 } })
          .withIccProfile("p3")
          .jpeg()
          .toBuffer();
        return new Uint8Array((await sharp(tagged).metadata()).icc!);
      },
    ],
    [
      "Adobe RGB, curv gamma",
      async () =>
        buildIcc({
          colorants: COLORANTS.adobeRgb,
          trc: { kind: "gamma", gamma: 563 / 256 },
          version: 0x02100000,
        }),
    ],
    [
      "ProPhoto, gamma 1.8",
      async () => buildIcc({ colorants: COLORANTS.proPhoto, trc: { kind: "gamma", gamma: 1.8 } }),
    ],
    [
      "P3, 1024-entry table TRC",
      async () => buildIcc({ colorants: COLORANTS.displayP3, trc: table }),
    ],
    [
      "P3, para type 1",
      async () =>
        buildIcc({
          colorants: COLORANTS.displayP3,
          trc: { kind: "para", type: 1, params: [2.2, 1.1, -0.1] },
        }),
    ],
    [
      "ProPhoto, three different TRCs",
      async () =>
        buildIcc({
          colorants: COLORANTS.proPhoto,
          trc: [SRGB_CURVE, { kind: "gamma", gamma: 1.8 }, table],
        }),
    ],
    // black at Y 0.02: lcms compensates (BPC, forced for its v4 sRGB target); so must we
    [
      "sRGB primaries, raised black",
      async () =>
        buildIcc({
          colorants: COLORANTS.srgb,
          trc: {
            kind: "table",
            values: Array.from({ length: 256 }, (_, i) => 0.02 + 0.98 * (i / 255) ** 2.2),
          },
        }),
    ],
    [
      "grey, gamma 2.2",
      async () => buildIcc({ space: "GRAY", trc: { kind: "gamma", gamma: 2.2 } }),
    ],
  ];

  it.each(cases)("%s: the conversion matches lcms to 1 level", async (_name, make) => {
    const profile = await make();
    const grey = (profile[16] === 0x47) as boolean; // 'GRAY'
    const parity = await colourParity(
      withIcc(await colourSweep(grey), profile),
      grey ? "gray" : "rgb",
    );
    console.log(
      `${_name}: mean |diff| ${parity.mean.toFixed(4)}, max ${parity.max} (unconverted ${parity.unconverted.toFixed(2)})`,
    );
    expect(parity.status).toBe("converted");
    expect(parity.mean).toBeLessThan(0.06);
    expect(parity.max).toBeLessThanOrEqual(1);
    expect(parity.unconverted).toBeGreaterThan(1);
  });

  it.each(cases)(
    "%s: the resizer's output matches sharp's colour-managed resize",
    async (_name, make) => {
      const profile = await make();
      const grey = (profile[16] === 0x47) as boolean;
      let src = await jpegOf(1600, 1200, { quality: 90 });
      if (grey) src = await sharp(src).toColourspace("b-w").jpeg({ quality: 90 }).toBuffer();
      const tagged = withIcc(src, profile);
      const resizer = createJpegWasmResizer(wasmModule);
      const out = await resizer.resize(input(tagged, 1600, 1200), { shortSide: 256, quality: 90 });
      expect(resizer.lastRun?.icc).toBe("converted");
      const ref = await sharpReference(tagged, out.width, out.height);
      const diff = meanAbsDiff((await rawOf(out.bytes)).data, ref);
      const untagged = await resizer.resize(input(src, 1600, 1200), {
        shortSide: 256,
        quality: 90,
      });
      const asSrgb = meanAbsDiff((await rawOf(untagged.bytes)).data, ref);
      console.log(
        `${_name}: mean |diff| vs sharp ${diff.toFixed(2)} (profile ignored: ${asSrgb.toFixed(2)})`,
      );
      expect(diff).toBeLessThan(2);
    },
  );

  it("reads a profile split over APP2 chunks stored out of order", async () => {
    const resizer = createJpegWasmResizer(wasmModule);
    const src = await jpegOf(800, 600);
    const profile = buildIcc({ colorants: COLORANTS.adobeRgb, trc: table });
    const whole = await resizer.resize(input(withIcc(src, profile), 800, 600), {
      shortSide: 256,
      quality: 90,
    });
    const chunks = iccSegments(profile, 700).reverse();
    expect(chunks.length).toBeGreaterThan(2);
    const split = await resizer.resize(input(withSegments(src, chunks), 800, 600), {
      shortSide: 256,
      quality: 90,
    });
    expect(resizer.lastRun?.icc).toBe("converted");
    expect(split.bytes).toEqual(whole.bytes);
  });

  it("takes malformed, LUT-only and CMYK profiles as sRGB, never failing the image", async () => {
    const resizer = createJpegWasmResizer(wasmModule);
    const src = await jpegOf(800, 600);
    const opts = { shortSide: 256, quality: 90 };
    const plain = await resizer.resize(input(src, 800, 600), opts);
    expect(resizer.lastRun?.icc).toBe("none");
    const p3 = buildIcc({ colorants: COLORANTS.displayP3, trc: SRGB_CURVE });
    const lut = buildIcc({ extra: [{ sig: "A2B0", data: new Uint8Array(64).fill(1) }] });
    const variants: [string, Uint8Array][] = [
      ["ignored:malformed", withIcc(src, p3.subarray(0, 200))], // truncated profile
      ["ignored:malformed", withSegments(src, iccSegments(p3, 100).slice(1))], // missing chunk
      ["ignored:lut-based", withIcc(src, lut)],
    ];
    for (const [status, bytes] of variants) {
      const out = await resizer.resize(input(bytes, 800, 600), opts);
      expect(resizer.lastRun?.icc).toBe(status);
      expect(out.bytes).toEqual(plain.bytes);
    }
    const cmyk = await sharp(photoLike(800, 600), { raw: { width: 800, height: 600, channels: 3 } })
      .toColourspace("cmyk")
      .withIccProfile("cmyk")
      .jpeg({ quality: 90 })
      .toBuffer();
    expect((await sharp(cmyk).metadata()).icc).toBeDefined();
    await resizer.resize(input(cmyk, 800, 600), opts);
    expect(resizer.lastRun?.icc).toBe("ignored:cmyk");
  });
});

const corpus = existsSync(CORPUS_PHOTOS)
  ? readdirSync(CORPUS_PHOTOS)
      .filter((f) => f.endsWith(".jpg"))
      .map((f) => ({ name: f, bytes: new Uint8Array(readFileSync(resolve(CORPUS_PHOTOS, f))) }))
      .filter((p) => readIccProfile(p.bytes) instanceof Uint8Array)
  : [];

describe.skipIf(corpus.length === 0)("real photos with ICC profiles (../shared/corpus)", () => {
  it.each(corpus.map((p) => [p.name, p.bytes] as const))("%s", async (name, bytes) => {
    const parity = await colourParity(bytes, "rgb");
    expect(parity.max).toBeLessThanOrEqual(1);
    expect(parity.mean).toBeLessThan(0.05);

    const meta = await sharp(bytes).metadata();
    const resizer = createJpegWasmResizer(wasmModule);
    const out = await resizer.resize(
      input(bytes, meta.width, meta.height, { orientation: meta.orientation ?? 1 }),
      { shortSide: 256, quality: 95 },
    );
    expect(resizer.lastRun?.icc).toBe(parity.status);
    const ref = await sharpReference(bytes, out.width, out.height);
    const diff = meanAbsDiff((await rawOf(out.bytes)).data, ref);
    console.log(
      `${name}: ${parity.status}; conversion vs lcms mean ${parity.mean.toFixed(4)} max ${parity.max}; resize vs sharp ${diff.toFixed(2)} (profile ignored: ${parity.unconverted.toFixed(2)} before resize)`,
    );
    // real 600x450 photos sit ~2.6–3.3 from sharp with or without a profile (decoder and resampler
    // differences on fine detail); the profile must add nothing to that
    expect(diff).toBeLessThan(3.5);
  });
});

// Regenerates the fixtures the workerd test uses (sharp-made, so they come from Node).
describe.runIf(process.env.UPDATE_WASM_FIXTURES === "1")("fixtures", () => {
  it("writes edge/resize/wasm/test-fixtures.ts", async () => {
    const [w, h] = [1536, 1152];
    const xmp =
      '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="48,51.5N"/></rdf:RDF></x:xmpmeta>';
    // withIccProfile last: withMetadata() after it would put sharp's sRGB profile back.
    const photo = await sharp(photoLike(w, h, 7, 4), { raw: { width: w, height: h, channels: 3 } })
      .withXmp(xmp)
      .withExif({ IFD0: { Make: "TestCam" }, IFD3: { GPSLatitudeRef: "N" } })
      .withMetadata({ orientation: 6 })
      .withIccProfile("p3")
      .jpeg({ quality: 70 })
      .toBuffer();
    const meta = await sharp(photo).metadata();
    expect([meta.orientation, !!meta.icc, !!meta.xmp, !!meta.exif]).toEqual([6, true, true, true]);
    expect(iccToSrgb(new Uint8Array(meta.icc!), "rgb").status).toBe("converted");
    const t = targetSize(h, w, 256); // after rotation: portrait
    const reference = await sharp(photo)
      .rotate()
      .resize(t.width, t.height, { fit: "fill", kernel: "cubic", fastShrinkOnLoad: false })
      .jpeg({ quality: 95 })
      .toBuffer();
    const chunks = (b: Buffer) =>
      (b.toString("base64").match(/.{1,96}/g) ?? []).map((c) => `    "${c}",`).join("\n");
    const text = `/**
 * Generated by \`UPDATE_WASM_FIXTURES=1 npx vitest run --project node edge/resize/wasm-jpeg.node.test.ts\`
 * with sharp ${sharp.versions.sharp} (libvips ${sharp.versions.vips}); do not edit. Test data only.
 */

/** A ${w}x${h} photo-like JPEG stored with EXIF orientation 6, a Display P3 ICC profile, XMP and GPS EXIF. */
export const PORTRAIT_O6 = {
  width: ${w},
  height: ${h},
  orientation: 6,
  base64: [
${chunks(photo)}
  ].join(""),
};

/** sharp's reference for it: P3 → sRGB, rotated, full-resolution decode, cubic resize to ${t.width}x${t.height}, q95. */
export const PORTRAIT_O6_SHARP = {
  width: ${t.width},
  height: ${t.height},
  base64: [
${chunks(reference)}
  ].join(""),
};

export function bytesOf(base64: string): Uint8Array {
  const s = atob(base64);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
`;
    writeFileSync(new URL("./wasm/test-fixtures.ts", import.meta.url), text);
  });
});
