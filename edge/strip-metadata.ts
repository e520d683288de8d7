/** Removes every metadata segment (APP1..APP15: EXIF, XMP, ICC, maker notes; COM) from a JPEG without decoding it: the last guarantee that nothing personal crosses the WAN. */
import { jpegSegments } from "../imaging/jpeg/segments.ts";
import { HttpError } from "./errors.ts";

/** Returns the JPEG with only SOI, APP0 (JFIF) and the image segments; throws 502 on a malformed resizer output. */
export function stripJpegMetadata(jpeg: Uint8Array): Uint8Array {
  const bad = () => new HttpError(502, "bad_gateway", "the resizer produced a malformed JPEG");
  const header = jpegSegments(jpeg);
  const { end } = header;
  // A resizer's JPEG has its scan after the header; running out of bytes first keeps what came.
  if (end.kind !== "scan" && end.kind !== "exhausted") throw bad();
  const keep: Uint8Array[] = [jpeg.subarray(0, 2)];
  for (const s of header.segments) {
    const isMetadata = (s.marker >= 0xe1 && s.marker <= 0xef) || s.marker === 0xfe;
    if (!isMetadata) keep.push(jpeg.subarray(s.start - 4, s.end));
  }
  if (end.kind === "scan") {
    const length = (jpeg[end.lengthAt]! << 8) | jpeg[end.lengthAt + 1]!;
    if (length < 2 || end.lengthAt + length > jpeg.length) throw bad();
    // Start of scan: entropy-coded data (and any later segments) to the end.
    keep.push(jpeg.subarray(end.lengthAt - 2));
  }
  const out = new Uint8Array(keep.reduce((n, k) => n + k.length, 0));
  let o = 0;
  for (const k of keep) {
    out.set(k, o);
    o += k.length;
  }
  return out;
}
