/** The one JPEG marker-segment walker: JPEG bytes in; the header segments before the first scan, in file order, and how the header ended. Never throws, never reads out of bounds. */

/** One marker segment with a length field. */
export interface JpegSegment {
  readonly marker: number;
  /** First payload byte (after the length field); the marker itself sits at start - 4. */
  readonly start: number;
  /** One past the last payload byte. */
  readonly end: number;
}

/** Why the walk stopped. Callers decide what each means for them (a 422, "not plain", "stop quietly"). */
export type JpegHeaderEnd =
  /** Not a JPEG: fewer than 4 bytes or no FF D8. */
  | { readonly kind: "no-soi" }
  /** Start of scan: its length field (not checked here) at `lengthAt`, entropy-coded data after. */
  | { readonly kind: "scan"; readonly lengthAt: number }
  /** End of image before any scan. */
  | { readonly kind: "eoi" }
  /** The bytes ran out between segments (or, resyncing, the segment cap was reached). */
  | { readonly kind: "exhausted" }
  /** No FF where a marker should be (strict walks only). */
  | { readonly kind: "no-marker" }
  /** The file ends inside a length field (resyncing walks only; strict ones stop at "exhausted"). */
  | { readonly kind: "short-length" }
  /** A length field below 2. */
  | { readonly kind: "bad-length" }
  /** A segment (`marker`) runs past the end of the bytes. */
  | { readonly kind: "overrun"; readonly marker: number };

export interface JpegHeader {
  readonly segments: readonly JpegSegment[];
  readonly end: JpegHeaderEnd;
}

export interface WalkOptions {
  /**
   * Read the header as libjpeg does (validation): skip junk between segments up to the next FF
   * and every marker without a length field (00, TEM, SOI, RST), at most 10,000 steps. Without
   * it the walk is strict (the resizer's and the gpu-node's readers): anything but FF where a
   * marker should be ends it, and only RST markers stand alone.
   */
  readonly resync?: boolean;
}

/** Segments before the first scan; real files have a few dozen. */
const MAX_RESYNC_STEPS = 10_000;

/** SOF0-3, 5-7, 9-11, 13-15: every frame type (DHT C4, JPG C8 and DAC CC are not frames). */
export function isSof(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

function isRst(marker: number): boolean {
  return marker >= 0xd0 && marker <= 0xd7;
}

/** Walks the marker segments from SOI to the first SOS (or EOI, or the first structural error). */
export function jpegSegments(b: Uint8Array, options: WalkOptions = {}): JpegHeader {
  const segments: JpegSegment[] = [];
  const done = (end: JpegHeaderEnd): JpegHeader => ({ segments, end });
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return done({ kind: "no-soi" });
  const n = b.length;
  let p = 2;
  for (let step = 0; ; step++) {
    let marker: number;
    if (options.resync) {
      if (step >= MAX_RESYNC_STEPS || p >= n) return done({ kind: "exhausted" });
      if (b[p] !== 0xff) {
        // Junk between segments: libjpeg skips to the next 0xFF with a warning; so do we.
        const next = b.indexOf(0xff, p);
        if (next < 0) return done({ kind: "exhausted" });
        p = next;
      }
      while (p < n && b[p] === 0xff) p++; // fill bytes
      if (p >= n) return done({ kind: "exhausted" });
      marker = b[p++]!;
      if (marker === 0x00 || marker === 0x01 || marker === 0xd8 || isRst(marker)) continue;
    } else {
      if (p + 4 > n) return done({ kind: "exhausted" });
      if (b[p] !== 0xff) return done({ kind: "no-marker" });
      marker = b[p + 1]!;
      if (marker === 0xff) {
        p++; // fill byte
        continue;
      }
      if (isRst(marker)) {
        p += 2;
        continue;
      }
      p += 2;
    }
    if (marker === 0xd9) return done({ kind: "eoi" });
    if (marker === 0xda) return done({ kind: "scan", lengthAt: p });
    if (p + 2 > n) return done({ kind: "short-length" });
    const length = (b[p]! << 8) | b[p + 1]!;
    if (length < 2) return done({ kind: "bad-length" });
    const end = p + length;
    if (end > n) return done({ kind: "overrun", marker });
    segments.push({ marker, start: p + 2, end });
    p = end;
  }
}
