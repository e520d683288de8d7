/** TIFF bytes in; the first page's size, orientation and alpha, the page count, and whether its strips or tiles lie inside the file out (the IFD reader is imaging/exif.ts's). */
import { fail, ImageHeaderError } from "../../imaging/bytes.ts";
import {
  element,
  readIfd,
  scalar,
  t16,
  t32,
  tiffView,
  validOrientation,
} from "../../imaging/exif.ts";
import type { Parsed } from "./header.ts";

/** Pages followed along the IFD chain (capped: a loop or a huge chain must stay cheap). */
const MAX_TIFF_PAGES = 1_000;
/** Strips/tiles checked for the truncation test. */
const MAX_TIFF_STRIPS = 1 << 20;

export function parseTiffFile(b: Uint8Array): Parsed {
  const t = tiffView(b, 0, b.length);
  if (t === undefined) fail("bad TIFF header");
  if (t.firstIfd < 8) fail("bad offset to the first image file directory");
  const ifd = readIfd(t, t.firstIfd, true);
  const get = (tag: number) => {
    const e = ifd.get(tag);
    return e === undefined ? undefined : scalar(t, e);
  };
  const width = get(256);
  const height = get(257);
  if (width === undefined || height === undefined) fail("no ImageWidth/ImageLength tag");
  const orientation = validOrientation(get(274));
  const header: Parsed = { width, height, orientation };
  const extra = get(338);
  header.hasAlpha = extra === 1 || extra === 2;

  // Truncation: the first image's strips (or tiles) must lie inside the body.
  const offsets = ifd.get(273) ?? ifd.get(324);
  const counts = ifd.get(279) ?? ifd.get(325);
  if (offsets === undefined || counts === undefined) {
    header.problem = "no strip or tile offsets (no image data)";
  } else {
    const n = Math.min(offsets.count, counts.count, MAX_TIFF_STRIPS);
    try {
      let end = 0;
      for (let i = 0; i < n; i++) {
        end = Math.max(end, (element(t, offsets, i) ?? 0) + (element(t, counts, i) ?? 0));
      }
      if (end > b.length) header.problem = "image data runs past the end of the file";
    } catch (err) {
      if (!(err instanceof ImageHeaderError)) throw err;
      header.problem = "strip or tile table runs past the end of the file";
    }
  }

  // Pages: follow the chain; a broken link ends it (the first page is what gets decoded).
  let pages = 1;
  const seen = new Set<number>([t.firstIfd]);
  let next = ifd.get(-1);
  try {
    while (next !== undefined && pages < MAX_TIFF_PAGES) {
      const at = t32(t, next.valueAt);
      if (at === 0 || seen.has(at)) break;
      seen.add(at);
      const count = t16(t, at);
      pages++;
      const nextAt = at + 2 + count * 12;
      next = t.base + nextAt + 4 <= t.end ? { type: 4, count: 1, valueAt: nextAt } : undefined;
    }
  } catch (err) {
    if (!(err instanceof ImageHeaderError)) throw err;
  }
  if (pages > 1) header.frames = pages;
  return header;
}
