/** Reads what the resizer needs from a JPEG's marker segments without decoding: the EXIF orientation, the embedded ICC profile and the number of scans. Never throws; bounds-checked throughout. */

interface Segment {
  readonly marker: number;
  /** First payload byte (after the length field). */
  readonly start: number;
  /** One past the last payload byte. */
  readonly end: number;
}

/**
 * The header segments up to the first SOS (or EOI), in file order. Stops quietly at the first
 * structural error: what follows cannot be trusted, and the decoder will report it.
 */
function* segments(jpeg: Uint8Array): Generator<Segment> {
  if (jpeg.length < 4 || jpeg[0] !== 0xff || jpeg[1] !== 0xd8) return;
  let p = 2;
  while (p + 4 <= jpeg.length) {
    if (jpeg[p] !== 0xff) return;
    const marker = jpeg[p + 1]!;
    if (marker === 0xff) {
      p++; // fill byte
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) return; // EOI / SOS: no more header segments
    if (marker >= 0xd0 && marker <= 0xd7) {
      p += 2;
      continue;
    }
    const len = (jpeg[p + 2]! << 8) | jpeg[p + 3]!;
    if (len < 2 || p + 2 + len > jpeg.length) return;
    yield { marker, start: p + 4, end: p + 2 + len };
    p += 2 + len;
  }
}

function startsWith(jpeg: Uint8Array, at: number, end: number, tag: readonly number[]): boolean {
  if (end - at < tag.length) return false;
  for (let i = 0; i < tag.length; i++) if (jpeg[at + i] !== tag[i]) return false;
  return true;
}

/** "Exif\0\0" */
const EXIF = [0x45, 0x78, 0x69, 0x66, 0, 0] as const;
/** "ICC_PROFILE\0" */
const ICC_PROFILE = [0x49, 0x43, 0x43, 0x5f, 0x50, 0x52, 0x4f, 0x46, 0x49, 0x4c, 0x45, 0] as const;

/** EXIF orientation (1..8) from the first APP1 "Exif" segment; 1 when absent or malformed. */
export function readExifOrientation(jpeg: Uint8Array): number {
  for (const s of segments(jpeg)) {
    if (s.marker !== 0xe1 || s.end - s.start < 14 || !startsWith(jpeg, s.start, s.end, EXIF)) {
      continue;
    }
    const o = tiffOrientation(jpeg.subarray(s.start + 6, s.end));
    if (o !== undefined) return o;
  }
  return 1;
}

/**
 * The ICC profile carried in APP2 "ICC_PROFILE\0" segments: each holds a 1-based sequence number
 * and the chunk count, then its part of the profile. Reassembled in sequence order; "malformed"
 * when the chunks disagree (count, duplicates, gaps), as libjpeg's jpeg_read_icc_profile rejects
 * them; undefined when there is none. A single chunk is returned as a view, not copied.
 */
export function readIccProfile(jpeg: Uint8Array): Uint8Array | "malformed" | undefined {
  const chunks: Uint8Array[] = [];
  let count = 0;
  let seen = 0;
  for (const s of segments(jpeg)) {
    if (s.marker !== 0xe2 || !startsWith(jpeg, s.start, s.end, ICC_PROFILE)) continue;
    if (s.end - s.start < 14) return "malformed";
    const seq = jpeg[s.start + 12]!;
    const n = jpeg[s.start + 13]!;
    if (n === 0 || seq === 0 || seq > n || (count !== 0 && n !== count) || chunks[seq]) {
      return "malformed";
    }
    count = n;
    chunks[seq] = jpeg.subarray(s.start + 14, s.end);
    seen++;
  }
  if (seen === 0) return undefined;
  if (seen !== count) return "malformed";
  if (count === 1) return chunks[1]!;
  let total = 0;
  for (let i = 1; i <= count; i++) total += chunks[i]!.length;
  const out = new Uint8Array(total);
  for (let i = 1, at = 0; i <= count; at += chunks[i]!.length, i++) out.set(chunks[i]!, at);
  return out;
}

function tiffOrientation(t: Uint8Array): number | undefined {
  if (t.length < 8) return undefined;
  const little = t[0] === 0x49 && t[1] === 0x49;
  if (!little && !(t[0] === 0x4d && t[1] === 0x4d)) return undefined;
  const u16 = (o: number) => (little ? t[o]! | (t[o + 1]! << 8) : (t[o]! << 8) | t[o + 1]!);
  const u32 = (o: number) =>
    little
      ? (t[o]! | (t[o + 1]! << 8) | (t[o + 2]! << 16) | (t[o + 3]! << 24)) >>> 0
      : ((t[o]! << 24) | (t[o + 1]! << 16) | (t[o + 2]! << 8) | t[o + 3]!) >>> 0;
  if (u16(2) !== 42) return undefined;
  const ifd = u32(4);
  if (ifd + 2 > t.length) return undefined;
  const entries = u16(ifd);
  for (let e = 0; e < entries; e++) {
    const at = ifd + 2 + e * 12;
    if (at + 12 > t.length) return undefined;
    if (u16(at) !== 0x0112) continue;
    const type = u16(at + 2);
    // SHORT as it should be; some writers use LONG.
    const v = type === 3 ? u16(at + 8) : type === 4 ? u32(at + 8) : 0;
    return v >= 1 && v <= 8 ? v : 1;
  }
  return undefined;
}

/**
 * Counts SOS markers (FF DA) in the whole stream. Inside entropy-coded data an FF is always
 * followed by 00 or a restart marker, so every FF DA is a real scan header. Used to refuse
 * "scan bombs": progressive files with thousands of tiny scans that keep a decoder busy.
 */
export function countScans(jpeg: Uint8Array, stopAt: number): number {
  let n = 0;
  let p = jpeg.indexOf(0xff);
  while (p >= 0 && p + 1 < jpeg.length) {
    if (jpeg[p + 1] === 0xda && ++n >= stopAt) return n;
    p = jpeg.indexOf(0xff, p + 1);
  }
  return n;
}
