/** JPEG bytes in; the frame size (first SOF), the EXIF orientation (first Exif APP1) and whether the file reaches its end-of-image marker out, from the marker segments as libjpeg reads them. */
import { be16, fail, TRUNCATED } from "../../imaging/bytes.ts";
import { exifOrientation, isExifHeader } from "../../imaging/exif.ts";
import { isSof, jpegSegments } from "../../imaging/jpeg/segments.ts";
import type { Parsed } from "./header.ts";

export function parseJpeg(b: Uint8Array): Parsed {
  const { segments, end } = jpegSegments(b, { resync: true });
  if (end.kind === "no-soi") fail("no JPEG start-of-image marker");
  let width = -1;
  let height = -1;
  let orientation = 1;
  let exifSeen = false;
  for (const { marker, start, end: segmentEnd } of segments) {
    if (isSof(marker) && width < 0) {
      if (segmentEnd - start < 6) fail("frame header (SOF) too short");
      height = be16(b, start + 1);
      width = be16(b, start + 3);
    } else if (marker === 0xe1 && !exifSeen && isExifHeader(b, start, segmentEnd)) {
      exifSeen = true;
      orientation = exifOrientation(b, start + 6, segmentEnd);
    }
  }
  let scanAt = -1;
  if (end.kind === "short-length") fail(TRUNCATED);
  if (end.kind === "bad-length") fail("invalid segment length");
  if (end.kind === "overrun" && width < 0) {
    fail("file ends inside a header segment, before the frame header (SOF)");
  }
  if (end.kind === "scan") {
    if (be16(b, end.lengthAt) < 2) fail("invalid segment length");
    scanAt = end.lengthAt + 2;
  }
  if (width < 0) fail("no frame header (SOF) before the image data or the end of the file");
  const header: Parsed = { width, height, orientation };
  if (scanAt < 0) header.problem = "ends before the image data (no start-of-scan)";
  else if (!hasEoiAfter(b, scanAt)) header.problem = "no end-of-image marker (FF D9)";
  return header;
}

/**
 * Truncation check: an end-of-image marker somewhere after the first scan. The LAST FF D9 is
 * searched from the end, so data after the EOI is accepted: Google/Samsung motion photos append
 * an MP4, cameras append MPF previews, and a JPEG+ZIP polyglot is just a JPEG with trailing bytes.
 * None of it gets further than the resizer, which re-encodes a fresh JPEG from the pixels. A file
 * that ends in FF D9 (nearly all) costs one comparison; otherwise a backward scan (~0.5 ns/byte).
 */
function hasEoiAfter(b: Uint8Array, from: number): boolean {
  const last = b.length - 1;
  if (last > from && b[last] === 0xd9 && b[last - 1] === 0xff) return true;
  // Two bytes per step: one byte of every FF D9 pair lands on a checked position. A plain loop
  // costs the same on any content; lastIndexOf() per candidate was 15x slower on a hostile body
  // of nothing but D9 bytes.
  for (let i = last; i > from; i -= 2) {
    const c = b[i]!;
    if (c === 0xd9) {
      if (b[i - 1] === 0xff && i - 1 >= from) return true;
    } else if (c === 0xff && i < last && b[i + 1] === 0xd9) {
      return true;
    }
  }
  return false;
}
