/** Reads what the resizer needs from a JPEG's marker segments without decoding: the EXIF orientation, the embedded ICC profile and the number of scans. Never throws; bounds-checked throughout. */
import { exifOrientation, isExifHeader } from "../exif.ts";
import { type JpegSegment, jpegSegments } from "./segments.ts";

/**
 * The header segments up to the first SOS (or EOI). A strict walk that ends quietly at the first
 * structural error: what follows cannot be trusted, and the decoder will report it.
 */
function segments(jpeg: Uint8Array): readonly JpegSegment[] {
  return jpegSegments(jpeg).segments;
}

function startsWith(jpeg: Uint8Array, at: number, end: number, tag: readonly number[]): boolean {
  if (end - at < tag.length) return false;
  for (let i = 0; i < tag.length; i++) if (jpeg[at + i] !== tag[i]) return false;
  return true;
}

/** "ICC_PROFILE\0" */
const ICC_PROFILE = [0x49, 0x43, 0x43, 0x5f, 0x50, 0x52, 0x4f, 0x46, 0x49, 0x4c, 0x45, 0] as const;

/**
 * EXIF orientation (1..8) from the first APP1 "Exif" segment, read as validation reads it
 * (imaging/exif.ts); 1 when absent or malformed.
 */
export function readExifOrientation(jpeg: Uint8Array): number {
  for (const s of segments(jpeg)) {
    if (s.marker === 0xe1 && isExifHeader(jpeg, s.start, s.end)) {
      return exifOrientation(jpeg, s.start + 6, s.end);
    }
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
