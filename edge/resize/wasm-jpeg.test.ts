/**
 * The WASM JPEG resizer inside workerd, loading jpeg.wasm the way the deployed Worker does (a
 * bundled WebAssembly.Module). Fixtures are sharp-made JPEGs committed as base64
 * (wasm/test-fixtures.ts); the Node test (wasm-jpeg.node.test.ts) covers fidelity at every
 * scale, all orientations, CMYK, progressive, ICC parity with sharp and the 48 MP memory bound.
 */
import { describe, expect, it } from "vitest";
import { JpegWasm } from "../../imaging/jpeg/codec.ts";
import jpegWasm from "../../imaging/jpeg/jpeg.wasm";
import { iccSegments, withSegments } from "../../imaging/testing/icc-profiles.ts";
import { segmentMarkers } from "../testing/jpeg-markers.ts";
import { rejection } from "../testing/rejection.ts";
import type { ImageFormat } from "../validate/index.ts";
import { bytesOf, PORTRAIT_O6, PORTRAIT_O6_SHARP } from "./wasm/test-fixtures.ts";
import { createWasmJpegResizer, type WasmResizeInput } from "./wasm-jpeg.ts";

const photo = bytesOf(PORTRAIT_O6.base64);
const opts = { shortSide: 256, quality: 80 };

function input(bytes: Uint8Array, format = "jpeg"): WasmResizeInput {
  return {
    bytes,
    format: format as ImageFormat,
    width: PORTRAIT_O6.width,
    height: PORTRAIT_O6.height,
  };
}

/** Decodes a JPEG to packed RGB at full size with the same libjpeg build. */
async function decodeRgb(jpeg: Uint8Array) {
  const codec = new JpegWasm(jpegWasm);
  return codec.decode(
    jpeg,
    () => 1,
    { libjpegBytes: 64 << 20, outputBytes: 64 << 20 },
    (px) => ({ width: px.width, height: px.height, channels: px.channels, data: px.data.slice() }),
  );
}

function findBytes(bytes: Uint8Array, ascii: string): number {
  const pattern = Array.from(ascii, (c) => c.charCodeAt(0));
  for (let i = 0; i + pattern.length <= bytes.length; i++) {
    if (pattern.every((v, k) => bytes[i + k] === v)) return i;
  }
  throw new Error(`${ascii} not found`);
}

describe("wasm JPEG resizer in workerd", () => {
  it("is named wasm and supports JPEG only", () => {
    const r = createWasmJpegResizer();
    expect(r.name).toBe("wasm");
    expect(r.supports("jpeg" as ImageFormat)).toBe(true);
    for (const f of ["png", "webp", "heic", "avif", "gif", "tiff"]) {
      expect(r.supports(f as ImageFormat)).toBe(false);
    }
  });

  it("resizes a real JPEG with orientation 6 to a portrait, metadata-free JPEG like sharp's", async () => {
    const r = createWasmJpegResizer();
    expect(segmentMarkers(photo)).toEqual(expect.arrayContaining([0xe1, 0xe2]));
    const out = await r.resize(input(photo), opts);
    expect([out.width, out.height]).toEqual([256, 341]);
    expect(r.lastRun).toMatchObject({
      denom: 4,
      orientation: 6,
      decodedWidth: 384,
      icc: "converted",
    });

    // SOI … EOI with only JFIF APP0, DQT, SOF0 (baseline), DHT and SOS: no APP1 (EXIF/XMP),
    // APP2 (ICC) or COM.
    expect([out.bytes[0], out.bytes[1]]).toEqual([0xff, 0xd8]);
    expect([out.bytes.at(-2), out.bytes.at(-1)]).toEqual([0xff, 0xd9]);
    const m = segmentMarkers(out.bytes);
    expect(m[0]).toBe(0xe0);
    expect(m.at(-1)).toBe(0xda);
    expect(new Set(m)).toEqual(new Set([0xe0, 0xdb, 0xc0, 0xc4, 0xda]));
    expect(out.bytes.length).toBeLessThan(25_000);

    const got = await decodeRgb(out.bytes);
    const ref = await decodeRgb(bytesOf(PORTRAIT_O6_SHARP.base64));
    expect([got.width, got.height, got.channels]).toEqual([256, 341, 3]);
    expect([ref.width, ref.height]).toEqual([PORTRAIT_O6_SHARP.width, PORTRAIT_O6_SHARP.height]);
    let sum = 0;
    for (let i = 0; i < got.data.length; i++) sum += Math.abs(got.data[i]! - ref.data[i]!);
    expect(sum / got.data.length).toBeLessThan(3);
  });

  it("converts the photo's Display P3 profile to sRGB, as sharp does", async () => {
    const r = createWasmJpegResizer();
    const ref = await decodeRgb(bytesOf(PORTRAIT_O6_SHARP.base64));
    const diff = async (bytes: Uint8Array) => {
      const got = await decodeRgb((await r.resize(input(bytes), opts)).bytes);
      let sum = 0;
      for (let i = 0; i < got.data.length; i++) sum += Math.abs(got.data[i]! - ref.data[i]!);
      return sum / got.data.length;
    };
    const converted = await diff(photo);
    expect(r.lastRun?.icc).toBe("converted");
    // The same file with its APP2 chunk renamed: the P3 samples are taken as sRGB.
    const untagged = photo.slice();
    const at = findBytes(untagged, "ICC_PROFILE");
    untagged[at] = 0x58;
    const asSrgb = await diff(untagged);
    expect(r.lastRun?.icc).toBe("none");
    expect(converted).toBeLessThan(2);
    expect(asSrgb).toBeGreaterThan(2 * converted);
  });

  it("takes a photo with inconsistent ICC chunks as sRGB rather than failing it", async () => {
    const r = createWasmJpegResizer();
    const untagged = photo.slice();
    untagged[findBytes(untagged, "ICC_PROFILE")] = 0x58;
    const plain = await r.resize(input(untagged), opts);
    // a second "chunk 1 of 1": a duplicate, which libjpeg's reader rejects too
    const dup = withSegments(photo, iccSegments(new Uint8Array(200).fill(7)));
    const out = await r.resize(input(dup), opts);
    expect(r.lastRun?.icc).toBe("ignored:malformed");
    expect(out.bytes).toEqual(plain.bytes);
  });

  it("short side 224 at quality 90", async () => {
    const r = createWasmJpegResizer();
    const out = await r.resize(input(photo), { shortSide: 224, quality: 90 });
    expect([out.width, out.height]).toEqual([224, 299]);
  });

  it("refuses truncated data with 422", async () => {
    const r = createWasmJpegResizer();
    for (const cut of [photo.length - 10, Math.floor(photo.length / 2), 200, 3]) {
      const e = await rejection(r.resize(input(photo.subarray(0, cut)), opts));
      expect(e.status).toBe(422);
      expect(e.code).toBe("unprocessable_image");
      expect(e.message).toMatch(/corrupt or truncated JPEG/);
    }
  });

  it("refuses garbage with 422 and keeps working afterwards", async () => {
    const r = createWasmJpegResizer();
    const garbage = new Uint8Array(4096).map((_, i) => (i * 2654435761) >>> 24);
    const e = await rejection(r.resize(input(garbage), opts));
    expect([e.status, e.code]).toEqual([422, "unprocessable_image"]);
    const corrupt = photo.slice();
    for (let i = 2000; i < corrupt.length - 2; i += 97) corrupt[i] = 0xff;
    expect((await rejection(r.resize(input(corrupt), opts))).status).toBe(422);
    const out = await r.resize(input(photo), opts);
    expect([out.width, out.height]).toEqual([256, 341]);
  });

  it("refuses other formats with 415 before any work", async () => {
    const r = createWasmJpegResizer();
    const e = await rejection(r.resize(input(photo, "png"), opts));
    expect([e.status, e.code]).toEqual([415, "unsupported_media_type"]);
  });

  it("keeps WASM memory small for a 12 MP-class decode", async () => {
    // A 4000x3000 JPEG made in the Worker with the same library (sharp is not available here).
    const w = 4000;
    const h = 3000;
    const rgb = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const o = (y * w + x) * 3;
        rgb[o] = (x * 255) / w;
        rgb[o + 1] = (y * 255) / h;
        rgb[o + 2] = 128 + 100 * Math.sin((x + y) / 50);
      }
    }
    const big = await new JpegWasm(jpegWasm).encode(rgb, w, h, 85);
    const r = createWasmJpegResizer();
    const out = await r.resize(
      { bytes: big, format: "jpeg" as ImageFormat, width: w, height: h },
      opts,
    );
    expect([out.width, out.height]).toEqual([341, 256]);
    expect(r.lastRun?.denom).toBe(8);
    expect(r.peakMemoryBytes).toBeLessThan(big.length + 16 * 1024 * 1024);
  });
});
