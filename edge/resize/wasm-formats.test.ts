/**
 * The multi-format WASM resizer inside workerd, with jpeg.wasm, hevc.wasm and webp.wasm loaded
 * the way the deployed Worker loads them (bundled WebAssembly.Module imports), and the edge
 * taking HEIC, PNG and WebP with RESIZER=wasm, "auto", and the Images binding (whose local
 * stand-in cannot read HEIC: the WASM decoders take over). Fidelity: wasm-formats.node.test.ts.
 */
import { describe, expect, inject, it } from "vitest";
import { segmentMarkers } from "../testing/jpeg-markers.ts";
import { fromBase64, testApp } from "../testing/test-app.ts";
import { readHeader, sniffFormat } from "../validate/index.ts";
import { createWasmResizer } from "./wasm-formats.ts";

const fixtures = inject("edgeFixtures");
const bytesOf = (name: string) => fromBase64(fixtures[name]!.base64);
const opts = { shortSide: 256, quality: 80 };

function inputOf(bytes: Uint8Array) {
  const format = sniffFormat(bytes)!;
  const h = readHeader(bytes, format);
  return { bytes, format, width: h.width, height: h.height, orientation: h.orientation };
}

/** A fresh baseline JPEG holding JFIF APP0 and nothing else of metadata. */
function expectCleanJpeg(bytes: Uint8Array): void {
  expect([bytes[0], bytes[1]]).toEqual([0xff, 0xd8]);
  expect(new Set(segmentMarkers(bytes))).toEqual(new Set([0xe0, 0xdb, 0xc0, 0xc4, 0xda]));
}

describe("WASM resizer for every phone format, in workerd", () => {
  it("reads JPEG, HEIC, PNG and WebP (nothing else)", () => {
    const r = createWasmResizer();
    expect(["jpeg", "heic", "png", "webp"].every((f) => r.supports(f as never))).toBe(true);
    expect(["gif", "tiff", "avif"].some((f) => r.supports(f as never))).toBe(false);
  });

  it("turns an iPhone-like HEIC grid (irot, Display P3) into an upright sRGB JPEG", async () => {
    const r = createWasmResizer();
    const out = await r.resize(inputOf(bytesOf("heicGrid")), opts);
    // 600x520 stored, turned 90°: 520x600 displayed → 256 x 295.
    expect([out.width, out.height]).toEqual([256, 295]);
    expect(r.lastRun).toMatchObject({ format: "heic", orientation: 8, icc: "converted", denom: 2 });
    expectCleanJpeg(out.bytes);
  });

  it.each([
    "heic10Bit",
    "png",
    "pngAlpha",
    "png16",
    "webpLossy",
    "webpLossless",
    "webpAlpha",
    "webpOrientation8",
  ])("%s", async (name) => {
    const r = createWasmResizer();
    const input = inputOf(bytesOf(name));
    const out = await r.resize(input, opts);
    const turned = input.orientation >= 5;
    expect([out.width, out.height]).toEqual(
      turned ? [input.height, input.width] : [input.width, input.height],
    );
    expectCleanJpeg(out.bytes);
  });

  it.each([
    ["wasm", {}],
    ["auto", {}],
    ["auto", { WASM_CPU_BUDGET_MS: "1" }],
    ["images", {}],
  ] as const)("the edge embeds HEIC, PNG and WebP with RESIZER=%s %o", async (resizer, vars) => {
    const { request, standIn } = await testApp({ vars: { RESIZER: resizer, ...vars } });
    for (const name of ["heicGrid", "png16", "webpLossy"]) {
      const res = await request("/v1/embeddings", {
        method: "POST",
        headers: { "content-type": "application/octet-stream" },
        body: bytesOf(name),
      });
      expect(res.status, name).toBe(200);
    }
    expect(standIn.received.length).toBe(3);
    for (const sent of standIn.received) {
      expect([sent[0], sent[1]]).toEqual([0xff, 0xd8]);
      // No EXIF/XMP/ICC (APP1..APP15) or comment, whichever resizer made it.
      expect(segmentMarkers(sent).filter((m) => (m >= 0xe1 && m <= 0xef) || m === 0xfe)).toEqual(
        [],
      );
    }
  });
});
