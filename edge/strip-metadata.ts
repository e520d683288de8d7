/** Removes every metadata segment (APP1..APP15: EXIF, XMP, ICC, maker notes; COM) from a JPEG without decoding it: the last guarantee that nothing personal crosses the WAN. */
import { HttpError } from "./errors.ts";

/** Returns the JPEG with only SOI, APP0 (JFIF) and the image segments; throws 502 on a malformed resizer output. */
export function stripJpegMetadata(jpeg: Uint8Array): Uint8Array {
  const bad = () => new HttpError(502, "bad_gateway", "the resizer produced a malformed JPEG");
  if (jpeg.length < 4 || jpeg[0] !== 0xff || jpeg[1] !== 0xd8) throw bad();
  const keep: Uint8Array[] = [jpeg.subarray(0, 2)];
  let i = 2;
  while (i + 4 <= jpeg.length) {
    if (jpeg[i] !== 0xff) throw bad();
    const marker = jpeg[i + 1]!;
    if (marker === 0xff) {
      i++; // fill byte
      continue;
    }
    const length = (jpeg[i + 2]! << 8) | jpeg[i + 3]!;
    if (length < 2 || i + 2 + length > jpeg.length) throw bad();
    const end = i + 2 + length;
    const isMetadata = (marker >= 0xe1 && marker <= 0xef) || marker === 0xfe;
    if (!isMetadata) keep.push(jpeg.subarray(i, end));
    if (marker === 0xda) {
      // Start of scan: entropy-coded data (and any later segments) to the end.
      keep.push(jpeg.subarray(end));
      break;
    }
    i = end;
  }
  const out = new Uint8Array(keep.reduce((n, k) => n + k.length, 0));
  let o = 0;
  for (const k of keep) {
    out.set(k, o);
    o += k.length;
  }
  return out;
}
