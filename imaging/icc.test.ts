/**
 * icc.ts on synthetic profiles written by testing/icc-profiles.ts (runs in workerd, where the resizer runs):
 * Display P3 against the published P3 → sRGB matrix, grey, the sRGB short cut, what is ignored,
 * and malformed or hostile profiles (never a throw). Parity with sharp/lcms on real and synthetic
 * profiles is in ../wasm-jpeg.node.test.ts.
 */
import { describe, expect, it } from "vitest";
import { iccToSrgb } from "./icc.ts";
import { buildIcc, COLORANTS, type ProfileSpec, SRGB_CURVE } from "./testing/icc-profiles.ts";

const P3: ProfileSpec = { colorants: COLORANTS.displayP3, trc: SRGB_CURVE };

/** Linear Display P3 → linear sRGB (both D65, no adaptation): CSS Color 4's published matrix. */
const P3_TO_SRGB = [
  [1.2249401, -0.2249404, 0.0],
  [-0.0420569, 1.0420571, 0.0],
  [-0.0196376, -0.0786361, 1.0982735],
];

const decode = (v: number) => (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
const encode = (v: number) => (v <= 0.0031308 ? 12.92 * v : 1.055 * v ** (1 / 2.4) - 0.055);

/** The expected sRGB pixel for a P3 pixel, computed without icc.ts (clipped, as relative colorimetric). */
function p3ToSrgb(rgb: readonly number[]): number[] {
  const lin = rgb.map((v) => decode(v / 255));
  return P3_TO_SRGB.map((row) => {
    const y = row[0]! * lin[0]! + row[1]! * lin[1]! + row[2]! * lin[2]!;
    return Math.round(encode(Math.min(1, Math.max(0, y))) * 255);
  });
}

function convert(profile: Uint8Array, pixels: number[][], colour: "rgb" | "gray" = "rgb") {
  const c = iccToSrgb(profile, colour);
  const data = Uint8Array.from(pixels.flat());
  c.apply?.(data);
  return {
    status: c.status,
    pixels: pixels.map((_, i) => Array.from(data.subarray(i * 3, i * 3 + 3))),
  };
}

describe("iccToSrgb", () => {
  it("converts Display P3 to sRGB like the published matrix", () => {
    const colours = [
      [255, 0, 0], // P3 red: out of sRGB's gamut, clipped to sRGB red
      [0, 255, 0],
      [0, 0, 255],
      [230, 40, 30],
      [200, 80, 60],
      [60, 200, 90],
      [40, 60, 220],
      [128, 128, 128],
      [255, 255, 255],
      [0, 0, 0],
      [3, 2, 1],
    ];
    const { status, pixels } = convert(buildIcc(P3), colours);
    expect(status).toBe("converted");
    expect(pixels[0]).toEqual([255, 0, 0]);
    colours.forEach((c, i) => {
      const want = p3ToSrgb(c);
      pixels[i]!.forEach((v, k) => {
        expect(Math.abs(v - want[k]!), `${c} → ${pixels[i]} want ${want}`).toBeLessThanOrEqual(1);
      });
    });
    // neutral stays neutral, and the conversion really moved saturated colours
    expect(pixels[7]).toEqual([128, 128, 128]);
    expect(pixels[4]![0]).toBeGreaterThan(210);
  });

  it("the same profile as ICC v2, with curv gamma or table TRCs", () => {
    const gamma = { kind: "gamma", gamma: 2.2 } as const;
    const table = {
      kind: "table",
      values: Array.from({ length: 1024 }, (_, i) => (i / 1023) ** 2.2),
    } as const;
    const px = [
      [200, 80, 60],
      [40, 30, 20],
    ];
    const viaGamma = convert(buildIcc({ ...P3, trc: gamma, version: 0x02100000 }), px);
    const viaTable = convert(buildIcc({ ...P3, trc: table }), px);
    expect(viaGamma.status).toBe("converted");
    expect(viaTable.status).toBe("converted");
    viaGamma.pixels.flat().forEach((v, k) => {
      expect(Math.abs(v - viaTable.pixels.flat()[k]!)).toBeLessThanOrEqual(1);
    });
    // a pure 2.2 gamma is darker than sRGB's curve in the shadows
    expect(viaGamma.pixels[1]![0]).toBeLessThan(convert(buildIcc(P3), px).pixels[1]![0]!);
  });

  it("skips sRGB profiles (and near-identical ones)", () => {
    expect(iccToSrgb(buildIcc({ colorants: COLORANTS.srgb, trc: SRGB_CURVE }), "rgb")).toEqual({
      status: "srgb",
    });
    const table = {
      kind: "table",
      values: Array.from({ length: 1024 }, (_, i) => decode(i / 1023)),
    } as const;
    expect(iccToSrgb(buildIcc({ colorants: COLORANTS.srgb, trc: table }), "rgb").status).toBe(
      "srgb",
    );
  });

  it("converts grey profiles through their TRC to sRGB grey", () => {
    const linear = buildIcc({ space: "GRAY", trc: { kind: "identity" } });
    const levels = [0, 1, 10, 50, 128, 200, 255];
    const { status, pixels } = convert(
      linear,
      levels.map((v) => [v, v, v]),
      "gray",
    );
    expect(status).toBe("converted");
    levels.forEach((v, i) => {
      const want = Math.round(encode(v / 255) * 255);
      expect(pixels[i]).toEqual([want, want, want]);
    });
    expect(iccToSrgb(buildIcc({ space: "GRAY", trc: SRGB_CURVE }), "gray").status).toBe("srgb");
  });

  it("ignores what it cannot apply, and says why", () => {
    const lut = { sig: "A2B0", data: new Uint8Array(64).fill(1) };
    expect(iccToSrgb(buildIcc({ extra: [lut] }), "rgb").status).toBe("ignored:lut-based");
    expect(iccToSrgb(buildIcc({ space: "CMYK", extra: [lut] }), "cmyk").status).toBe(
      "ignored:cmyk",
    );
    expect(iccToSrgb(buildIcc({ ...P3, space: "Lab " }), "rgb").status).toBe(
      "ignored:colour-space",
    );
    expect(iccToSrgb(buildIcc({ ...P3, deviceClass: "link" }), "rgb").status).toBe(
      "ignored:device-class",
    );
    expect(iccToSrgb(buildIcc(P3), "gray").status).toBe("ignored:mismatch");
    expect(iccToSrgb(buildIcc({ space: "GRAY", trc: SRGB_CURVE }), "rgb").status).toBe(
      "ignored:mismatch",
    );
    expect(iccToSrgb(buildIcc({ colorants: COLORANTS.displayP3 }), "rgb").status).toBe(
      "ignored:malformed",
    );
  });

  it("treats malformed profiles as absent instead of throwing", () => {
    const good = buildIcc(P3);
    const set32 = (b: Uint8Array, at: number, v: number) =>
      new DataView(b.buffer, b.byteOffset).setUint32(at, v);
    const at = (offset: number, bytes: number[]) => (b: Uint8Array) => {
      b.set(bytes, offset);
      return b;
    };
    const u32 = (offset: number, v: number) => (b: Uint8Array) => {
      set32(b, offset, v);
      return b;
    };
    const cases: [string, (b: Uint8Array) => Uint8Array][] = [
      ["empty", () => new Uint8Array(0)],
      ["header only", (b) => b.subarray(0, 128)],
      ["no acsp", at(36, [0, 0, 0, 0])],
      ["declared size < 132", u32(0, 100)],
      ["huge tag count", u32(128, 0x7fffffff)],
      ["tag count past the end", u32(128, 40)],
      ["tag offset past the end", u32(132 + 4, 0xfffffff0)],
      ["tag size past the end", u32(132 + 8, 0xfffffff0)],
      ["PCS not XYZ or Lab", at(20, [0x41, 0x42, 0x43, 0x44])],
    ];
    for (const [name, mutate] of cases) {
      expect(iccToSrgb(mutate(good.slice()), "rgb").status, name).toBe("ignored:malformed");
    }
    // every truncation: ignored or, where the cut only loses padding, still converted
    for (let n = 0; n < good.length; n++) {
      const s = iccToSrgb(good.subarray(0, n), "rgb").status;
      expect(["ignored:malformed", "converted"], `cut at ${n}`).toContain(s);
    }
  });

  it("rejects broken TRC tags: bad types, counts, non-finite curves", () => {
    const trcs: ProfileSpec["trc"][] = [
      { kind: "para", type: 4, params: [2.4] }, // too few parameters
      { kind: "para", type: 3, params: [30000, 2, 0, 0, 0] }, // (2x)^30000: infinite
    ];
    for (const trc of trcs) {
      expect(iccToSrgb(buildIcc({ ...P3, trc }), "rgb").status, JSON.stringify(trc)).toBe(
        "ignored:malformed",
      );
    }
    const badType = buildIcc({ ...P3, trc: { kind: "para", type: 3, params: [2.4, 1, 0, 0, 0] } });
    const para = findTag(badType, "rTRC");
    badType[para + 9] = 9; // para function type 9
    expect(iccToSrgb(badType, "rgb").status).toBe("ignored:malformed");
    const longCurv = buildIcc({ ...P3, trc: { kind: "gamma", gamma: 2.2 } });
    new DataView(longCurv.buffer).setUint32(findTag(longCurv, "rTRC") + 8, 0x7fffffff);
    expect(iccToSrgb(longCurv, "rgb").status).toBe("ignored:malformed");
    const xyzAsCurv = buildIcc(P3);
    xyzAsCurv.set([0x63, 0x75, 0x72, 0x76], findTag(xyzAsCurv, "gXYZ")); // 'curv'
    expect(iccToSrgb(xyzAsCurv, "rgb").status).toBe("ignored:malformed");
  });

  it("fuzz: random corruption never throws, and any conversion it builds runs", () => {
    const good = buildIcc(P3);
    let seed = 7;
    const rnd = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const pixels = Uint8Array.from({ length: 300 }, (_, i) => (i * 37) & 255);
    for (let round = 0; round < 2000; round++) {
      const bad = good.slice();
      const flips = 1 + Math.floor(rnd() * 8);
      for (let f = 0; f < flips; f++) bad[Math.floor(rnd() * bad.length)] = Math.floor(rnd() * 256);
      const c = iccToSrgb(bad, "rgb");
      expect(c.status).toMatch(/^(converted|srgb|ignored:[a-z-]+)$/);
      c.apply?.(pixels.slice());
    }
  });
});

/** Offset of a tag's data, from the tag table. */
function findTag(icc: Uint8Array, sig: string): number {
  const dv = new DataView(icc.buffer, icc.byteOffset);
  for (let i = 0; i < dv.getUint32(128); i++) {
    const at = 132 + i * 12;
    if (String.fromCharCode(...icc.subarray(at, at + 4)) === sig) return dv.getUint32(at + 4);
  }
  throw new Error(`no ${sig}`);
}
