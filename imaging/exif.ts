/** Reads TIFF structures (a TIFF file, or the EXIF block inside a JPEG, PNG or WebP): bytes and a range in, image file directories and the EXIF orientation out. */
import { be16, be32, fail, ImageHeaderError, le16, le32, TRUNCATED, u8 } from "./bytes.ts";

export interface TiffView {
  b: Uint8Array;
  /** Offsets in the TIFF structure are relative to this. */
  base: number;
  end: number;
  le: boolean;
  firstIfd: number;
}

/** The TIFF header at [base, end), or undefined when there is none ("II*\0" / "MM\0*"). */
export function tiffView(b: Uint8Array, base: number, end: number): TiffView | undefined {
  if (end > b.length || base + 8 > end) return undefined;
  const order = be16(b, base);
  const le = order === 0x4949;
  if (!le && order !== 0x4d4d) return undefined;
  const t: TiffView = { b, base, end, le, firstIfd: 0 };
  if (t16(t, 2) !== 42) return undefined;
  t.firstIfd = t32(t, 4);
  return t;
}

function tOffset(t: TiffView, rel: number, size: number): number {
  const o = t.base + rel;
  if (rel < 0 || o + size > t.end) fail(TRUNCATED);
  return o;
}
export function t16(t: TiffView, rel: number): number {
  const o = tOffset(t, rel, 2);
  return t.le ? le16(t.b, o) : be16(t.b, o);
}
export function t32(t: TiffView, rel: number): number {
  const o = tOffset(t, rel, 4);
  return t.le ? le32(t.b, o) : be32(t.b, o);
}

const TYPE_SIZES = [0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 4];

/** An IFD entry: type, count and where its value lives (relative offset). */
export interface IfdEntry {
  type: number;
  count: number;
  valueAt: number;
}

/** Tag → entry for one IFD, plus the next IFD's offset under the key -1 (as valueAt). */
export function readIfd(t: TiffView, rel: number, strict: boolean): Map<number, IfdEntry> {
  const out = new Map<number, IfdEntry>();
  const count = t16(t, rel);
  // Each entry is 12 bytes; a count that runs past the end is cut to what is there (EXIF) or
  // rejected (a TIFF file needs its IFD).
  const room = Math.floor((t.end - (t.base + rel + 2)) / 12);
  if (count > room && strict) fail("image file directory runs past the end of the file");
  const n = Math.min(count, room);
  for (let i = 0; i < n; i++) {
    const e = rel + 2 + i * 12;
    const tag = t16(t, e);
    const type = t16(t, e + 2);
    const cnt = t32(t, e + 4);
    const size = (TYPE_SIZES[type] ?? 0) * cnt;
    const valueAt = size <= 4 ? e + 8 : t32(t, e + 8);
    if (!out.has(tag)) out.set(tag, { type, count: cnt, valueAt });
  }
  if (count <= room) {
    const nextAt = rel + 2 + count * 12;
    if (t.base + nextAt + 4 <= t.end) {
      out.set(-1, { type: 4, count: 1, valueAt: nextAt });
    }
  }
  return out;
}

/** Element `i` of a BYTE/SHORT/LONG entry, or undefined for other types or out of range. */
export function element(t: TiffView, e: IfdEntry, i: number): number | undefined {
  if (i >= e.count) return undefined;
  switch (e.type) {
    case 1:
      return u8(t.b, tOffset(t, e.valueAt + i, 1));
    case 3:
      return t16(t, e.valueAt + i * 2);
    case 4:
    case 13:
      return t32(t, e.valueAt + i * 4);
    default:
      return undefined;
  }
}

export function scalar(t: TiffView, e: IfdEntry): number | undefined {
  return element(t, e, 0);
}

/** A TIFF Orientation value as EXIF defines it (1..8), or 1 for anything else. */
export function validOrientation(o: number | undefined): number {
  return o !== undefined && o >= 1 && o <= 8 ? o : 1;
}

/** "Exif\0\0" at b[start] with room for a TIFF header after it (JPEG APP1; some WebP EXIF chunks). */
export function isExifHeader(b: Uint8Array, start: number, end: number): boolean {
  return (
    end - start >= 14 &&
    b[start] === 0x45 &&
    b[start + 1] === 0x78 &&
    b[start + 2] === 0x69 &&
    b[start + 3] === 0x66 &&
    b[start + 4] === 0 &&
    b[start + 5] === 0
  );
}

/**
 * Orientation (tag 0x0112) from the first IFD of an EXIF TIFF block in [start, end). Broken EXIF
 * never rejects an image (decoders ignore it too): anything unreadable means 1.
 */
export function exifOrientation(b: Uint8Array, start: number, end: number): number {
  try {
    const tiff = tiffView(b, start, end);
    if (tiff === undefined) return 1;
    const ifd = readIfd(tiff, tiff.firstIfd, false);
    const value = ifd.get(0x0112);
    return validOrientation(value === undefined ? undefined : scalar(tiff, value));
  } catch (err) {
    if (err instanceof ImageHeaderError) return 1;
    throw err;
  }
}
