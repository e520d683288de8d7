/** HEIC/AVIF (ISO-BMFF) bytes in; the primary item's size, its irot/imir as an EXIF orientation, alpha, and whether it is AV1-coded out. */
import { be16, be32, fail, fourcc, latin1, TRUNCATED, u8 } from "../../imaging/bytes.ts";
import { type Box, childBoxes, readIpma } from "../../imaging/heif/container.ts";
import type { Parsed } from "./header.ts";

const META = fourcc("meta");
const PITM = fourcc("pitm");
const IINF = fourcc("iinf");
const INFE = fourcc("infe");
const IPRP = fourcc("iprp");
const IPCO = fourcc("ipco");
const IPMA = fourcc("ipma");
const ISPE = fourcc("ispe");
const IROT = fourcc("irot");
const IMIR = fourcc("imir");
const AUXC = fourcc("auxC");
const AV01 = fourcc("av01");

// EXIF orientation as a 2x2 matrix on (x, y), y pointing down: what to do to the stored image to
// display it. Index = orientation.
const ORIENTATION_MATRICES: readonly (readonly number[])[] = [
  [],
  [1, 0, 0, 1],
  [-1, 0, 0, 1], // mirror left-right
  [-1, 0, 0, -1],
  [1, 0, 0, -1], // mirror top-bottom
  [0, 1, 1, 0], // transpose
  [0, -1, 1, 0], // rotate 90 clockwise
  [0, -1, -1, 0], // transverse
  [0, 1, -1, 0], // rotate 90 anticlockwise
];

function compose(m: readonly number[], then: readonly number[]): number[] {
  return [
    then[0]! * m[0]! + then[1]! * m[2]!,
    then[0]! * m[1]! + then[1]! * m[3]!,
    then[2]! * m[0]! + then[3]! * m[2]!,
    then[2]! * m[1]! + then[3]! * m[3]!,
  ];
}

function orientationOf(m: readonly number[]): number {
  for (let o = 1; o <= 8; o++) {
    const r = ORIENTATION_MATRICES[o]!;
    if (r[0] === m[0] && r[1] === m[1] && r[2] === m[2] && r[3] === m[3]) return o;
  }
  return 1;
}

/**
 * `meta` → `pitm` (primary item) → `iprp`/`ipma` → its `ispe` (stored size), and its `irot`/
 * `imir` folded into an EXIF orientation, in association order. HEIF decoders (libheif, the
 * Images binding) apply these transforms themselves, so `orientation` here tells the display size
 * (orientedWidth/Height); the EXIF block inside a HEIC is informative only and ignored. `imir`
 * follows ISO/IEC 23008-12:2022 (axis 0 = top-bottom flip, as libheif and libavif read it).
 * Without a usable pitm/ipma, the largest `ispe` stands in (a grid's full size is its largest).
 */
export function parseHeif(b: Uint8Array): Parsed & { av1: boolean } {
  const top = childBoxes(b, 0, b.length);
  const meta = top.boxes.find((box) => box.type === META);
  if (meta === undefined) fail(top.overrun ? TRUNCATED : "no meta box");
  if (top.overrun && top.boxes.at(-1) === meta) fail("meta box runs past the end of the file");
  const children = childBoxes(b, meta.start + 4, meta.end).boxes; // FullBox: skip version/flags
  let primary = -1;
  const itemTypes = new Map<number, number>();
  const properties: Box[] = [];
  let associations: number[] | undefined;
  for (const box of children) {
    if (box.type === PITM) {
      primary = u8(b, box.start) === 0 ? be16(b, box.start + 4) : be32(b, box.start + 4);
    } else if (box.type === IINF) {
      const v = u8(b, box.start);
      const first = box.start + (v === 0 ? 6 : 8);
      for (const infe of childBoxes(b, first, box.end).boxes) {
        if (infe.type !== INFE || infe.start + 4 > infe.end) continue;
        const iv = u8(b, infe.start);
        if (iv < 2) continue;
        const id = iv === 2 ? be16(b, infe.start + 4) : be32(b, infe.start + 4);
        const typeAt = infe.start + (iv === 2 ? 8 : 10);
        if (typeAt + 4 <= infe.end) itemTypes.set(id, be32(b, typeAt));
      }
    } else if (box.type === IPRP) {
      const iprp = childBoxes(b, box.start, box.end).boxes;
      const ipco = iprp.find((x) => x.type === IPCO);
      if (ipco) properties.push(...childBoxes(b, ipco.start, ipco.end).boxes);
      const ipma = iprp.find((x) => x.type === IPMA);
      if (ipma && primary >= 0) associations = primaryAssociations(b, ipma, primary);
    }
  }
  // pitm normally precedes iprp, but nothing requires it: look again once both are known.
  if (associations === undefined && primary >= 0) {
    for (const box of children) {
      if (box.type !== IPRP) continue;
      const ipma = childBoxes(b, box.start, box.end).boxes.find((x) => x.type === IPMA);
      if (ipma) associations = primaryAssociations(b, ipma, primary);
    }
  }

  let width = -1;
  let height = -1;
  let matrix: number[] = [1, 0, 0, 1];
  for (const index of associations ?? []) {
    const prop = properties[index - 1];
    if (prop === undefined) continue;
    if (prop.type === ISPE && width < 0 && prop.start + 12 <= prop.end) {
      width = be32(b, prop.start + 4);
      height = be32(b, prop.start + 8);
    } else if (prop.type === IROT && prop.start < prop.end) {
      const quarterTurnsAnticlockwise = u8(b, prop.start) & 3;
      for (let i = 0; i < quarterTurnsAnticlockwise; i++) {
        matrix = compose(matrix, ORIENTATION_MATRICES[8]!);
      }
    } else if (prop.type === IMIR && prop.start < prop.end) {
      matrix = compose(matrix, ORIENTATION_MATRICES[(u8(b, prop.start) & 1) === 0 ? 4 : 2]!);
    }
  }
  if (width < 0) {
    for (const prop of properties) {
      if (prop.type !== ISPE || prop.start + 12 > prop.end) continue;
      const w = be32(b, prop.start + 4);
      const h = be32(b, prop.start + 8);
      if (w * h > width * height || width < 0) {
        width = w;
        height = h;
      }
    }
  }
  if (width < 0) fail("no image size (ispe) property");

  const primaryType = itemTypes.get(primary);
  let av1 = primaryType === AV01;
  if (primaryType === undefined || primaryType === fourcc("grid")) {
    av1 = [...itemTypes.values()].some((t) => t === AV01);
  }
  const hasAlpha = properties.some(
    (p) =>
      p.type === AUXC && latin1(b, p.start + 4, Math.min(p.end, p.start + 260)).includes("alpha"),
  );
  const header: Parsed & { av1: boolean } = {
    width,
    height,
    orientation: orientationOf(matrix),
    hasAlpha,
    av1,
  };
  if (top.overrun) header.problem = "a top-level box runs past the end of the file (truncated)";
  return header;
}

/** The 1-based ipco indices associated with `item`, in order. */
function primaryAssociations(b: Uint8Array, ipma: Box, item: number): number[] {
  return readIpma(b, ipma.start, ipma.end).get(item) ?? [];
}
