/** Reads what the resizer needs from a JPEG's marker segments without decoding: the EXIF orientation and the number of scans. Never throws; bounds-checked throughout. */

/** EXIF orientation (1..8) from the first APP1 "Exif" segment; 1 when absent or malformed. */
export function readExifOrientation(jpeg: Uint8Array): number {
  if (jpeg.length < 4 || jpeg[0] !== 0xff || jpeg[1] !== 0xd8) return 1;
  let p = 2;
  while (p + 4 <= jpeg.length) {
    if (jpeg[p] !== 0xff) return 1;
    const marker = jpeg[p + 1]!;
    if (marker === 0xff) {
      p++; // fill byte
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) return 1; // EOI / SOS: no more header segments
    if (marker >= 0xd0 && marker <= 0xd7) {
      p += 2;
      continue;
    }
    const len = (jpeg[p + 2]! << 8) | jpeg[p + 3]!;
    if (len < 2 || p + 2 + len > jpeg.length) return 1;
    if (marker === 0xe1 && len >= 16) {
      const s = p + 4;
      // "Exif\0\0"
      if (
        jpeg[s] === 0x45 &&
        jpeg[s + 1] === 0x78 &&
        jpeg[s + 2] === 0x69 &&
        jpeg[s + 3] === 0x66 &&
        jpeg[s + 4] === 0 &&
        jpeg[s + 5] === 0
      ) {
        const o = tiffOrientation(jpeg.subarray(s + 6, p + 2 + len));
        if (o !== undefined) return o;
      }
    }
    p += 2 + len;
  }
  return 1;
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
