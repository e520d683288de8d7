/** Magic bytes in; the format they announce (for ISO-BMFF, from its brands), or for the 415 a description of what the bytes look like instead. */
import { fourcc, fourccAt, latin1 } from "../../imaging/bytes.ts";
import type { ImageFormat } from "./header.ts";
import { parseHeif } from "./heif.ts";
import { RIFF, WEBP } from "./webp.ts";

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
export function describeUnknown(b: Uint8Array): string {
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
