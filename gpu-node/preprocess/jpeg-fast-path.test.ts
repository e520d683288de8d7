import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Code, ConnectError } from "@connectrpc/connect";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { centreCropOffset, clipResizeSize } from "../../imaging/clip.ts";
import { compileJpegWasm, JpegWasm } from "../../imaging/jpeg/codec.ts";
import { loadClipNative } from "../../imaging/native/clip-native.ts";
import { resizeBicubicWindow } from "../../imaging/resample/pillow-bicubic.ts";
import { embedderClient, maxAbsDiff, toFloats } from "../../test/support/gpu-node-client.ts";
import { photo, photoPixels } from "../../test/support/images.ts";
import type { Backend } from "../backends/backend.ts";
import { createNoopBackend } from "../backends/noop.ts";
import { testConfig } from "../config.ts";
import { startGpuNode } from "../node.ts";
import {
  chooseJpegDecoder,
  decodeForClip,
  decodeFull,
  ImageError,
  jpegFastPath,
} from "./decode.ts";
import { decodePlainJpeg224, isPlainJpeg224, type JpegDecoderName } from "./jpeg-fast-path.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CORPUS = join(ROOT, "../shared/corpus/photos");
const LIMITS = { maxPixels: 40_000_000, maxBytes: 25_000_000 };
const raw = { width: 224, height: 224, channels: 3 } as const;
const px = (seed: number) => photoPixels(224, 224, seed);
const NATIVE_PLATFORM = process.platform === "linux" && process.arch === "x64";
/** Both builds where the native one runs (CI's Linux x86-64), so each is held to the same bytes. */
const ENGINES: JpegDecoderName[] = loadClipNative().addon ? ["native", "wasm"] : ["wasm"];

/** Runs a describe block's tests with `engine` decoding (decode.ts checks it against sharp first). */
function withEngine(engine: JpegDecoderName): void {
  beforeAll(async () => {
    chooseJpegDecoder(engine);
    expect(await jpegFastPath()).toBe(engine);
  });
  afterAll(() => chooseJpegDecoder("auto"));
}

/** The edge's own encoder (libjpeg-turbo in WASM): what RESIZE_MODE=crop-224 sends with RESIZER=wasm. */
async function wasmEncoded(seed: number, quality: number): Promise<Buffer> {
  const codec = new JpegWasm(
    await compileJpegWasm(readFileSync(join(ROOT, "imaging/jpeg/jpeg.wasm"))),
  );
  return Buffer.from(await codec.encode(px(seed), 224, 224, quality));
}

const TAKEN: [string, () => Promise<Buffer>][] = [
  ["baseline 4:2:0 q80", () => sharp(px(1), { raw }).jpeg({ quality: 80 }).toBuffer()],
  [
    "baseline 4:4:4 q95",
    () => sharp(px(2), { raw }).jpeg({ quality: 95, chromaSubsampling: "4:4:4" }).toBuffer(),
  ],
  ["progressive", () => sharp(px(3), { raw }).jpeg({ quality: 70, progressive: true }).toBuffer()],
  [
    "mozjpeg (trellis, optimised scans)",
    () => sharp(px(4), { raw }).jpeg({ mozjpeg: true }).toBuffer(),
  ],
  ["greyscale", () => sharp(px(5), { raw }).greyscale().jpeg({ quality: 85 }).toBuffer()],
  ["the edge's WASM encoder, q80", () => wasmEncoded(7, 80)],
  ["the edge's WASM encoder, q90", () => wasmEncoded(8, 90)],
  [
    "a centre crop of a 341x256 photo",
    async () =>
      sharp(await photo(341, 256, 9))
        .extract({ left: 58, top: 16, width: 224, height: 224 })
        .jpeg({ quality: 80 })
        .toBuffer(),
  ],
];

const NOT_TAKEN: [string, () => Promise<Buffer>][] = [
  [
    "any EXIF segment (here orientation 1)",
    () =>
      sharp(px(6), { raw })
        .jpeg()
        .withExif({ IFD0: { Orientation: "1", Software: "camera" } })
        .toBuffer(),
  ],
  [
    "225x224",
    () =>
      sharp(photoPixels(225, 224, 1), { raw: { ...raw, width: 225 } })
        .jpeg()
        .toBuffer(),
  ],
  [
    "an embedded ICC profile (Display P3)",
    () => sharp(px(2), { raw }).jpeg().withIccProfile("p3").toBuffer(),
  ],
  [
    "EXIF orientation 6",
    () => sharp(px(3), { raw }).jpeg().withMetadata({ orientation: 6 }).toBuffer(),
  ],
  ["CMYK", () => sharp(px(4), { raw }).toColourspace("cmyk").jpeg().toBuffer()],
  ["PNG", () => sharp(px(5), { raw }).png().toBuffer()],
];

/** What the short-side fast path must give: libjpeg-turbo's pixels through the TypeScript Pillow port. */
async function pillowPortOf(jpeg: Buffer): Promise<Uint8Array> {
  const codec = new JpegWasm(
    await compileJpegWasm(readFileSync(join(ROOT, "imaging/jpeg/jpeg.wasm"))),
  );
  return codec.decode(
    jpeg,
    () => 1,
    { libjpegBytes: 64 << 20, outputBytes: 64 << 20 },
    (decoded) => {
      const size = clipResizeSize(decoded.width, decoded.height);
      const window = {
        outWidth: size.width,
        outHeight: size.height,
        left: centreCropOffset(size.width),
        top: centreCropOffset(size.height),
        width: 224,
        height: 224,
      };
      const image = { data: decoded.data, width: decoded.width, height: decoded.height };
      return resizeBicubicWindow(image, window);
    },
  );
}

const jpegOf = (w: number, h: number, seed: number) =>
  sharp(photoPixels(w, h, seed), { raw: { ...raw, width: w, height: h } });

describe.each(ENGINES)(
  "short-side fast path (plain JPEGs with a short side of 224..447), %s build",
  (engine) => {
    withEngine(engine);

    it.each(["landscape_341x256", "portrait_256x341", "near_300x225", "grey_320x240"])(
      "gives Pillow's own bytes for the parity fixture %s",
      async (name) => {
        const jpeg = readFileSync(join(ROOT, `test/fixtures/parity/images/${name}.jpg`));
        const pillow = readFileSync(join(ROOT, `test/fixtures/parity/reference/${name}.rgb`));
        const out = await decodeForClip(jpeg, LIMITS);
        expect(Buffer.compare(out.pixels, pillow)).toBe(0);
      },
    );

    it("equals libjpeg-turbo + the TypeScript Pillow port for every size it takes", async () => {
      for (const [w, h] of [
        [341, 256],
        [256, 341],
        [224, 225],
        [447, 300],
        [300, 447],
        [1200, 230],
        [224, 5000],
        [400, 400],
      ] as const) {
        // The native build decodes only the columns and rows the crop reads: the chroma
        // layouts and progressive files check that its crop edges never show.
        for (const options of [
          { quality: 85 },
          { quality: 92, chromaSubsampling: "4:4:4" },
          { quality: 80, progressive: true },
        ]) {
          const jpeg = await jpegOf(w, h, w + h)
            .jpeg(options)
            .toBuffer();
          const out = await decodeForClip(jpeg, LIMITS);
          const at = `${w}x${h} ${JSON.stringify(options)}`;
          expect(Buffer.compare(out.pixels, await pillowPortOf(jpeg)), at).toBe(0);
          expect(out).toMatchObject({ width: w, height: h, format: "jpeg" });
        }
      }
    });

    it.each([
      ["a short side of 448 (sharp decodes it DCT-scaled)", () => jpegOf(600, 448, 5).jpeg()],
      ["an ICC profile", () => jpegOf(341, 256, 6).jpeg().withIccProfile("p3")],
      ["EXIF orientation 6", () => jpegOf(341, 256, 7).jpeg().withMetadata({ orientation: 6 })],
    ])("leaves %s to sharp", async (_, make) => {
      const jpeg = await make().toBuffer();
      const a = await decodeForClip(jpeg, LIMITS);
      const b = await decodeFull(jpeg, LIMITS);
      expect(Buffer.compare(a.pixels, b.pixels)).toBe(0);
    });

    it("refuses a truncated 256-px JPEG exactly as the full path does", async () => {
      const jpeg = (await jpegOf(341, 256, 8).jpeg().toBuffer()).subarray(0, 4000);
      const fail = (p: Promise<unknown>) =>
        p.then(
          () => undefined,
          (e: unknown) => e,
        );
      const a = await fail(decodeForClip(jpeg, LIMITS));
      const b = await fail(decodeFull(jpeg, LIMITS));
      expect(a).toBeInstanceOf(ImageError);
      expect((a as ImageError).message).toBe((b as ImageError).message);
    });
  },
);

describe("the JPEG decoder choice", () => {
  it.runIf(NATIVE_PLATFORM)(
    "loads the native build on Linux x86-64 and takes it by default",
    async () => {
      expect(loadClipNative().why).toBeUndefined();
      chooseJpegDecoder("auto");
      expect(await jpegFastPath()).toBe("native");
    },
  );

  it("takes the WASM build when asked to", async () => {
    chooseJpegDecoder("wasm");
    try {
      expect(await jpegFastPath()).toBe("wasm");
    } finally {
      chooseJpegDecoder("auto");
    }
  });
});

describe.each(ENGINES)("exact-224 fast path, %s build", (engine) => {
  withEngine(engine);

  it.each(TAKEN)(
    "decodes a 224x224 JPEG (%s) to exactly the full path's bytes",
    async (_, make) => {
      const jpeg = await make();
      expect(isPlainJpeg224(jpeg)).toBe(true);
      const fast = await decodePlainJpeg224(jpeg);
      expect(fast).toBeDefined(); // the fast path really decoded it
      const viaService = await decodeForClip(jpeg, LIMITS);
      const full = await decodeFull(jpeg, LIMITS);
      expect(full.pixels.length).toBe(150_528);
      expect(Buffer.compare(fast!, full.pixels)).toBe(0);
      expect(Buffer.compare(viaService.pixels, full.pixels)).toBe(0);
      expect(viaService).toMatchObject({ width: 224, height: 224, format: "jpeg" });
    },
  );

  it.skipIf(!existsSync(CORPUS))(
    "gives the full path's bytes for 224x224 crops of every corpus photo",
    async () => {
      const files = readdirSync(CORPUS).filter((f) => /\.jpe?g$/i.test(f));
      expect(files.length).toBeGreaterThan(5);
      for (const file of files) {
        // Upright, sRGB, no metadata: what the edge sends.
        const jpeg = await sharp(readFileSync(join(CORPUS, file)))
          .autoOrient()
          .resize(224, 224, { fit: "cover" })
          .toColourspace("srgb")
          .jpeg({ quality: 85 })
          .toBuffer();
        expect(isPlainJpeg224(jpeg), file).toBe(true);
        const fast = await decodeForClip(jpeg, LIMITS);
        const full = await decodeFull(jpeg, LIMITS);
        expect(Buffer.compare(fast.pixels, full.pixels), file).toBe(0);
      }
    },
  );

  it.each(NOT_TAKEN)("leaves %s to the full path", async (_, make) => {
    const image = await make();
    expect(isPlainJpeg224(image)).toBe(false);
    const a = await decodeForClip(image, LIMITS);
    const b = await decodeFull(image, LIMITS);
    expect(Buffer.compare(a.pixels, b.pixels)).toBe(0);
  });

  it.each([
    ["truncated", (j: Buffer) => j.subarray(0, Math.floor(j.length * 0.6))],
    ["cut after its header", (j: Buffer) => j.subarray(0, 700)],
    [
      "with garbage for entropy-coded data",
      (j: Buffer) => Buffer.concat([j.subarray(0, 700), Buffer.alloc(j.length - 700, 0x5a)]),
    ],
  ])("refuses a 224x224 JPEG %s exactly as the full path does", async (_, damage) => {
    const jpeg = damage(await sharp(px(11), { raw }).jpeg({ quality: 80 }).toBuffer());
    const viaService = await decodeForClip(jpeg, LIMITS).then(
      () => undefined,
      (e: unknown) => e,
    );
    const full = await decodeFull(jpeg, LIMITS).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(full).toBeInstanceOf(ImageError);
    expect(viaService).toBeInstanceOf(ImageError);
    expect((viaService as ImageError).message).toBe((full as ImageError).message);
  });
});

describe("exact-224 fast path in the service", () => {
  it("costs a fraction of the full path (prints µs/image)", async () => {
    const jpegs = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        sharp(px(20 + i), { raw })
          .jpeg()
          .toBuffer(),
      ),
    );
    const time = async (f: (j: Buffer) => Promise<unknown>) => {
      for (const j of jpegs) await f(j); // warm
      const t0 = performance.now();
      for (let r = 0; r < 4; r++) for (const j of jpegs) await f(j);
      return ((performance.now() - t0) * 1000) / (4 * jpegs.length);
    };
    const fast = await time((j) => decodeForClip(j, LIMITS));
    const full = await time((j) => decodeFull(j, LIMITS));
    console.log(
      `exact-224: ${fast.toFixed(0)} µs/image; full sharp path: ${full.toFixed(0)} µs/image`,
    );
    expect(fast).toBeLessThan(full);
  });

  it("recycles decoded buffers without one image ever getting another's vector (deadlines abort some)", async () => {
    const inner = createNoopBackend(4);
    const slow: Backend = {
      start: () => inner.start(),
      ready: () => inner.ready(),
      close: () => inner.close(),
      async infer(batch) {
        await new Promise((r) => setTimeout(r, 3));
        return inner.infer(batch);
      },
    };
    const node = await startGpuNode(testConfig({ port: 0, maxBatchSize: 4, maxBatchWaitMs: 1 }), {
      backend: slow,
    });
    try {
      // Half exact-224, half 341x256: both fast paths hand out recycled buffers.
      const jpegs = await Promise.all(
        Array.from({ length: 24 }, (_, i) =>
          i % 2
            ? sharp(px(100 + i), { raw })
                .jpeg()
                .toBuffer()
            : sharp(photoPixels(341, 256, 100 + i), { raw: { ...raw, width: 341, height: 256 } })
                .jpeg()
                .toBuffer(),
        ),
      );
      const client = embedderClient(node.url, "grpc");
      const one = async (i: number, timeoutMs?: number) => {
        const res = await client.embed({ images: [{ id: "", data: jpegs[i]! }] }, { timeoutMs });
        return toFloats(res.embeddings[0]!.vector);
      };
      const refs: Float32Array[] = [];
      for (let i = 0; i < jpegs.length; i++) refs.push(await one(i));
      let aborted = 0;
      await Promise.all(
        Array.from({ length: 240 }, async (_, k) => {
          const i = (k * 7) % jpegs.length;
          try {
            const v = await one(i, k % 3 === 0 ? 1 + (k % 5) : undefined);
            expect(maxAbsDiff(v, refs[i]!)).toBe(0);
          } catch (err) {
            expect(ConnectError.from(err).code).toBe(Code.DeadlineExceeded);
            aborted++;
          }
        }),
      );
      expect(aborted).toBeGreaterThan(0);
    } finally {
      await node.close();
    }
  });
});
