/** GIF bytes in; the canvas (grown to every frame's extent), frame count, transparency and whether the trailer is there out. */
import { fail, le16 } from "../../imaging/bytes.ts";
import type { Parsed } from "./header.ts";

/** Blocks walked; each advances at least one byte, so the file length bounds it anyway. */
const MAX_GIF_STEPS = 1 << 24;

export function parseGif(b: Uint8Array): Parsed {
  if (b.length < 13) fail("file ends before the logical screen descriptor");
  let width = le16(b, 6);
  let height = le16(b, 8);
  const flags = b[10]!;
  let p = 13 + (flags & 0x80 ? 3 << ((flags & 7) + 1) : 0);
  let frames = 0;
  let hasAlpha = false;
  let complete = false;
  let problem: string | undefined;
  // Each frame may extend the canvas (decoders grow it), so the bomb check uses the union.
  const skipSubBlocks = (from: number): number => {
    let q = from;
    for (let n = 0; n < MAX_GIF_STEPS && q < b.length; n++) {
      const size = b[q]!;
      q += 1 + size;
      if (size === 0) return q;
    }
    return -1;
  };
  for (let n = 0; n < MAX_GIF_STEPS; n++) {
    if (p >= b.length) break;
    const introducer = b[p]!;
    if (introducer === 0x3b) {
      complete = true;
      break;
    }
    if (introducer === 0x21) {
      if (p + 2 > b.length) break;
      // Graphic control extension with the transparency flag.
      if (b[p + 1] === 0xf9 && p + 4 <= b.length && (b[p + 3]! & 1) === 1) hasAlpha = true;
      p = skipSubBlocks(p + 2);
      if (p < 0) break;
    } else if (introducer === 0x2c) {
      if (p + 10 > b.length) break;
      const right = le16(b, p + 1) + le16(b, p + 5);
      const bottom = le16(b, p + 3) + le16(b, p + 7);
      if (right > width) width = right;
      if (bottom > height) height = bottom;
      const local = b[p + 9]!;
      p += 10 + (local & 0x80 ? 3 << ((local & 7) + 1) : 0);
      p = skipSubBlocks(p + 1); // after the LZW minimum code size
      if (p < 0) break;
      frames++;
    } else {
      // Junk where a block should start: browsers stop here and show what they have.
      if (frames > 0) complete = true;
      else problem = "no image before unrecognised data";
      break;
    }
  }
  if (!complete && problem === undefined) problem = "no trailer (0x3B): truncated";
  const header: Parsed = { width, height, orientation: 1, frames, hasAlpha };
  if (problem !== undefined) header.problem = problem;
  return header;
}
