/** Test support: writes small ICC profiles (matrix/TRC RGB, grey, LUT-only stand-ins) and embeds them in JPEGs as APP2 chunks. Test data only; runs in Node and workerd. */

export type Xyz = readonly [number, number, number];

/** A TRC as the ICC stores it: `curv` identity, gamma or table, or `para` types 0–4. */
export type Curve =
  | { readonly kind: "identity" }
  | { readonly kind: "gamma"; readonly gamma: number }
  | { readonly kind: "table"; readonly values: readonly number[] }
  | { readonly kind: "para"; readonly type: 0 | 1 | 2 | 3 | 4; readonly params: readonly number[] };

export interface ProfileSpec {
  /** Data colour space signature (default "RGB "). */
  readonly space?: string;
  readonly deviceClass?: string;
  readonly pcs?: string;
  /** Encoded version (default 0x04300000, v4.3). */
  readonly version?: number;
  /** rXYZ, gXYZ, bXYZ: the D50-adapted colorants (RGB). */
  readonly colorants?: readonly [Xyz, Xyz, Xyz];
  /** rTRC, gTRC, bTRC (one curve for all three, or one each); kTRC for GRAY. */
  readonly trc?: Curve | readonly [Curve, Curve, Curve];
  /** Tags written as given (e.g. an opaque A2B0), after the others. */
  readonly extra?: readonly { readonly sig: string; readonly data: Uint8Array }[];
}

/** sRGB's curve as `para` type 3 (the IEC 61966-2.1 parameters). */
export const SRGB_CURVE: Curve = {
  kind: "para",
  type: 3,
  params: [2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045],
};

/** Bradford-adapted D50 colorants of sRGB, Display P3, Adobe RGB (1998) and ProPhoto RGB. */
export const COLORANTS = {
  srgb: [
    [0.4360747, 0.2225045, 0.0139322],
    [0.3850649, 0.7168786, 0.0971045],
    [0.1430804, 0.0606169, 0.7141733],
  ],
  displayP3: [
    [0.515102, 0.241182, -0.00104941],
    [0.291965, 0.692236, 0.0418818],
    [0.157153, 0.0665819, 0.784378],
  ],
  adobeRgb: [
    [0.6097559, 0.3111242, 0.0194811],
    [0.2052401, 0.625656, 0.0608902],
    [0.149224, 0.0632197, 0.7448387],
  ],
  proPhoto: [
    [0.7976749, 0.2880402, 0.0],
    [0.1351917, 0.7118741, 0.0],
    [0.0313534, 0.0000857, 0.82521],
  ],
} as const satisfies Record<string, readonly [Xyz, Xyz, Xyz]>;

function ascii(s: string): number[] {
  return Array.from(s, (c) => c.charCodeAt(0));
}

class Writer {
  readonly bytes: number[] = [];
  u16(v: number) {
    this.bytes.push((v >>> 8) & 255, v & 255);
  }
  u32(v: number) {
    this.bytes.push((v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255);
  }
  s15f16(v: number) {
    this.u32(Math.round(v * 65536) | 0);
  }
  sig(s: string) {
    this.bytes.push(...ascii(s.padEnd(4, " ").slice(0, 4)));
  }
}

function xyzTag(v: Xyz): Uint8Array {
  const w = new Writer();
  w.sig("XYZ ");
  w.u32(0);
  for (const c of v) w.s15f16(c);
  return Uint8Array.from(w.bytes);
}

function curveTag(c: Curve): Uint8Array {
  const w = new Writer();
  if (c.kind === "para") {
    w.sig("para");
    w.u32(0);
    w.u16(c.type);
    w.u16(0);
    for (const p of c.params) w.s15f16(p);
  } else {
    w.sig("curv");
    w.u32(0);
    if (c.kind === "identity") w.u32(0);
    else if (c.kind === "gamma") {
      w.u32(1);
      w.u16(Math.round(c.gamma * 256));
    } else {
      w.u32(c.values.length);
      for (const v of c.values) w.u16(Math.round(Math.min(1, Math.max(0, v)) * 65535));
    }
  }
  while (w.bytes.length % 4) w.bytes.push(0);
  return Uint8Array.from(w.bytes);
}

/** An ICC profile with the given tags; identical tag data is stored once and shared, as lcms writes it. */
export function buildIcc(spec: ProfileSpec): Uint8Array {
  const space = spec.space ?? "RGB ";
  const tags: { sig: string; data: Uint8Array }[] = [];
  if (spec.colorants) {
    for (const [i, sig] of ["rXYZ", "gXYZ", "bXYZ"].entries()) {
      tags.push({ sig, data: xyzTag(spec.colorants[i]!) });
    }
  }
  if (spec.trc) {
    const curves: readonly Curve[] = "kind" in spec.trc ? [spec.trc, spec.trc, spec.trc] : spec.trc;
    if (space === "GRAY") tags.push({ sig: "kTRC", data: curveTag(curves[0]!) });
    else {
      for (const [i, sig] of ["rTRC", "gTRC", "bTRC"].entries()) {
        tags.push({ sig, data: curveTag(curves[i]!) });
      }
    }
  }
  tags.push({ sig: "wtpt", data: xyzTag([0.9642, 1, 0.8249]) });
  tags.push(...(spec.extra ?? []));

  const header = 128 + 4 + 12 * tags.length;
  const offsets: number[] = [];
  const blobs: { data: Uint8Array; offset: number }[] = [];
  let at = header;
  for (const t of tags) {
    const same = blobs.find(
      (b) => b.data.length === t.data.length && b.data.every((v, i) => v === t.data[i]),
    );
    if (same) {
      offsets.push(same.offset);
      continue;
    }
    offsets.push(at);
    blobs.push({ data: t.data, offset: at });
    at += t.data.length;
    while (at % 4) at++;
  }
  const w = new Writer();
  w.u32(at); // size
  w.sig("test"); // CMM
  w.u32(spec.version ?? 0x04300000);
  w.sig(spec.deviceClass ?? "mntr");
  w.sig(space);
  w.sig(spec.pcs ?? "XYZ ");
  for (let i = 0; i < 6; i++) w.u16(0); // date
  w.sig("acsp");
  while (w.bytes.length < 64) w.u32(0); // platform, flags, manufacturer, model, attributes
  w.u32(0); // rendering intent: perceptual
  w.s15f16(0.9642);
  w.s15f16(1);
  w.s15f16(0.8249);
  while (w.bytes.length < 128) w.u32(0);
  w.u32(tags.length);
  tags.forEach((t, i) => {
    w.sig(t.sig);
    w.u32(offsets[i]!);
    w.u32(t.data.length);
  });
  for (const b of blobs) {
    w.bytes.push(...b.data);
    while (w.bytes.length % 4) w.bytes.push(0);
  }
  return Uint8Array.from(w.bytes);
}

/** The bytes of APP2 "ICC_PROFILE" segments carrying `profile`, `chunk` bytes each, in `order`. */
export function iccSegments(
  profile: Uint8Array,
  chunk = 65519,
  order?: (seq: number, count: number) => number,
): Uint8Array[] {
  const count = Math.max(1, Math.ceil(profile.length / chunk));
  const segments: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const seq = order ? order(i + 1, count) : i + 1;
    const data = profile.subarray((seq - 1) * chunk, seq * chunk);
    const len = 2 + 12 + 2 + data.length;
    segments.push(
      Uint8Array.from([
        0xff,
        0xe2,
        len >> 8,
        len & 255,
        ...ascii("ICC_PROFILE"),
        0,
        seq,
        count,
        ...data,
      ]),
    );
  }
  return segments;
}

/** `jpeg` with the given segments inserted right after SOI. */
export function withSegments(jpeg: Uint8Array, segments: readonly Uint8Array[]): Uint8Array {
  const total = segments.reduce((n, s) => n + s.length, 0);
  const out = new Uint8Array(jpeg.length + total);
  out.set(jpeg.subarray(0, 2));
  let at = 2;
  for (const s of segments) {
    out.set(s, at);
    at += s.length;
  }
  out.set(jpeg.subarray(2), at);
  return out;
}

/** `jpeg` carrying `profile` in APP2 chunks of `chunk` bytes. */
export function withIcc(jpeg: Uint8Array, profile: Uint8Array, chunk?: number): Uint8Array {
  return withSegments(jpeg, iccSegments(profile, chunk));
}
