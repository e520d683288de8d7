/** Validation before any decode: upload bytes in; the format (from magic bytes), stored and oriented size, or an HttpError (413/415/422) naming the image. */

// Headers are parsed by hand on purpose. The npm parsers that run without Node (image-size 2.x on
// a Uint8Array, probe-image-size's sync path) give dimensions only: no truncation check, no
// HEIF primary item (pitm/ipma) or irot/imir, and they throw whatever they hit on hostile input.
// Walking the structure ourselves answers all of it in one pass, bounded: every read goes through
// the bounds-checked helpers below (a hostile header raises ImageHeaderError, never a RangeError),
// every loop advances by at least one byte and has an iteration cap.

import {
  be16,
  be32,
  fail,
  fourcc,
  fourccAt,
  ImageHeaderError,
  latin1,
  le16,
  le24,
  le32,
  TRUNCATED,
  u8,
} from "../../imaging/bytes.ts";
import {
  element,
  exifOrientation,
  isExifHeader,
  readIfd,
  scalar,
  t16,
  t32,
  tiffView,
  validOrientation,
} from "../../imaging/exif.ts";
import { isSof, jpegSegments } from "../../imaging/jpeg/segments.ts";
import { HttpError } from "../errors.ts";

export { ImageHeaderError };

export type ImageFormat = "jpeg" | "png" | "webp" | "gif" | "tiff" | "heic" | "avif";

export interface ImageHeader {
  /** As stored (before orientation). */
  width: number;
  height: number;
  /** EXIF orientation 1..8 (1 when absent or unreadable); HEIC/AVIF: irot/imir mapped to it. */
  orientation: number;
  /** Animated GIF/WebP/PNG frame count, TIFF page count; absent for single-image formats. */
  frames?: number;
  hasAlpha?: boolean;
}

export interface ValidationLimits {
  readonly maxBytes: number;
  readonly maxPixels: number;
}

export interface ValidatedImage {
  readonly format: ImageFormat;
  /** As stored (before orientation). */
  readonly width: number;
  readonly height: number;
  readonly orientation: number;
  /** As displayed: width/height swapped for orientations 5..8. */
  readonly orientedWidth: number;
  readonly orientedHeight: number;
  readonly frames?: number;
  readonly hasAlpha?: boolean;
  readonly bytes: Uint8Array;
}

const FORMAT_NAMES: Record<ImageFormat, string> = {
  jpeg: "JPEG",
  png: "PNG",
  webp: "WebP",
  gif: "GIF",
  tiff: "TIFF",
  heic: "HEIC",
  avif: "AVIF",
};

/**
 * Checks, in this order and before any decode: not empty (422), size (413), magic bytes (415),
 * header readable (422), no zero dimension (422), pixel count (413: decompression bombs are
 * refused from the header alone), then a cheap truncation check (422). Every message starts with
 * `label` and describes, never echoes, the bytes.
 */
export function validateImage(
  bytes: Uint8Array,
  limits: ValidationLimits,
  label: string,
): ValidatedImage {
  if (bytes.length === 0) {
    throw new HttpError(422, "unprocessable_image", `${label}: empty image (0 bytes)`);
  }
  if (bytes.length > limits.maxBytes) {
    throw new HttpError(
      413,
      "payload_too_large",
      `${label}: ${bytes.length} bytes is over the limit of ${limits.maxBytes} bytes`,
    );
  }
  const format = sniffFormat(bytes);
  if (format === undefined) {
    throw new HttpError(415, "unsupported_media_type", `${label}: ${describeUnknown(bytes)}`);
  }
  const name = FORMAT_NAMES[format];
  let parsed: Parsed;
  try {
    parsed = parse(bytes, format);
  } catch (err) {
    // Only ImageHeaderError is expected; anything else would be a parser bug, and a hostile
    // upload must still get a 422 rather than a 500.
    const reason = err instanceof ImageHeaderError ? err.message : "malformed header";
    throw new HttpError(
      422,
      "unprocessable_image",
      `${label}: unreadable ${name} header: ${reason}`,
      {
        cause: err,
      },
    );
  }
  const { width, height, orientation } = parsed;
  if (width === 0 || height === 0) {
    throw new HttpError(
      422,
      "unprocessable_image",
      `${label}: ${name} header declares a zero dimension (${width}x${height})`,
    );
  }
  if (width * height > limits.maxPixels) {
    throw new HttpError(
      413,
      "payload_too_large",
      `${label}: ${width}x${height} is ${megapixels(width * height)} MP, over the pixel limit of ` +
        `${megapixels(limits.maxPixels)} MP (refused without decoding: possible decompression bomb)`,
    );
  }
  if (parsed.problem !== undefined) {
    throw new HttpError(
      422,
      "unprocessable_image",
      `${label}: corrupt or truncated ${name}: ${parsed.problem}`,
    );
  }
  const swap = orientation >= 5;
  const out: ValidatedImage = {
    format,
    width,
    height,
    orientation,
    orientedWidth: swap ? height : width,
    orientedHeight: swap ? width : height,
    bytes,
    ...(parsed.frames !== undefined ? { frames: parsed.frames } : {}),
    ...(parsed.hasAlpha !== undefined ? { hasAlpha: parsed.hasAlpha } : {}),
  };
  return out;
}

function megapixels(pixels: number): string {
  return (pixels / 1e6).toFixed(pixels < 1e7 ? 2 : 1);
}

// ---------------------------------------------------------------------------------------------
// Magic bytes

/** The format from magic bytes alone (for ISO-BMFF, the `ftyp` brands); undefined if none of ours. */
export function sniffFormat(bytes: Uint8Array): ImageFormat | undefined {
  const b = bytes;
  if (b.length < 3) return undefined;
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "jpeg";
  if (b.length < 8) return undefined;
  if (startsWith(b, 0, PNG_SIGNATURE)) return "png";
  if (startsWith(b, 0, GIF87A) || startsWith(b, 0, GIF89A)) return "gif";
  if (b[0] === 0x49 && b[1] === 0x49 && b[2] === 0x2a && b[3] === 0x00) return "tiff";
  if (b[0] === 0x4d && b[1] === 0x4d && b[2] === 0x00 && b[3] === 0x2a) return "tiff";
  if (b.length >= 12 && fourccAt(b, 0) === RIFF && fourccAt(b, 8) === WEBP) return "webp";
  if (b.length >= 12 && fourccAt(b, 4) === FTYP) return sniffHeif(b);
  return undefined;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const GIF87A = [0x47, 0x49, 0x46, 0x38, 0x37, 0x61];
const GIF89A = [0x47, 0x49, 0x46, 0x38, 0x39, 0x61];

function startsWith(b: Uint8Array, at: number, sig: readonly number[]): boolean {
  if (at + sig.length > b.length) return false;
  for (let i = 0; i < sig.length; i++) if (b[at + i] !== sig[i]) return false;
  return true;
}

const RIFF = fourcc("RIFF");
const WEBP = fourcc("WEBP");
const FTYP = fourcc("ftyp");

const HEIC_BRANDS = new Set(["heic", "heix", "heim", "heis", "hevc", "hevx"].map(fourcc));
const AVIF_BRANDS = new Set(["avif", "avis"].map(fourcc));
/** Generic HEIF brands: the coded item type decides. */
const HEIF_BRANDS = new Set(["mif1", "msf1", "miaf", "mif2"].map(fourcc));

function sniffHeif(b: Uint8Array): ImageFormat | undefined {
  const size = fourccAt(b, 0);
  if (size < 16 || size > 4096) return undefined;
  const end = Math.min(size, b.length);
  const major = fourccAt(b, 8);
  if (AVIF_BRANDS.has(major)) return "avif";
  if (HEIC_BRANDS.has(major)) return "heic";
  let heif = HEIF_BRANDS.has(major);
  let heic = false;
  for (let o = 16; o + 4 <= end; o += 4) {
    const brand = fourccAt(b, o);
    if (AVIF_BRANDS.has(brand)) return "avif";
    if (HEIC_BRANDS.has(brand)) heic = true;
    else if (HEIF_BRANDS.has(brand)) heif = true;
  }
  if (heic) return "heic";
  if (!heif) return undefined; // MP4/MOV video, CR3 raw, JPEG 2000 ...: not ours
  // Only a generic brand: an AV1-coded primary item makes it AVIF. If the meta box can't be read
  // here, call it HEIC and let readHeader give the precise 422.
  try {
    return parseHeif(b).av1 ? "avif" : "heic";
  } catch {
    return "heic";
  }
}

/** For the 415 message: what the bytes look like, without quoting them. */
function describeUnknown(b: Uint8Array): string {
  const head = latin1(b, 0, Math.min(b.length, 1024));
  const trimmed = head.replace(/^\uFEFF|^\xEF\xBB\xBF/, "").trimStart();
  const lower = trimmed.slice(0, 512).toLowerCase();
  const unsupported = (what: string) =>
    `unsupported image format: ${what} (accepted: JPEG, PNG, WebP, GIF, TIFF, HEIC, AVIF)`;
  if (head.startsWith("%PDF")) return "not an image: looks like a PDF document";
  if (head.startsWith("PK\x03\x04") || head.startsWith("PK\x05\x06")) {
    return "not an image: looks like a ZIP archive (or an Office document)";
  }
  if (head.startsWith("\x1f\x8b")) return "not an image: looks like gzip-compressed data";
  if (head.startsWith("BM") && b.length >= 26) return unsupported("BMP");
  if (head.startsWith("\xff\x0a") || head.startsWith("\x00\x00\x00\x0cJXL ")) {
    return unsupported("JPEG XL");
  }
  if (head.startsWith("\x00\x00\x00\x0cjP  ")) return unsupported("JPEG 2000");
  if (head.startsWith("8BPS")) return unsupported("Photoshop PSD");
  if (head.startsWith("II+\x00") || head.startsWith("MM\x00+")) return unsupported("BigTIFF");
  if (b.length >= 12 && head.slice(4, 8) === "ftyp") {
    return "not an image: an ISO-BMFF file without a HEIC/AVIF brand (a video?)";
  }
  if (lower.includes("<svg")) {
    return "not an image: looks like SVG (vector graphics are not accepted; send a raster photo)";
  }
  if (lower.startsWith("<!doctype html") || lower.startsWith("<html")) {
    return "not an image: looks like an HTML document";
  }
  if (lower.startsWith("data:image/")) {
    return "not an image: a data: URI; send the raw bytes (or use /embed/base64)";
  }
  if (/^(\/9j\/|ivborw0kggo|r0lgod|uklgr)/.test(lower)) {
    return "not an image: base64 text of an image; send the raw bytes (or use /embed/base64)";
  }
  if (isText(b)) return "not an image: looks like text";
  if (b.length < 8) return "not an image: too short to identify";
  return "not an image: unrecognised binary data";
}

function isText(b: Uint8Array): boolean {
  const n = Math.min(b.length, 512);
  for (let i = 0; i < n; i++) {
    const c = b[i]!;
    // Printable ASCII, tab/CR/LF, or any byte of a UTF-8 sequence (>= 0x80).
    if (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return false;
    if (c === 0x7f) return false;
  }
  return n > 0;
}

// ---------------------------------------------------------------------------------------------
// Header parsing

/** Reads the header without decoding; throws ImageHeaderError when it is unreadable. */
export function readHeader(bytes: Uint8Array, format: ImageFormat): ImageHeader {
  const { problem: _ignored, ...header } = parse(bytes, format);
  return header;
}

/** A header plus, when the body is visibly incomplete, why (reported only after the bomb check). */
interface Parsed extends ImageHeader {
  problem?: string;
}

function parse(b: Uint8Array, format: ImageFormat): Parsed {
  switch (format) {
    case "jpeg":
      return parseJpeg(b);
    case "png":
      return parsePng(b);
    case "webp":
      return parseWebp(b);
    case "gif":
      return parseGif(b);
    case "tiff":
      return parseTiffFile(b);
    case "heic":
    case "avif": {
      const { av1: _av1, ...header } = parseHeif(b);
      return header;
    }
  }
}

// --- JPEG ------------------------------------------------------------------------------------

function parseJpeg(b: Uint8Array): Parsed {
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

// --- TIFF (the structures are imaging/exif.ts's) ------------------------------------------

/** Pages followed along the IFD chain (capped: a loop or a huge chain must stay cheap). */
const MAX_TIFF_PAGES = 1_000;
/** Strips/tiles checked for the truncation test. */
const MAX_TIFF_STRIPS = 1 << 20;

function parseTiffFile(b: Uint8Array): Parsed {
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

// --- PNG -------------------------------------------------------------------------------------

const IHDR = fourcc("IHDR");
const IDAT = fourcc("IDAT");
const IEND = fourcc("IEND");
const ACTL = fourcc("acTL");
const TRNS = fourcc("tRNS");
const EXIF_PNG = fourcc("eXIf");
const MAX_PNG_CHUNKS = 1 << 20;

function parsePng(b: Uint8Array): Parsed {
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

// --- WebP ------------------------------------------------------------------------------------

const VP8 = fourcc("VP8 ");
const VP8L = fourcc("VP8L");
const VP8X = fourcc("VP8X");
const ANMF = fourcc("ANMF");
const EXIF_WEBP = fourcc("EXIF");
const ALPH = fourcc("ALPH");
const MAX_RIFF_CHUNKS = 1 << 20;

function parseWebp(b: Uint8Array): Parsed {
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

// --- GIF -------------------------------------------------------------------------------------

/** Blocks walked; each advances at least one byte, so the file length bounds it anyway. */
const MAX_GIF_STEPS = 1 << 24;

function parseGif(b: Uint8Array): Parsed {
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

// --- HEIC / AVIF (ISO-BMFF) ------------------------------------------------------------------

const META = fourcc("meta");
const PITM = fourcc("pitm");
const IINF = fourcc("iinf");
const INFE = fourcc("infe");
const IPRP = fourcc("iprp");
const IPCO = fourcc("ipco");
const IPMA = fourcc("ipma");
const ISPE = fourcc("ispe");
const IROT = fourcc("irot");
const IMIR = fourcc("imir");
const AUXC = fourcc("auxC");
const AV01 = fourcc("av01");
const MAX_BOXES = 10_000;
const MAX_ITEMS = 100_000;

interface Box {
  type: number;
  /** Payload start (after size/type/largesize). */
  start: number;
  end: number;
}

/**
 * The boxes in [from, to). A box running past `to` ends the list with `overrun` set (at the top
 * level that means a truncated file).
 */
function childBoxes(b: Uint8Array, from: number, to: number): { boxes: Box[]; overrun: boolean } {
  const boxes: Box[] = [];
  let p = from;
  for (let n = 0; n < MAX_BOXES && p + 8 <= to; n++) {
    let size = be32(b, p);
    const type = fourccAt(b, p + 4);
    let start = p + 8;
    if (size === 1) {
      const hi = be32(b, p + 8);
      const lo = be32(b, p + 12);
      size = hi * 0x100000000 + lo;
      start = p + 16;
    } else if (size === 0) {
      size = to - p; // to the end
    }
    if (size < start - p) fail("invalid box size");
    const end = p + size;
    if (end > to) {
      boxes.push({ type, start, end: to });
      return { boxes, overrun: true };
    }
    boxes.push({ type, start, end });
    p = end;
  }
  return { boxes, overrun: false };
}

// EXIF orientation as a 2x2 matrix on (x, y), y pointing down: what to do to the stored image to
// display it. Index = orientation.
const ORIENTATION_MATRICES: readonly (readonly number[])[] = [
  [],
  [1, 0, 0, 1],
  [-1, 0, 0, 1], // mirror left-right
  [-1, 0, 0, -1],
  [1, 0, 0, -1], // mirror top-bottom
  [0, 1, 1, 0], // transpose
  [0, -1, 1, 0], // rotate 90 clockwise
  [0, -1, -1, 0], // transverse
  [0, 1, -1, 0], // rotate 90 anticlockwise
];

function compose(m: readonly number[], then: readonly number[]): number[] {
  return [
    then[0]! * m[0]! + then[1]! * m[2]!,
    then[0]! * m[1]! + then[1]! * m[3]!,
    then[2]! * m[0]! + then[3]! * m[2]!,
    then[2]! * m[1]! + then[3]! * m[3]!,
  ];
}

function orientationOf(m: readonly number[]): number {
  for (let o = 1; o <= 8; o++) {
    const r = ORIENTATION_MATRICES[o]!;
    if (r[0] === m[0] && r[1] === m[1] && r[2] === m[2] && r[3] === m[3]) return o;
  }
  return 1;
}

/**
 * `meta` → `pitm` (primary item) → `iprp`/`ipma` → its `ispe` (stored size), and its `irot`/
 * `imir` folded into an EXIF orientation, in association order. HEIF decoders (libheif, the
 * Images binding) apply these transforms themselves, so `orientation` here tells the display size
 * (orientedWidth/Height); the EXIF block inside a HEIC is informative only and ignored. `imir`
 * follows ISO/IEC 23008-12:2022 (axis 0 = top-bottom flip, as libheif and libavif read it).
 * Without a usable pitm/ipma, the largest `ispe` stands in (a grid's full size is its largest).
 */
function parseHeif(b: Uint8Array): Parsed & { av1: boolean } {
  const top = childBoxes(b, 0, b.length);
  const meta = top.boxes.find((box) => box.type === META);
  if (meta === undefined) fail(top.overrun ? TRUNCATED : "no meta box");
  if (top.overrun && top.boxes.at(-1) === meta) fail("meta box runs past the end of the file");
  const children = childBoxes(b, meta.start + 4, meta.end).boxes; // FullBox: skip version/flags
  let primary = -1;
  const itemTypes = new Map<number, number>();
  const properties: Box[] = [];
  let associations: number[] | undefined;
  for (const box of children) {
    if (box.type === PITM) {
      primary = u8(b, box.start) === 0 ? be16(b, box.start + 4) : be32(b, box.start + 4);
    } else if (box.type === IINF) {
      const v = u8(b, box.start);
      const first = box.start + (v === 0 ? 6 : 8);
      for (const infe of childBoxes(b, first, box.end).boxes) {
        if (infe.type !== INFE || infe.start + 4 > infe.end) continue;
        const iv = u8(b, infe.start);
        if (iv < 2) continue;
        const id = iv === 2 ? be16(b, infe.start + 4) : be32(b, infe.start + 4);
        const typeAt = infe.start + (iv === 2 ? 8 : 10);
        if (typeAt + 4 <= infe.end) itemTypes.set(id, be32(b, typeAt));
      }
    } else if (box.type === IPRP) {
      const iprp = childBoxes(b, box.start, box.end).boxes;
      const ipco = iprp.find((x) => x.type === IPCO);
      if (ipco) properties.push(...childBoxes(b, ipco.start, ipco.end).boxes);
      const ipma = iprp.find((x) => x.type === IPMA);
      if (ipma && primary >= 0) associations = primaryAssociations(b, ipma, primary);
    }
  }
  // pitm normally precedes iprp, but nothing requires it: look again once both are known.
  if (associations === undefined && primary >= 0) {
    for (const box of children) {
      if (box.type !== IPRP) continue;
      const ipma = childBoxes(b, box.start, box.end).boxes.find((x) => x.type === IPMA);
      if (ipma) associations = primaryAssociations(b, ipma, primary);
    }
  }

  let width = -1;
  let height = -1;
  let matrix: number[] = [1, 0, 0, 1];
  for (const index of associations ?? []) {
    const prop = properties[index - 1];
    if (prop === undefined) continue;
    if (prop.type === ISPE && width < 0 && prop.start + 12 <= prop.end) {
      width = be32(b, prop.start + 4);
      height = be32(b, prop.start + 8);
    } else if (prop.type === IROT && prop.start < prop.end) {
      const quarterTurnsAnticlockwise = u8(b, prop.start) & 3;
      for (let i = 0; i < quarterTurnsAnticlockwise; i++) {
        matrix = compose(matrix, ORIENTATION_MATRICES[8]!);
      }
    } else if (prop.type === IMIR && prop.start < prop.end) {
      matrix = compose(matrix, ORIENTATION_MATRICES[(u8(b, prop.start) & 1) === 0 ? 4 : 2]!);
    }
  }
  if (width < 0) {
    for (const prop of properties) {
      if (prop.type !== ISPE || prop.start + 12 > prop.end) continue;
      const w = be32(b, prop.start + 4);
      const h = be32(b, prop.start + 8);
      if (w * h > width * height || width < 0) {
        width = w;
        height = h;
      }
    }
  }
  if (width < 0) fail("no image size (ispe) property");

  const primaryType = itemTypes.get(primary);
  let av1 = primaryType === AV01;
  if (primaryType === undefined || primaryType === fourcc("grid")) {
    av1 = [...itemTypes.values()].some((t) => t === AV01);
  }
  const hasAlpha = properties.some(
    (p) =>
      p.type === AUXC && latin1(b, p.start + 4, Math.min(p.end, p.start + 260)).includes("alpha"),
  );
  const header: Parsed & { av1: boolean } = {
    width,
    height,
    orientation: orientationOf(matrix),
    hasAlpha,
    av1,
  };
  if (top.overrun) header.problem = "a top-level box runs past the end of the file (truncated)";
  return header;
}

/** The 1-based ipco indices associated with `item`, in order. */
function primaryAssociations(b: Uint8Array, ipma: Box, item: number): number[] {
  const version = u8(b, ipma.start);
  const wide = (u8(b, ipma.start + 3) & 1) === 1;
  const count = be32(b, ipma.start + 4);
  let p = ipma.start + 8;
  for (let i = 0; i < count && i < MAX_ITEMS && p < ipma.end; i++) {
    const id = version < 1 ? be16(b, p) : be32(b, p);
    p += version < 1 ? 2 : 4;
    const n = u8(b, p++);
    const indices: number[] = [];
    for (let j = 0; j < n; j++) {
      indices.push(wide ? be16(b, p) & 0x7fff : u8(b, p) & 0x7f);
      p += wide ? 2 : 1;
    }
    if (p > ipma.end) fail("ipma box runs past its end");
    if (id === item) return indices;
  }
  return [];
}
