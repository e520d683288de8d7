/** Embedded ICC profiles to sRGB on decoded 8-bit pixels, in pure TS: matrix/TRC RGB and grey profiles, converted the way lcms does it for sharp, so the Worker and the gpu-node see the same colours. */

/**
 * What happened to a JPEG's embedded profile:
 * - `none`: no profile; the samples are sRGB by convention.
 * - `srgb`: an sRGB (or indistinguishable) profile; nothing to do.
 * - `converted`: a matrix/TRC RGB or a grey profile, converted to sRGB.
 * - `ignored:<reason>`: a profile this path cannot apply; the samples are taken as sRGB.
 */
export type IccStatus = "none" | "srgb" | "converted" | `ignored:${IccIgnored}`;

export type IccIgnored =
  /** Inconsistent APP2 chunks, a bad header, tag table or tag. */
  | "malformed"
  /** No matrix/TRC (or grey TRC) tags, only lookup tables (A2B0…): would need a CLUT engine. */
  | "lut-based"
  /** A CMYK profile: CMYK JPEGs keep the naive conversion (see resample/pixels.ts). */
  | "cmyk"
  /** Lab, XYZ, multi-ink or other data colour spaces. */
  | "colour-space"
  /** Device link, abstract and named-colour profiles describe no image colours. */
  | "device-class"
  /** The profile's colour space is not the JPEG's (an RGB profile on a grey JPEG, …). */
  | "mismatch";

/** The JPEG's colour as decoded; grey and YCbCr both reach us as RGB triplets. */
export type JpegColour = "gray" | "rgb" | "cmyk";

export interface SrgbConversion {
  readonly status: IccStatus;
  /** Converts packed 8-bit RGB to sRGB in place; absent when the samples stay as they are. */
  readonly apply?: (rgb: Uint8Array) => void;
}

/** A failure while reading the profile; caught in `iccToSrgb`, never escapes. */
class IccIgnore extends Error {
  readonly reason: IccIgnored;
  constructor(reason: IccIgnored, detail: string) {
    super(detail);
    this.reason = reason;
  }
}

/**
 * XYZ (D50) → linear sRGB: the inverse of sRGB's Bradford-adapted D50 colorants, which is what
 * ICC sRGB profiles store (libvips' built-in one, sharp's target, agrees to 1e-4).
 */
const XYZ_D50_TO_SRGB = [
  3.1338561, -1.6168667, -0.4906146, -0.9787684, 1.9161415, 0.033454, 0.0719453, -0.2289914,
  1.4052427,
] as const;

/**
 * Resolution of the linear → sRGB encode table. lcms' 8-bit matrix-shaper path quantises linear
 * light to 1/16384 too; coarser steps (4096) would cost up to ~0.8 levels near black, where the
 * sRGB curve's slope is 12.92.
 */
const ENCODE_STEPS = 16384;
let encodeTable: Uint8Array | undefined;

function srgbEncode(v: number): number {
  return v <= 0.0031308 ? 12.92 * v : 1.055 * v ** (1 / 2.4) - 0.055;
}

/** Linear [0, 1] in `ENCODE_STEPS` steps → 8-bit sRGB; built once, shared by every profile. */
function encodeLut(): Uint8Array {
  if (!encodeTable) {
    encodeTable = new Uint8Array(ENCODE_STEPS + 1);
    for (let i = 0; i <= ENCODE_STEPS; i++) {
      encodeTable[i] = Math.round(srgbEncode(i / ENCODE_STEPS) * 255);
    }
  }
  return encodeTable;
}

/** Bounds-checked big-endian reads of one profile; any read past its end is "malformed". */
class IccReader {
  readonly bytes: Uint8Array;
  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
  }
  #check(at: number, n: number): void {
    if (at < 0 || at + n > this.bytes.length) {
      throw new IccIgnore("malformed", `read of ${n} bytes at ${at} past the end`);
    }
  }
  u16(at: number): number {
    this.#check(at, 2);
    return (this.bytes[at]! << 8) | this.bytes[at + 1]!;
  }
  u32(at: number): number {
    this.#check(at, 4);
    return (
      ((this.bytes[at]! << 24) |
        (this.bytes[at + 1]! << 16) |
        (this.bytes[at + 2]! << 8) |
        this.bytes[at + 3]!) >>>
      0
    );
  }
  /** s15Fixed16Number. */
  s15f16(at: number): number {
    return (this.u32(at) | 0) / 65536;
  }
  sig(at: number): string {
    this.#check(at, 4);
    return String.fromCharCode(...this.bytes.subarray(at, at + 4));
  }
}

interface Tag {
  readonly offset: number;
  readonly size: number;
}

interface Profile {
  readonly r: IccReader;
  readonly colourSpace: string;
  readonly tags: ReadonlyMap<string, Tag>;
}

function parseProfile(bytes: Uint8Array): Profile {
  if (bytes.length < 132) throw new IccIgnore("malformed", "shorter than a header");
  const whole = new IccReader(bytes);
  // lcms trusts the declared size only up to the bytes actually there: padding is common.
  const declared = whole.u32(0);
  if (declared < 132) throw new IccIgnore("malformed", `declared size ${declared}`);
  const r = new IccReader(bytes.subarray(0, Math.min(declared, bytes.length)));
  if (r.sig(36) !== "acsp") throw new IccIgnore("malformed", "no 'acsp' signature");
  const deviceClass = r.sig(12);
  if (!["mntr", "scnr", "prtr", "spac"].includes(deviceClass)) {
    throw new IccIgnore("device-class", deviceClass);
  }
  const pcs = r.sig(20);
  // Matrix/TRC colorants are XYZ either way; lcms accepts a Lab PCS and converts.
  if (pcs !== "XYZ " && pcs !== "Lab ") throw new IccIgnore("malformed", `PCS '${pcs}'`);
  const count = r.u32(128);
  if (count > 100 || 132 + count * 12 > r.bytes.length) {
    throw new IccIgnore("malformed", `${count} tags`);
  }
  const tags = new Map<string, Tag>();
  for (let i = 0; i < count; i++) {
    const at = 132 + i * 12;
    const offset = r.u32(at + 4);
    const size = r.u32(at + 8);
    // As lcms: a tag that points outside the profile is skipped, not fatal by itself.
    if (size < 8 || offset + size > r.bytes.length) continue;
    const sig = r.sig(at);
    if (!tags.has(sig)) tags.set(sig, { offset, size });
  }
  return { r, colourSpace: r.sig(16), tags };
}

/** A tag's reader limited to its own bytes, with its type signature checked. */
function tagData(
  p: Profile,
  sig: string,
  types: readonly string[],
): { r: IccReader; type: string } {
  const tag = p.tags.get(sig);
  if (!tag) throw new IccIgnore("malformed", `no ${sig} tag`);
  const r = new IccReader(p.r.bytes.subarray(tag.offset, tag.offset + tag.size));
  const type = r.sig(0);
  if (!types.includes(type)) throw new IccIgnore("malformed", `${sig} has type '${type}'`);
  return { r, type };
}

function readXyz(p: Profile, sig: string): [number, number, number] {
  const { r } = tagData(p, sig, ["XYZ "]);
  return [r.s15f16(8), r.s15f16(12), r.s15f16(16)];
}

/** Parameter counts of `para` function types 0–4. */
const PARA_PARAMS = [1, 3, 4, 5, 7] as const;

/**
 * A tone reproduction curve as a function on [0, 1] (device value → linear light), read from a
 * `curv` (identity, u8Fixed8 gamma, or a table interpolated linearly) or a `para` tag (ICC
 * parametric types 0–4, evaluated as lcms does: a non-positive base gives 0, not NaN).
 */
function readTrc(p: Profile, sig: string): (x: number) => number {
  const { r, type } = tagData(p, sig, ["curv", "para"]);
  if (type === "curv") {
    const n = r.u32(8);
    if (n === 0) return (x) => x;
    if (n === 1) {
      const gamma = r.u16(12) / 256;
      return (x) => x ** gamma;
    }
    if (12 + 2 * n > r.bytes.length) throw new IccIgnore("malformed", `${sig} table truncated`);
    const table = new Float64Array(n);
    for (let i = 0; i < n; i++) table[i] = r.u16(12 + 2 * i) / 65535;
    return (x) => {
      const at = x * (n - 1);
      const i = Math.min(Math.floor(at), n - 2);
      return table[i]! + (table[i + 1]! - table[i]!) * (at - i);
    };
  }
  const fn = r.u16(8);
  const count = PARA_PARAMS[fn as 0 | 1 | 2 | 3 | 4];
  if (count === undefined) throw new IccIgnore("malformed", `${sig} para type ${fn}`);
  const q: number[] = [];
  for (let i = 0; i < count; i++) q.push(r.s15f16(12 + 4 * i));
  const [g, a = 1, b = 0, c = 0, d = 0, e = 0, f = 0] = q as [number, ...number[]];
  const pow = (base: number) => (base > 0 ? base ** g : 0);
  switch (fn) {
    case 0:
      return (x) => x ** g;
    case 1:
      // Y = (aX + b)^g for X ≥ −b/a, else 0
      return (x) => (a !== 0 && x >= -b / a ? pow(a * x + b) : 0);
    case 2:
      // Y = (aX + b)^g + c for X ≥ −b/a, else c; lcms gives 0 where aX + b ≤ 0 on the upper branch
      return (x) => {
        if (a === 0) return 0;
        if (x < Math.max(0, -b / a)) return c;
        return a * x + b > 0 ? pow(a * x + b) + c : 0;
      };
    case 3:
      // Y = (aX + b)^g for X ≥ d, else cX (sRGB's shape)
      return (x) => (x >= d ? pow(a * x + b) : c * x);
    default:
      // Y = (aX + b)^g + e for X ≥ d, else cX + f
      return (x) => (x >= d ? pow(a * x + b) + e : c * x + f);
  }
}

/** The curve sampled at the 256 8-bit codes; non-finite values mean a broken profile. */
function linearLut(trc: (x: number) => number, sig: string): Float64Array {
  const lut = new Float64Array(256);
  for (let v = 0; v < 256; v++) {
    const y = trc(v / 255);
    if (!Number.isFinite(y)) throw new IccIgnore("malformed", `${sig} is not finite`);
    lut[v] = y;
  }
  return lut;
}

/** How far (in 8-bit levels) a linearisation table strays from the sRGB curve. */
function levelsFromSrgb(lut: Float64Array): number {
  let worst = 0;
  for (let v = 0; v < 256; v++) {
    worst = Math.max(worst, Math.abs(srgbEncode(Math.min(1, Math.max(0, lut[v]!))) * 255 - v));
  }
  return worst;
}

/**
 * The luminance lcms takes as the source's black point for black-point compensation: the black
 * colorant's Y, made neutral and capped at L* 50 (`BlackPointAsDarkerColorant`).
 */
function blackPointY(y: number): number {
  const eps = 216 / 24389;
  const kappa = 24389 / 27;
  let l = y > eps ? 116 * Math.cbrt(y) - 16 : kappa * y;
  if (l > 95) l = 0; // lcms: "for synthetical negative profiles"
  l = Math.min(l, 50);
  return l > 8 ? ((l + 16) / 116) ** 3 : l / kappa;
}

/**
 * sharp converts embedded profiles with the perceptual intent into libvips' built-in sRGB, a v4
 * profile, and lcms then forces black-point compensation (`_cmsLinkProfiles`: "applies always on
 * V4 perceptual"). For matrix/TRC profiles perceptual is relative colorimetric, and with sRGB's
 * black at 0 BPC reduces to stretching linear light from [Yb, 1] to [0, 1], Yb being the
 * source's black point. Most profiles have black at 0, where this is the identity.
 */
function bpcScale(blackY: number): { scale: number; offset: number } {
  const yb = blackPointY(Math.max(0, blackY));
  return yb > 1e-6 ? { scale: 1 / (1 - yb), offset: -yb / (1 - yb) } : { scale: 1, offset: 0 };
}

const SRGB_TOLERANCE = { matrix: 1e-3, levels: 0.25 } as const;

function rgbConversion(p: Profile): SrgbConversion {
  const names = ["rXYZ", "gXYZ", "bXYZ", "rTRC", "gTRC", "bTRC"] as const;
  // A profile with A2B0 tables as well is converted through its matrix/TRC tags: lcms would
  // prefer the tables at sharp's perceptual intent, but both describe the same device and the
  // matrix is what this path can apply.
  if (!names.every((n) => p.tags.has(n))) throw lutOrBroken(p, "matrix/TRC tags missing");
  // The colorants are the PCS (D50) values already: ICC v2 and v4 both store them
  // chromatically adapted, so `chad` (needed only for absolute colorimetric) is not used.
  const cols = [readXyz(p, "rXYZ"), readXyz(p, "gXYZ"), readXyz(p, "bXYZ")];
  const lin = (["rTRC", "gTRC", "bTRC"] as const).map((s) => linearLut(readTrc(p, s), s));
  // Source RGB (linear) → XYZ D50 → sRGB linear, one matrix.
  const m = new Float64Array(9);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      let s = 0;
      for (let k = 0; k < 3; k++) s += XYZ_D50_TO_SRGB[i * 3 + k]! * cols[j]![k]!;
      m[i * 3 + j] = s;
    }
  }
  const blackY = cols[0]![1] * lin[0]![0]! + cols[1]![1] * lin[1]![0]! + cols[2]![1] * lin[2]![0]!;
  const { scale, offset } = bpcScale(blackY);
  let matrixOff = 0;
  for (let i = 0; i < 9; i++) matrixOff = Math.max(matrixOff, Math.abs(m[i]! - (i % 4 ? 0 : 1)));
  if (
    matrixOff < SRGB_TOLERANCE.matrix &&
    offset === 0 &&
    lin.every((l) => levelsFromSrgb(l) < SRGB_TOLERANCE.levels)
  ) {
    return { status: "srgb" };
  }

  return { status: "converted", apply: matrixApply(lin, m, scale, offset) };
}

/** Fixed-point fraction bits below the encode table's index, so per-term rounding stays invisible. */
const SUB_BITS = 4;

/**
 * The per-pixel work as nine table lookups and integer adds: term[i][j][v] = m[i][j] · lin_j[v]
 * (BPC and the encode table's scale folded in, in fixed point), then clamp (relative colorimetric
 * clips out-of-gamut colours, as lcms does) and encode. About 3x faster than float multiplies.
 */
function matrixApply(
  lin: readonly Float64Array[],
  m: Float64Array,
  scale: number,
  offset: number,
): (rgb: Uint8Array) => void {
  const one = ENCODE_STEPS << SUB_BITS;
  const terms = new Int32Array(9 * 256);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      const k = m[i * 3 + j]! * scale * one;
      // The offset and the rounding half-step ride on the first input's table.
      const add = j === 0 ? offset * one + (1 << (SUB_BITS - 1)) : 0;
      for (let v = 0; v < 256; v++)
        terms[(i * 3 + j) * 256 + v] = Math.round(k * lin[j]![v]! + add);
    }
  }
  const enc = encodeLut();
  const max = ENCODE_STEPS;
  return (rgb) => {
    const n = rgb.length - (rgb.length % 3);
    for (let p = 0; p < n; p += 3) {
      const r = rgb[p]!;
      const g = rgb[p + 1]! + 256;
      const b = rgb[p + 2]! + 512;
      const x = (terms[r]! + terms[g]! + terms[b]!) >> SUB_BITS;
      const y = (terms[768 + r]! + terms[768 + g]! + terms[768 + b]!) >> SUB_BITS;
      const z = (terms[1536 + r]! + terms[1536 + g]! + terms[1536 + b]!) >> SUB_BITS;
      rgb[p] = enc[Math.max(0, Math.min(max, x))]!;
      rgb[p + 1] = enc[Math.max(0, Math.min(max, y))]!;
      rgb[p + 2] = enc[Math.max(0, Math.min(max, z))]!;
    }
  };
}

/**
 * Grey: lcms maps the grey TRC's linear value Y to D50 · Y, which sRGB renders as the neutral
 * R = G = B = encode(Y). libjpeg hands grey JPEGs over as equal RGB triplets, so one 8-bit table
 * applied to every sample does it.
 */
function greyConversion(p: Profile): SrgbConversion {
  if (!p.tags.has("kTRC")) throw lutOrBroken(p, "kTRC missing");
  const lin = linearLut(readTrc(p, "kTRC"), "kTRC");
  const { scale, offset } = bpcScale(lin[0]!);
  if (offset === 0 && levelsFromSrgb(lin) < SRGB_TOLERANCE.levels) return { status: "srgb" };
  const table = new Uint8Array(256);
  for (let v = 0; v < 256; v++) {
    const y = Math.min(1, Math.max(0, lin[v]! * scale + offset));
    table[v] = Math.round(srgbEncode(y) * 255);
  }
  return {
    status: "converted",
    apply(rgb) {
      for (let i = 0; i < rgb.length; i++) rgb[i] = table[rgb[i]!]!;
    },
  };
}

function lutOrBroken(p: Profile, detail: string): IccIgnore {
  const luts = ["A2B0", "A2B1", "A2B2", "D2B0"].some((t) => p.tags.has(t));
  return new IccIgnore(luts ? "lut-based" : "malformed", detail);
}

/**
 * How to bring a JPEG's pixels from its embedded ICC profile to sRGB. Never throws: a profile it
 * cannot read or apply is reported as `ignored:<reason>` and the samples are left as sRGB.
 */
export function iccToSrgb(profile: Uint8Array, colour: JpegColour): SrgbConversion {
  try {
    const p = parseProfile(profile);
    switch (p.colourSpace) {
      case "RGB ":
        if (colour !== "rgb") throw new IccIgnore("mismatch", `RGB profile on ${colour}`);
        return rgbConversion(p);
      case "GRAY":
        if (colour !== "gray") throw new IccIgnore("mismatch", `grey profile on ${colour}`);
        return greyConversion(p);
      case "CMYK":
        throw new IccIgnore("cmyk", "CMYK profile");
      default:
        throw new IccIgnore("colour-space", p.colourSpace);
    }
  } catch (e) {
    if (e instanceof IccIgnore) return { status: `ignored:${e.reason}` };
    throw e;
  }
}
