import { readFileSync } from "node:fs";
import { join } from "node:path";
import sharp, { type JpegOptions } from "sharp";
import { describe, expect, it } from "vitest";
import { hostileFiles, truncationPoints } from "../../test/support/hostile.ts";
import { photoPixels } from "../../test/support/images.ts";
import { compileJpegWasm, JpegWasm, JpegWasmError } from "../jpeg/codec.ts";
import { BicubicNative } from "../resample/bicubic-native.ts";
import { BicubicWasm, compileBicubicWasm } from "../resample/bicubic-wasm.ts";
import { loadClipNative } from "./clip-native.ts";

const ROOT = join(import.meta.dirname, "../..");
const { addon, why } = loadClipNative();
const MEM = 64 * 1024 * 1024;
const wasm = async () =>
  new JpegWasm(await compileJpegWasm(readFileSync(join(ROOT, "imaging/jpeg/jpeg.wasm"))));

type Outcome =
  | { ok: true; width: number; height: number; rgb: Buffer }
  | { ok: false; kind: string };

function viaNative(jpeg: Uint8Array, outBytes = 64 * 1024 * 1024): Outcome {
  const out = Buffer.alloc(outBytes);
  const r = addon!.decode(jpeg, out, MEM);
  if (r.failure) {
    expect(r.message.length).toBeGreaterThan(0);
    return { ok: false, kind: r.failure };
  }
  return {
    ok: true,
    width: r.width,
    height: r.height,
    rgb: out.subarray(0, r.width * r.height * 3),
  };
}

async function viaWasm(codec: JpegWasm, jpeg: Uint8Array): Promise<Outcome> {
  try {
    return await codec.decode(
      jpeg,
      () => 1,
      { libjpegBytes: MEM, outputBytes: 64 * 1024 * 1024 },
      (px): Outcome =>
        px.channels === 3
          ? { ok: true, width: px.width, height: px.height, rgb: Buffer.from(px.data) }
          : { ok: false, kind: "unsupported" },
    );
  } catch (err) {
    if (err instanceof JpegWasmError) return { ok: false, kind: err.kind };
    throw err;
  }
}

describe.runIf(process.platform === "linux" && process.arch === "x64")("native addon", () => {
  it("loads here", () => {
    expect(why).toBeUndefined();
  });

  it("decodes every hostile file and every truncation of a photo as the WASM build does", async () => {
    const codec = await wasm();
    const photo = await sharp(photoPixels(341, 256, 3), {
      raw: { width: 341, height: 256, channels: 3 },
    })
      .jpeg({ quality: 85, progressive: true })
      .toBuffer();
    const inputs: [string, Uint8Array][] = [
      ...(await hostileFiles()).map((f): [string, Uint8Array] => [f.name, f.bytes]),
      ...truncationPoints(photo.length).map((n): [string, Uint8Array] => [
        `truncated at ${n}`,
        photo.subarray(0, n),
      ]),
    ];
    let decoded = 0;
    let refused = 0;
    for (const [name, bytes] of inputs) {
      const a = viaNative(bytes);
      const b = await viaWasm(codec, bytes);
      if (b.ok && a.ok) {
        expect([a.width, a.height], name).toEqual([b.width, b.height]);
        expect(Buffer.compare(a.rgb, b.rgb), name).toBe(0);
        decoded++;
      } else {
        // CMYK is decoded by the WASM codec (to CMYK) and refused here: the fast path takes RGB only.
        if (b.ok) expect(a, name).toEqual({ ok: false, kind: "unsupported" });
        else expect(a, name).toEqual(b);
        refused++;
      }
    }
    expect(decoded).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(10);
  });

  it("refuses an image that does not fit the output buffer before decoding it", async () => {
    const jpeg = await sharp(photoPixels(224, 224, 1), {
      raw: { width: 224, height: 224, channels: 3 },
    })
      .jpeg()
      .toBuffer();
    expect(viaNative(jpeg, 224 * 224 * 3 - 1)).toEqual({ ok: false, kind: "too_large" });
    // A header that declares 65500x65500 (12 GB of RGB) over a tiny body.
    const lying = Buffer.from(jpeg);
    const sof = lying.indexOf(Buffer.from([0xff, 0xc0]));
    lying.writeUInt16BE(65500, sof + 5);
    lying.writeUInt16BE(65500, sof + 7);
    expect(viaNative(lying, 1024 * 1024)).toEqual({ ok: false, kind: "too_large" });
  });

  it("refuses 200,000 truncated files without the process growing (no exception machinery)", async () => {
    const jpeg = await sharp(photoPixels(224, 224, 5), {
      raw: { width: 224, height: 224, channels: 3 },
    })
      .jpeg()
      .toBuffer();
    const cut = jpeg.subarray(0, 700); // cut in its first scan lines: a quick refusal
    const out = Buffer.alloc(224 * 224 * 3);
    let refused = 0;
    const refuse = (n: number) => {
      for (let i = 0; i < n; i++) if (addon!.decode(cut, out, MEM).failure === "corrupt") refused++;
    };
    refuse(20_000); // warm: V8's young generation and malloc's arenas at their working size
    const before = process.memoryUsage().rss;
    refuse(200_000);
    // Thrown from native code, the same refusals grew RSS by ~90 MB; as answers, by ~1 MB.
    expect(process.memoryUsage().rss - before).toBeLessThan(40 * 1024 * 1024);
    expect(refused).toBe(220_000);
  }, 60_000);

  it("keeps libjpeg's own buffers under memLimit (a big progressive file)", async () => {
    const big = await sharp({
      create: { width: 4000, height: 3000, channels: 3, background: "#808080" },
    })
      .jpeg({ progressive: true })
      .toBuffer();
    const out = Buffer.alloc(4000 * 3000 * 3);
    expect(addon!.decode(big, out, 1024 * 1024)).toMatchObject({ failure: "too_large" });
    expect(addon!.decode(big, out, 256 * 1024 * 1024)).toEqual({
      width: 4000,
      height: 3000,
      left: 0,
      top: 0,
      cols: 4000,
      rows: 3000,
    });
  });

  it("decodes a region to the whole decode's pixels, whatever the subsampling, edges included", async () => {
    const variants: [string, JpegOptions, number][] = [
      ["4:2:0", { quality: 80 }, 3],
      ["4:4:4", { quality: 90, chromaSubsampling: "4:4:4" }, 3],
      ["progressive 4:2:0", { quality: 85, progressive: true }, 3],
      ["grey", { quality: 80 }, 1],
    ];
    let seed = 0;
    for (const [w, h] of [
      [341, 256],
      [256, 341],
      [301, 227],
    ] as const) {
      for (const [label, options, channels] of variants) {
        let img = sharp(photoPixels(w, h, ++seed), { raw: { width: w, height: h, channels: 3 } });
        if (channels === 1) img = img.toColourspace("b-w");
        const jpeg = await img.jpeg(options).toBuffer();
        const full = Buffer.alloc(w * h * 3);
        expect(addon!.decode(jpeg, full, MEM)).toMatchObject({ width: w, height: h });
        // iMCU-aligned edges (16, 32), odd ones, the image's own edges, one column, one row.
        const regions: [number, number, number, number][] = [
          [32, 300, 16, 240],
          [33, 301, 17, 239],
          [40, 41, 0, h],
          [0, w, 100, 101],
          [1, w - 1, 1, h - 1],
          [0, 16, h - 16, h],
          [w - 17, w, 0, 9],
        ];
        for (const [x0, x1Asked, y0, y1Asked] of regions) {
          const x1 = Math.min(x1Asked, w);
          const y1 = Math.min(y1Asked, h);
          const part = Buffer.alloc(w * h * 3);
          const r = addon!.decode(jpeg, part, MEM, Int32Array.of(x0, x1, y0, y1));
          if (r.failure) throw new Error(`${label}: ${r.message}`);
          const at = `${w}x${h} ${label} [${x0}, ${x1}) x [${y0}, ${y1})`;
          expect(r.left <= x0 && r.left + r.cols >= x1, at).toBe(true);
          expect(r.top <= y0 && r.top + r.rows >= y1, at).toBe(true);
          let differ = 0;
          for (let y = y0; y < y1; y++) {
            const a = full.subarray((y * w + x0) * 3, (y * w + x1) * 3);
            const from = ((y - r.top) * r.cols + (x0 - r.left)) * 3;
            if (!a.equals(part.subarray(from, from + (x1 - x0) * 3))) differ++;
          }
          expect(differ, at).toBe(0);
        }
      }
    }
  });

  it("refuses a region argument that is not four int32s", () => {
    const bad = addon as unknown as Record<string, (...a: unknown[]) => unknown>;
    const out = Buffer.alloc(16);
    expect(() => bad.decode!(Buffer.alloc(4), out, 1, [0, 1, 0, 1])).toThrow(TypeError);
    expect(() => bad.decode!(Buffer.alloc(4), out, 1, new Int32Array(3))).toThrow(TypeError);
    // An empty or inverted region asks for the whole image.
    expect(bad.decode!(Buffer.alloc(4), out, 1, Int32Array.of(5, 5, 0, 0))).toMatchObject({
      failure: "corrupt",
    });
  });

  it("throws a TypeError for arguments of the wrong kind, never crashes", () => {
    const bad = addon as unknown as Record<string, (...a: unknown[]) => unknown>;
    expect(() => bad.decode!("jpeg", Buffer.alloc(4), 1)).toThrow(TypeError);
    expect(() => bad.decode!(Buffer.alloc(4), new Float32Array(4), 1)).toThrow(TypeError);
    expect(() => bad.decode!(Buffer.alloc(4))).toThrow(TypeError);
    expect(() => bad.horizontal!(Buffer.alloc(4), 1, 0, 1)).toThrow(TypeError);
    const pass = [Buffer.alloc(3), 1, 0, 1, 1, new Int32Array(1), new Int32Array([1])];
    const rest = [new Int32Array([1 << 22]), 1, Buffer.alloc(3)];
    expect(() => bad.horizontal!(...pass, ...rest, "avx2")).toThrow(/simd must be 0, 1, 2 or 3/);
    expect(() => bad.horizontal!(...pass, ...rest, 0)).not.toThrow();
    expect(() => bad.vertical!(new Int32Array(4), 3, 0, 1, 0, 0, 0, 0, 0, 0)).toThrow(TypeError);
  });

  it("resizes to the WASM build's bytes, and refuses arrays too small for the window", () => {
    const bicubicWasm = new BicubicWasm(
      compileBicubicWasm(readFileSync(join(ROOT, "imaging/resample/wasm/resample.wasm"))),
    );
    const native = new BicubicNative(addon!);
    for (const [w, h] of [
      [341, 256],
      [256, 341],
      [447, 230],
      [1200, 900],
    ] as const) {
      const image = { data: photoPixels(w, h, w), width: w, height: h };
      const outW = Math.round((w * 224) / Math.min(w, h));
      const outH = Math.round((h * 224) / Math.min(w, h));
      const window = {
        outWidth: outW,
        outHeight: outH,
        left: (outW - 224) >> 1,
        top: (outH - 224) >> 1,
        width: 224,
        height: 224,
      };
      const a = native.resize(image, window, new Uint8Array(224 * 224 * 3));
      const b = bicubicWasm.resize(image, window, new Uint8Array(224 * 224 * 3));
      expect(Buffer.compare(a, b), `${w}x${h}`).toBe(0);
      // The same window from only the part of the image it reads, one pixel to spare.
      const [x0, x1, y0, y1] = native.sourceRegion(w, h, window)!;
      const part = { left: x0! - 1, top: y0! > 0 ? y0! - 1 : 0, cols: 0, rows: 0 };
      part.cols = Math.min(w, x1! + 1) - part.left;
      part.rows = Math.min(h, y1! + 1) - part.top;
      expect(part.cols * part.rows, `${w}x${h}: the part is smaller`).toBeLessThan(w * h);
      const pixels = Buffer.alloc(part.cols * part.rows * 3);
      for (let y = 0; y < part.rows; y++) {
        const from = ((part.top + y) * w + part.left) * 3;
        pixels.set(image.data.subarray(from, from + part.cols * 3), y * part.cols * 3);
      }
      const c = native.resize(
        { data: pixels, width: w, height: h },
        window,
        new Uint8Array(224 * 224 * 3),
        part,
      );
      expect(Buffer.compare(a, c), `${w}x${h} from a part`).toBe(0);
      // A part that misses a column or a row the window reads is refused.
      for (const short of [
        { ...part, left: part.left + 2, cols: part.cols - 2 },
        { ...part, cols: part.cols - 2 },
        { ...part, rows: part.rows - 2 },
      ]) {
        const data = { data: pixels, width: w, height: h };
        expect(() => native.resize(data, window, new Uint8Array(224 * 224 * 3), short)).toThrow(
          RangeError,
        );
      }
    }
    const image = { data: new Uint8Array(100), width: 341, height: 256 };
    const window = { outWidth: 298, outHeight: 224, left: 37, top: 0, width: 224, height: 224 };
    expect(() => native.resize(image, window, new Uint8Array(224 * 224 * 3))).toThrow(RangeError);
    const ok = { data: photoPixels(341, 256, 1), width: 341, height: 256 };
    expect(() => native.resize(ok, window, new Uint8Array(10))).toThrow(RangeError);
  });
});
