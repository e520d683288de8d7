/** PNG bytes in; IHDR's size, alpha (colour type or tRNS), APNG frame count and eXIf orientation out, with the chunks walked to IEND for truncation. */
import { be32, fail, fourcc, fourccAt } from "../../imaging/bytes.ts";
import { exifOrientation } from "../../imaging/exif.ts";
import { IDAT, IEND, IHDR, MAX_PNG_CHUNKS } from "../../imaging/png/decode.ts";
import type { Parsed } from "./header.ts";

const ACTL = fourcc("acTL");
const TRNS = fourcc("tRNS");
const EXIF_PNG = fourcc("eXIf");

export function parsePng(b: Uint8Array): Parsed {
  if (b.length < 33) fail("file ends before the IHDR chunk");
  if (be32(b, 8) !== 13 || fourccAt(b, 12) !== IHDR) fail("IHDR chunk missing");
  if (crc32(b, 12, 29) !== be32(b, 29)) fail("IHDR checksum mismatch");
  const width = be32(b, 16);
  const height = be32(b, 20);
  if (width > 0x7fffffff || height > 0x7fffffff) fail("IHDR dimension out of range");
  const colorType = b[25]!;
  const header: Parsed = {
    width,
    height,
    orientation: 1,
    hasAlpha: colorType === 4 || colorType === 6,
  };

  // Walk the chunks to IEND: cheap (one step per chunk) and exact about truncation. Data after
  // IEND is accepted, like data after a JPEG's EOI.
  let p = 33;
  let sawIdat = false;
  let sawExif = false;
  let complete = false;
  for (let n = 0; n < MAX_PNG_CHUNKS; n++) {
    if (p + 12 > b.length) break;
    const length = be32(b, p);
    const type = fourccAt(b, p + 4);
    if (length > 0x7fffffff) {
      header.problem = "invalid chunk length";
      return header;
    }
    const data = p + 8;
    const next = data + length + 4;
    if (next > b.length) break;
    if (type === IEND) {
      complete = true;
      break;
    }
    if (type === IDAT) sawIdat = true;
    else if (type === TRNS) header.hasAlpha = true;
    else if (type === ACTL && length >= 8) header.frames = be32(b, data);
    else if (type === EXIF_PNG && !sawExif) {
      sawExif = true;
      header.orientation = exifOrientation(b, data, data + length);
    }
    p = next;
  }
  if (!complete) header.problem = "no IEND chunk (truncated)";
  else if (!sawIdat) header.problem = "no image data (IDAT)";
  return header;
}

let crcTable: Uint32Array | undefined;

/** CRC-32 (PNG) of b[from, to). */
function crc32(b: Uint8Array, from: number, to: number): number {
  if (crcTable === undefined) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = from; i < to; i++) c = crcTable[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
