/** WebP (RIFF) bytes in; the VP8/VP8L/VP8X size and alpha, and for VP8X the animation frames and EXIF orientation out. */
import { fail, fourcc, fourccAt, le16, le24, le32, u8 } from "../../imaging/bytes.ts";
import { exifOrientation, isExifHeader } from "../../imaging/exif.ts";
import type { Parsed } from "./header.ts";

export const RIFF = fourcc("RIFF");
export const WEBP = fourcc("WEBP");
const VP8 = fourcc("VP8 ");
const VP8L = fourcc("VP8L");
const VP8X = fourcc("VP8X");
const ANMF = fourcc("ANMF");
const EXIF_WEBP = fourcc("EXIF");
const ALPH = fourcc("ALPH");
const MAX_RIFF_CHUNKS = 1 << 20;

export function parseWebp(b: Uint8Array): Parsed {
  if (b.length < 20 || fourccAt(b, 0) !== RIFF || fourccAt(b, 8) !== WEBP)
    fail("not a RIFF/WEBP file");
  const riffSize = le32(b, 4);
  if (riffSize < 12) fail("bad RIFF size");
  const riffEnd = 8 + riffSize;
  const end = Math.min(riffEnd, b.length);
  const first = fourccAt(b, 12);
  const firstSize = le32(b, 16);
  const d = 20;
  let header: Parsed;
  if (first === VP8) {
    if (le24(b, d) & 1) fail("VP8 bitstream does not start with a key frame");
    if (u8(b, d + 3) !== 0x9d || u8(b, d + 4) !== 0x01 || u8(b, d + 5) !== 0x2a) {
      fail("bad VP8 start code");
    }
    header = {
      width: le16(b, d + 6) & 0x3fff,
      height: le16(b, d + 8) & 0x3fff,
      orientation: 1,
      hasAlpha: false,
    };
  } else if (first === VP8L) {
    if (u8(b, d) !== 0x2f) fail("bad VP8L signature");
    const bits = le32(b, d + 1);
    header = {
      width: (bits & 0x3fff) + 1,
      height: ((bits >>> 14) & 0x3fff) + 1,
      orientation: 1,
      hasAlpha: ((bits >>> 28) & 1) === 1,
    };
  } else if (first === VP8X) {
    if (firstSize < 10) fail("VP8X chunk too short");
    const flags = u8(b, d);
    header = {
      width: le24(b, d + 4) + 1,
      height: le24(b, d + 7) + 1,
      orientation: 1,
      hasAlpha: (flags & 0x10) !== 0,
    };
    walkWebpChunks(b, end, header, (flags & 0x02) !== 0);
  } else {
    fail("no VP8, VP8L or VP8X chunk");
  }
  // Data after the RIFF end is accepted (like data after a JPEG's EOI).
  if (riffEnd > b.length) header.problem = "RIFF size exceeds the body (truncated)";
  else if (d + firstSize > riffEnd) header.problem = "image chunk runs past the RIFF size";
  return header;
}

/** VP8X files: EXIF orientation, frame count, and that some image data exists. */
function walkWebpChunks(b: Uint8Array, end: number, header: Parsed, animated: boolean): void {
  let p = 12;
  let frames = 0;
  let image = false;
  let exifSeen = false;
  for (let n = 0; n < MAX_RIFF_CHUNKS && p + 8 <= end; n++) {
    const type = fourccAt(b, p);
    const size = le32(b, p + 4);
    const data = p + 8;
    if (data + size > end) break; // reported by the RIFF size check, or a bad chunk size
    if (type === ANMF) frames++;
    else if (type === VP8 || type === VP8L) image = true;
    else if (type === ALPH) header.hasAlpha = true;
    else if (type === EXIF_WEBP && !exifSeen) {
      exifSeen = true;
      // Some writers keep JPEG's "Exif\0\0" prefix in the chunk.
      const at = isExifHeader(b, data, data + size) ? data + 6 : data;
      header.orientation = exifOrientation(b, at, data + size);
    }
    p = data + size + (size & 1);
  }
  if (animated) header.frames = frames;
  if (!image && frames === 0) header.problem = "no image data";
}
