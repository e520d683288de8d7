import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { crc32 } from "node:zlib";
import sharp from "sharp";
import { afterAll, describe, expect, it } from "vitest";
import { centreCropOffset, clipResizeSize, IMAGE_BYTES } from "../../imaging/clip.ts";
import { buildIcc, COLORANTS, SRGB_CURVE, withIcc } from "../../imaging/testing/icc-profiles.ts";
import { HEIC_FIXTURES, heicFixture } from "../../test/fixtures/heic/fixtures.ts";
import { photoLike } from "../../test/support/images.ts";
import {
  closeHeicDecoder,
  type DecodeLimits,
  decodeForClip,
  ImageError,
  type ImageErrorReason,
} from "./decode.ts";
import { decodeHeic } from "./heic-decoder.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const PARITY = join(ROOT, "test/fixtures/parity");
const CORPUS = join(ROOT, "../shared/corpus");
const HAS_CORPUS = existsSync(CORPUS);
const HEIF = join(CORPUS, "photos/samplefilehub.heif");

const LIMITS: DecodeLimits = { maxPixels: 40_000_000, maxBytes: 25_000_000 };

afterAll(closeHeicDecoder);

async function expectImageError(
  input: Uint8Array,
  reason: ImageErrorReason,
  limits: DecodeLimits = LIMITS,
): Promise<ImageError> {
  const error = await decodeForClip(input, limits).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ImageError);
  const imageError = error as ImageError;
  expect(imageError.reason).toBe(reason);
  expect(imageError.message.length).toBeGreaterThan(10);
  return imageError;
}

function meanAbsDiff(a: Uint8Array, b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

function solid(r: number, g: number, b: number, width = 64, height = 48) {
  return sharp({ create: { width, height, channels: 3, background: { r, g, b } } });
}

/** Mean of each channel of a tensor: enough to tell which colour came out. */
function meanColour(pixels: Uint8Array): [number, number, number] {
  const sums = [0, 0, 0];
  for (let i = 0; i < pixels.length; i++) sums[i % 3]! += pixels[i]!;
  const n = pixels.length / 3;
  return [sums[0]! / n, sums[1]! / n, sums[2]! / n];
}

/** A PNG whose IHDR claims any size, with valid CRCs, and a token IDAT. */
function pngClaiming(width: number, height: number): Uint8Array {
  const chunk = (type: string, data: Buffer) => {
    const typed = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(typed));
    return Buffer.concat([length, typed, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, deflate, no filter method, no interlace
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const idat = Buffer.from([0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]);
  return Buffer.concat([
    signature,
    chunk("IHDR", ihdr),
    chunk("IDAT", idat),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** A real JPEG with its SOF0 frame size patched to claim `width` x `height`. */
async function jpegClaiming(width: number, height: number): Promise<Uint8Array> {
  const jpeg = Buffer.from(await solid(10, 20, 30).jpeg().toBuffer());
  const sof = jpeg.indexOf(Buffer.from([0xff, 0xc0]));
  jpeg.writeUInt16BE(height, sof + 5);
  jpeg.writeUInt16BE(width, sof + 7);
  return jpeg;
}

describe("torchvision size rules", () => {
  it("truncates the long side and keeps the short side at 224", () => {
    expect(clipResizeSize(341, 256)).toEqual({ width: 298, height: 224 });
    expect(clipResizeSize(256, 341)).toEqual({ width: 224, height: 298 });
    expect(clipResizeSize(100, 75)).toEqual({ width: 298, height: 224 });
    expect(clipResizeSize(4032, 3024)).toEqual({ width: 298, height: 224 });
    expect(clipResizeSize(1, 1)).toEqual({ width: 224, height: 224 });
  });

  it("centre-crops with Python's round-half-to-even", () => {
    expect(centreCropOffset(224)).toBe(0);
    expect(centreCropOffset(298)).toBe(37);
    expect(centreCropOffset(1493)).toBe(634); // 634.5 → 634
    expect(centreCropOffset(1495)).toBe(636); // 635.5 → 636
    expect(centreCropOffset(225)).toBe(0); // 0.5 → 0
    expect(centreCropOffset(227)).toBe(2); // 1.5 → 2
  });
});

describe("parity with Pillow (open_clip's eval transform)", () => {
  interface Case {
    image: string;
    reference: string;
    width: number;
    height: number;
  }
  const manifest = JSON.parse(readFileSync(join(PARITY, "manifest.json"), "utf8")) as {
    cases: Case[];
  };

  it.each(manifest.cases)("$image: mean |diff| ≤ 1 grey level", async (entry) => {
    const out = await decodeForClip(readFileSync(join(PARITY, entry.image)), LIMITS);
    const reference = readFileSync(join(PARITY, entry.reference));
    expect(out.pixels.length).toBe(IMAGE_BYTES);
    expect({ width: out.width, height: out.height }).toEqual({
      width: entry.width,
      height: entry.height,
    });
    const diff = meanAbsDiff(out.pixels, reference);
    console.log(`parity ${entry.image}: mean |diff| ${diff.toFixed(3)} grey levels`);
    expect(diff).toBeLessThanOrEqual(1.0);
  });
});

describe("inputs that must be refused", () => {
  it("refuses empty input", async () => {
    await expectImageError(new Uint8Array(0), "empty");
  });

  it("refuses input over maxBytes before looking at it", async () => {
    const jpeg = await solid(1, 2, 3).jpeg().toBuffer();
    await expectImageError(jpeg, "too_large", { ...LIMITS, maxBytes: jpeg.length - 1 });
  });

  it("refuses truncated JPEGs at every cut point instead of returning grey", async () => {
    const jpeg = readFileSync(join(PARITY, "images/large_1600x1200.jpg"));
    for (const cut of [20, 200, 0.1, 0.5, 0.9, jpeg.length - 2]) {
      const length = cut < 1 ? Math.floor(jpeg.length * cut) : cut;
      await expectImageError(jpeg.subarray(0, length), "corrupt");
    }
  });

  it("refuses a truncated PNG and a truncated WebP", async () => {
    const png = readFileSync(join(PARITY, "images/exact_224x224.png"));
    await expectImageError(png.subarray(0, png.length >> 1), "corrupt");
    const webp = readFileSync(join(PARITY, "images/webp_500x375.webp"));
    await expectImageError(webp.subarray(0, webp.length >> 1), "corrupt");
  });

  it("refuses random bytes, with and without a JPEG signature", async () => {
    let state = 12345;
    const random = Uint8Array.from({ length: 4096 }, () => {
      state = (state * 1103515245 + 12345) >>> 0;
      return state >>> 24;
    });
    await expectImageError(random, "unsupported_format");
    await expectImageError(Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), random]), "corrupt");
  });

  it("refuses text, SVG and PDF without echoing their bytes", async () => {
    const text = await expectImageError(
      Buffer.from("secret-token plain text\n"),
      "unsupported_format",
    );
    expect(text.message).not.toContain("secret");
    const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>';
    await expectImageError(Buffer.from(svg), "unsupported_format");
    await expectImageError(Buffer.from("%PDF-1.4\n%secret\n"), "unsupported_format");
  });

  it("refuses a PNG claiming 100000x100000 from its header alone", async () => {
    const start = performance.now();
    const error = await expectImageError(pngClaiming(100_000, 100_000), "too_many_pixels");
    expect(error.message).toContain("100000x100000");
    expect(performance.now() - start).toBeLessThan(1000);
  });

  it("refuses a JPEG whose frame header claims 60000x60000", async () => {
    await expectImageError(await jpegClaiming(60_000, 60_000), "too_many_pixels");
  });

  it("refuses an image just over maxPixels", async () => {
    const png = await solid(5, 5, 5, 100, 100).png().toBuffer();
    await expectImageError(png, "too_many_pixels", { ...LIMITS, maxPixels: 9_999 });
  });
});

describe("inputs that must decode", () => {
  it("turns a 1x1 image into a full tensor of its colour", async () => {
    const png = await solid(200, 30, 90, 1, 1).png().toBuffer();
    const out = await decodeForClip(png, LIMITS);
    expect(out).toMatchObject({ width: 1, height: 1, format: "png" });
    expect(out.pixels.length).toBe(IMAGE_BYTES);
    expect(meanColour(out.pixels)).toEqual([200, 30, 90]);
  });

  it("converts a CMYK JPEG to RGB", async () => {
    const cmyk = await solid(220, 20, 20).toColourspace("cmyk").jpeg().toBuffer();
    expect((await sharp(cmyk).metadata()).space).toBe("cmyk");
    const out = await decodeForClip(cmyk, LIMITS);
    const [r, g, b] = meanColour(out.pixels);
    expect(r).toBeGreaterThan(150);
    expect(g).toBeLessThan(100);
    expect(b).toBeLessThan(100);
  });

  it("converts a 16-bit PNG to 8 bits by scaling, not clipping", async () => {
    const png16 = await solid(200, 100, 50, 300, 240).toColourspace("rgb16").png().toBuffer();
    expect((await sharp(png16).metadata()).depth).toBe("ushort");
    const [r, g, b] = meanColour((await decodeForClip(png16, LIMITS)).pixels);
    expect(Math.abs(r - 200) + Math.abs(g - 100) + Math.abs(b - 50)).toBeLessThan(3);
  });

  it("decodes the first frame of an animated GIF", async () => {
    const frames = await Promise.all([
      solid(255, 0, 0).png().toBuffer(),
      solid(0, 255, 0).png().toBuffer(),
      solid(0, 0, 255).png().toBuffer(),
    ]);
    const gif = await sharp(frames, { join: { animated: true } })
      .gif()
      .toBuffer();
    expect((await sharp(gif).metadata()).pages).toBe(3);
    const out = await decodeForClip(gif, LIMITS);
    expect(out).toMatchObject({ width: 64, height: 48, format: "gif" });
    const [r, g, b] = meanColour(out.pixels);
    expect(r).toBeGreaterThan(240);
    expect(g + b).toBeLessThan(15);
  });

  it("decodes AVIF and TIFF", async () => {
    const avif = await solid(30, 200, 60, 320, 240).avif().toBuffer();
    expect(await decodeForClip(avif, LIMITS)).toMatchObject({ format: "avif", width: 320 });
    const tiff = await solid(30, 200, 60, 320, 240).tiff().toBuffer();
    expect(await decodeForClip(tiff, LIMITS)).toMatchObject({ format: "tiff", height: 240 });
  });

  it("applies EXIF orientation before sizing", async () => {
    // Stored 300 wide x 200 high; orientation 6 displays it 200 wide x 300 high.
    const jpeg = await solid(90, 90, 90, 300, 200).jpeg().withExif({ IFD0: {} }).toBuffer();
    const rotated = await sharp(jpeg).withMetadata({ orientation: 6 }).jpeg().toBuffer();
    expect(await decodeForClip(rotated, LIMITS)).toMatchObject({ width: 200, height: 300 });
  });

  it("decodes many images concurrently", async () => {
    const inputs = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        solid(i * 20, 100, 255 - i * 20, 300 + i, 260)
          .jpeg()
          .toBuffer(),
      ),
    );
    const outs = await Promise.all(inputs.map((input) => decodeForClip(input, LIMITS)));
    outs.forEach((out, i) => {
      expect(out.width).toBe(300 + i);
      expect(Math.abs(meanColour(out.pixels)[0] - i * 20)).toBeLessThan(3);
    });
  });
});

describe.skipIf(!HAS_CORPUS)("real photos from ../shared/corpus", () => {
  if (!HAS_CORPUS) console.log(`corpus tests skipped: ${CORPUS} is absent`);
  const files = (folder: string) =>
    HAS_CORPUS ? readdirSync(join(CORPUS, folder)).map((name) => join(folder, name)) : [];

  it.each([...files("photos"), ...files("odd-metadata")])("decodes %s", async (file) => {
    const out = await decodeForClip(readFileSync(join(CORPUS, file)), LIMITS);
    expect(out.pixels.length).toBe(IMAGE_BYTES);
    expect(out.width).toBeGreaterThan(0);
  });

  it("gives every orientation_* file its peers' size and picture", async () => {
    const decode = (name: string) =>
      decodeForClip(readFileSync(join(CORPUS, "photos", `${name}.jpg`)), LIMITS);
    // Measured: peers sharing an ICC profile differ by ~2 grey levels, a wrong rotation or flip
    // by 33-73. The _1 files carry no profile while the others were converted to "Generic RGB"
    // (pixels differ by ~15 levels, since we ignore ICC as Pillow does).
    for (const [shape, orientations] of [
      ["landscape", [3, 6, 8]],
      ["portrait", [5, 6, 8]],
    ] as const) {
      const upright = await decode(`orientation_${shape}_1`);
      const peers = await Promise.all(orientations.map((o) => decode(`orientation_${shape}_${o}`)));
      peers.forEach((out, i) => {
        expect({ width: out.width, height: out.height }).toEqual({
          width: upright.width,
          height: upright.height,
        });
        const toFirstPeer = meanAbsDiff(out.pixels, peers[0]!.pixels);
        const toUpright = meanAbsDiff(out.pixels, upright.pixels);
        const name = `${shape} ${orientations[i]}`;
        console.log(
          `orientation ${name}: |diff| ${toFirstPeer.toFixed(2)} to peer, ${toUpright.toFixed(2)} to _1`,
        );
        expect(toFirstPeer).toBeLessThan(5);
        expect(toUpright).toBeLessThan(25);
      });
    }
  });

  it("decodes the HEIF file off the main thread", async () => {
    const out = await decodeForClip(readFileSync(HEIF), LIMITS);
    expect(out).toMatchObject({ format: "heic", width: 640, height: 426 });
    const [r, g, b] = meanColour(out.pixels);
    expect(Math.max(r, g, b) - Math.min(r, g, b) + r).toBeGreaterThan(10); // not blank
  });

  it("checks the HEIC pixel limit from the header, before decoding", async () => {
    const heif = readFileSync(HEIF);
    await expectImageError(heif, "too_many_pixels", { ...LIMITS, maxPixels: 640 * 426 - 1 });
    // The worker's own check, behind the one on sharp's metadata.
    await expect(decodeHeic(heif, 1000)).rejects.toMatchObject({ reason: "too_many_pixels" });
  });

  it("refuses truncated and damaged HEIF, then still decodes good ones", async () => {
    const heif = readFileSync(HEIF);
    await expectImageError(heif.subarray(0, heif.length >> 1), "corrupt");
    await expectImageError(heif.subarray(0, 200), "corrupt");
    const damaged = Buffer.from(heif).fill(7, 2000, 20000); // header intact, HEVC data not
    await expectImageError(damaged, "corrupt");
    expect(await decodeForClip(heif, LIMITS)).toMatchObject({ format: "heic" });
  });
});

describe("HEIC colour", () => {
  it("converts a Display P3 HEIC to sRGB, as sharp does for the same pixels in a P3-tagged JPEG", async () => {
    const f = HEIC_FIXTURES.grid;
    const heic = await decodeForClip(heicFixture(f), LIMITS);
    // The twin: the fixture's pixels as displayed (irot 1: a quarter turn anticlockwise), with
    // the P3 profile attached to the samples as they are (sharp's withIccProfile would convert).
    const raw = photoLike(f.width, f.height, f.seed);
    const jpeg = await sharp(raw, { raw: { width: f.width, height: f.height, channels: 3 } })
      .rotate(270)
      .jpeg({ quality: 100 })
      .toBuffer();
    const p3 = buildIcc({ colorants: COLORANTS.displayP3, trc: SRGB_CURVE });
    const twin = await decodeForClip(withIcc(jpeg, p3), LIMITS);
    expect(meanAbsDiff(heic.pixels, twin.pixels)).toBeLessThan(3);
    // The check has teeth: the same pixels read as sRGB are far off.
    const untagged = await decodeForClip(jpeg, LIMITS);
    expect(meanAbsDiff(heic.pixels, untagged.pixels)).toBeGreaterThan(4);
  });
});
