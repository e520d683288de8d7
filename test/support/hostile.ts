/** Hostile and odd upload files, generated in Node (sharp for the real encodings, bytes by hand for the rest), each with what the edge and the gpu-node must answer; the corpus photos join them when ../shared/corpus exists. */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { crc32 } from "node:zlib";
import sharp from "sharp";
import { hostileFormatFiles } from "./hostile-formats.ts";
import { photo, photoPixels, pngHeaderClaiming, randomBytes } from "./images.ts";

export const CORPUS = resolve(import.meta.dirname, "../../../shared/corpus");

export type HostileKind =
  | "corpus"
  | "zero-bytes"
  | "truncated"
  | "random-bytes"
  | "text-as-image"
  | "wrong-content-type"
  | "polyglot"
  | "bomb"
  | "extreme-dimensions"
  | "cmyk-16-bit"
  | "animated"
  | "exif-garbage"
  | "lying-header";

/** What one server must do with a file: succeed, or refuse it with this status / code. */
export interface EdgeExpectation {
  /** HTTP status at POST /v1/embeddings. */
  readonly status: 200 | 400 | 413 | 415 | 422;
  /** A regular expression (source) the error message must match. */
  readonly message?: string;
}

export interface GpuExpectation {
  readonly code: "ok" | "invalid_argument";
  readonly message?: string;
}

export interface HostileFile {
  readonly kind: HostileKind;
  /** Unique, readable: used in test names and as the multipart file name. */
  readonly name: string;
  readonly bytes: Uint8Array;
  /** The Content-Type the client claims (the edge must not believe it). */
  readonly contentType: string;
  readonly edge: EdgeExpectation;
  /** With RESIZER=wasm, where it differs from `edge` (the in-Worker decoders are stricter). */
  readonly edgeWasm?: EdgeExpectation;
  readonly gpu: GpuExpectation;
  /** Why this answer is the right one, for the report. */
  readonly why: string;
}

/** JSON-safe form for `provide()` into workerd tests. */
export interface HostileFileJson extends Omit<HostileFile, "bytes"> {
  readonly base64: string;
}

export const toJson = (f: HostileFile): HostileFileJson => {
  const { bytes, ...rest } = f;
  return { ...rest, base64: Buffer.from(bytes).toString("base64") };
};

// Messages the servers must give (checked as regular expressions).
const EDGE_EMPTY = "^image 0.*: empty image \\(0 bytes\\)$";
const EDGE_CORRUPT = "^image 0.*: (corrupt or truncated|unreadable) ";
const EDGE_UNKNOWN = "^image 0.*: (not an image|unsupported image format)";
const EDGE_BOMB = "^image 0.*: \\d+x\\d+ is [\\d.]+ MP, over the pixel limit.*decompression bomb";
const GPU_EMPTY = '^image 0 \\(id "[^"]*"\\): empty: ';
const GPU_CORRUPT = '^image 0 \\(id "[^"]*"\\): (corrupt|unsupported_format): ';
const GPU_UNKNOWN = '^image 0 \\(id "[^"]*"\\): unsupported_format: ';
const GPU_BOMB = '^image 0 \\(id "[^"]*"\\): (too_many_pixels|corrupt): ';

const ok = { code: "ok" } as const;
const accepted = { status: 200 } as const;

/**
 * The 16 lengths each truncated file is cut to: inside the signature, inside the first headers,
 * at fractions of the body, and just short of the end (missing trailer / checksum / EOI).
 */
export function truncationPoints(length: number): number[] {
  const points = new Set<number>();
  for (const n of [1, 2, 3, 8, 16, 33, 64, 128, 256]) points.add(n);
  for (const f of [0.25, 0.5, 0.75, 0.9]) points.add(Math.floor(length * f));
  for (const back of [64, 2, 1]) points.add(length - back);
  const out = [...points].filter((n) => n > 0 && n < length).sort((a, b) => a - b);
  // Small files: fill up with more fractions until there are 16.
  for (let k = 1; out.length < 16 && k < length; k++) {
    const n = Math.floor((length * k) / 17);
    if (n > 0 && !out.includes(n)) out.push(n);
  }
  return out.sort((a, b) => a - b).slice(0, 16);
}

/** A stored (uncompressed) ZIP with one file: the second half of a polyglot. */
export function zipArchive(name: string, content: Buffer): Buffer {
  const fileName = Buffer.from(name, "latin1");
  const crc = crc32(content);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(20, 4);
  local.writeUInt32LE(crc, 14);
  local.writeUInt32LE(content.length, 18);
  local.writeUInt32LE(content.length, 22);
  local.writeUInt16LE(fileName.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE(20, 4);
  central.writeUInt16LE(20, 6);
  central.writeUInt32LE(crc, 16);
  central.writeUInt32LE(content.length, 20);
  central.writeUInt32LE(content.length, 24);
  central.writeUInt16LE(fileName.length, 28);
  const localSize = local.length + fileName.length + content.length;
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(central.length + fileName.length, 12);
  end.writeUInt32LE(localSize, 16);
  return Buffer.concat([local, fileName, content, central, fileName, end]);
}

/** A JPEG with an APP1 "Exif" segment of `size` bytes inserted after SOI. */
export function withExifSegment(jpeg: Buffer, payload: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from("Exif\0\0", "latin1"), payload]);
  if (body.length + 2 > 0xffff) throw new Error("APP1 payload too large");
  const header = Buffer.from([0xff, 0xe1, (body.length + 2) >> 8, (body.length + 2) & 0xff]);
  return Buffer.concat([jpeg.subarray(0, 2), header, body, jpeg.subarray(2)]);
}

/** The chunk of a RIFF/WebP file with this fourcc (header included), or undefined. */
function riffChunk(webp: Buffer, fourcc: string): Buffer | undefined {
  let p = 12;
  while (p + 8 <= webp.length) {
    const size = webp.readUInt32LE(p + 4);
    if (webp.toString("latin1", p, p + 4) === fourcc) return webp.subarray(p, p + 8 + size);
    p += 8 + size + (size & 1);
  }
  return undefined;
}

function riff(chunks: Buffer[]): Buffer {
  const body = Buffer.concat([Buffer.from("WEBP", "latin1"), ...chunks]);
  const head = Buffer.alloc(8);
  head.write("RIFF", 0, "latin1");
  head.writeUInt32LE(body.length, 4);
  return Buffer.concat([head, body]);
}

/** A VP8X WebP whose canvas claims width x height, carrying a real 1x1 lossless image. */
async function webpCanvasClaiming(width: number, height: number): Promise<Buffer> {
  const tiny = await sharp(photoPixels(1, 1, 1), { raw: { width: 1, height: 1, channels: 3 } })
    .webp({ lossless: true })
    .toBuffer();
  const vp8l = riffChunk(tiny, "VP8L")!;
  const vp8x = Buffer.alloc(18);
  vp8x.write("VP8X", 0, "latin1");
  vp8x.writeUInt32LE(10, 4);
  vp8x.writeUIntLE(width - 1, 12, 3);
  vp8x.writeUIntLE(height - 1, 15, 3);
  return riff([vp8x, vp8l]);
}

/** A lossless WebP whose VP8L header claims 16384x16384 (268 MP) over a 1x1 bitstream. */
async function vp8lClaimingMax(): Promise<Buffer> {
  const tiny = Buffer.from(
    await sharp(photoPixels(1, 1, 2), { raw: { width: 1, height: 1, channels: 3 } })
      .webp({ lossless: true })
      .toBuffer(),
  );
  const at = 12 + 8 + 1; // VP8L chunk payload, after the 0x2f signature
  if (tiny.toString("latin1", 12, 16) !== "VP8L") throw new Error("expected a VP8L WebP");
  const bits = tiny.readUInt32LE(at);
  tiny.writeUInt32LE(((bits & ~0x0fffffff) | 0x3fff | (0x3fff << 14)) >>> 0, at);
  return tiny;
}

/** A lossy WebP whose VP8 frame header claims 16383x16383. */
async function vp8ClaimingMax(): Promise<Buffer> {
  const small = Buffer.from(await photo(32, 32, 3, "webp"));
  if (small.toString("latin1", 12, 16) !== "VP8 ") throw new Error("expected a VP8 WebP");
  small.writeUInt16LE(0x3fff, 20 + 6);
  small.writeUInt16LE(0x3fff, 20 + 8);
  return small;
}

/** A baseline JPEG whose SOF claims width x height. */
function jpegSofClaiming(jpeg: Buffer, width: number, height: number): Buffer {
  const out = Buffer.from(jpeg);
  let p = 2;
  while (p + 4 <= out.length && out[p] === 0xff) {
    const marker = out[p + 1]!;
    const length = out.readUInt16BE(p + 2);
    if (marker === 0xc0 || marker === 0xc2) {
      out.writeUInt16BE(height, p + 5);
      out.writeUInt16BE(width, p + 7);
      return out;
    }
    p += 2 + length;
  }
  throw new Error("no SOF found");
}

/** A GIF whose screen and only frame claim width x height, with 1 pixel of LZW data. */
function gifFrameClaiming(width: number, height: number): Buffer {
  const head = Buffer.from("GIF89a", "latin1");
  const screen = Buffer.alloc(7);
  screen.writeUInt16LE(width, 0);
  screen.writeUInt16LE(height, 2);
  const frame = Buffer.from([0x2c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b]);
  frame.writeUInt16LE(width, 5);
  frame.writeUInt16LE(height, 7);
  return Buffer.concat([head, screen, frame]);
}

function corpusFiles(): HostileFile[] {
  if (!existsSync(CORPUS)) return [];
  const files = ["photos", "odd-metadata"].flatMap((dir) =>
    readdirSync(join(CORPUS, dir))
      .filter((f) => !f.startsWith("."))
      .sort()
      .map((f) => join(dir, f)),
  );
  return files.map((rel): HostileFile => {
    const heif = rel.endsWith(".heif");
    return {
      kind: "corpus",
      name: `corpus/${rel}`,
      bytes: readFileSync(join(CORPUS, rel)),
      contentType: "application/octet-stream",
      // The Images binding decodes HEIC in production; its local stand-in under wrangler dev
      // (sharp without HEVC) cannot, and the WASM decoders (libde265) take it instead. The
      // gpu-node decodes it (libheif WASM).
      edge: accepted,
      gpu: ok,
      why: heif
        ? "a real HEIF: embedded (locally through the WASM decoders, as production's binding would)"
        : "a real camera/phone file: must embed",
    };
  });
}

/** Every generated hostile file (and the corpus when present), deterministic. */
export async function hostileFiles(): Promise<HostileFile[]> {
  const files: HostileFile[] = [...corpusFiles(), ...(await hostileFormatFiles())];
  const add = (f: Omit<HostileFile, "contentType"> & { contentType?: string }) =>
    files.push({ contentType: "image/jpeg", ...f });

  add({
    kind: "zero-bytes",
    name: "zero-bytes.jpg",
    bytes: new Uint8Array(0),
    edge: { status: 422, message: EDGE_EMPTY },
    gpu: { code: "invalid_argument", message: GPU_EMPTY },
    why: "nothing to decode",
  });

  // Truncations: the common upload failure on mobile networks.
  // [name, type, bytes, bytes needed to recognise the format (JPEG FF D8 FF, PNG's signature, RIFF....WEBP)]
  const sources: [string, string, Buffer, number][] = [
    ["jpeg", "image/jpeg", await photo(320, 240, 11), 3],
    ["jpeg-progressive", "image/jpeg", await progressiveJpeg(), 3],
    ["png", "image/png", await photo(160, 120, 12, "png"), 8],
    ["webp", "image/webp", await photo(320, 240, 13, "webp"), 12],
  ];
  for (const [format, type, full, magic] of sources) {
    for (const n of truncationPoints(full.length)) {
      // PNG: losing only IEND's checksum (the last 1-2 bytes) leaves every pixel: libpng, Pillow
      // and the gpu-node decode it exactly; the edge, stricter at the front door, wants IEND.
      const pixelsComplete = format === "png" && n >= full.length - 2;
      add({
        kind: "truncated",
        name: `truncated/${format}-${n}-of-${full.length}`,
        bytes: full.subarray(0, n),
        contentType: type,
        // Too short to recognise (415) or recognised and refused as truncated (422).
        edge: { status: n < magic ? 415 : 422, message: n < magic ? EDGE_UNKNOWN : EDGE_CORRUPT },
        gpu: pixelsComplete
          ? ok
          : { code: "invalid_argument", message: n < magic ? GPU_UNKNOWN : GPU_CORRUPT },
        why: pixelsComplete
          ? "only IEND's CRC is missing: the edge refuses it, the gpu-node has every pixel and embeds it"
          : "cut short: refused before any decode, never half a picture",
      });
    }
  }

  for (const [size, seed] of [
    [1, 1],
    [7, 2],
    [100, 3],
    [5_000, 4],
    [100_000, 5],
  ] as const) {
    add({
      kind: "random-bytes",
      name: `random/${size}-bytes`,
      bytes: randomBytes(size, seed),
      edge: { status: 415, message: EDGE_UNKNOWN },
      gpu: { code: "invalid_argument", message: GPU_UNKNOWN },
      why: "no image format's magic bytes",
    });
  }
  for (const [magic, label, type] of [
    [Buffer.from([0xff, 0xd8, 0xff, 0xe0]), "jpeg", "image/jpeg"],
    [Buffer.from("\x89PNG\r\n\x1a\n", "latin1"), "png", "image/png"],
    [Buffer.from("GIF89a", "latin1"), "gif", "image/gif"],
    [Buffer.from("II*\0", "latin1"), "tiff", "image/tiff"],
  ] as const) {
    add({
      kind: "random-bytes",
      name: `random/${label}-magic-then-noise`,
      bytes: Buffer.concat([magic, randomBytes(4000, label.length)]),
      contentType: type,
      edge: { status: 422, message: EDGE_CORRUPT },
      gpu: { code: "invalid_argument", message: GPU_CORRUPT },
      why: "the right magic bytes in front of noise",
    });
  }

  for (const [label, text] of [
    ["plain", "hello, this is not a photo\n".repeat(40)],
    ["html", "<!doctype html><html><body><img src=x></body></html>"],
    ["svg-with-external-href", svgFetching("http://127.0.0.1:9/tripwire.png")],
    ["base64-of-a-jpeg", "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8U"],
    ["pdf", "%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n"],
  ] as const) {
    add({
      kind: "text-as-image",
      name: `text/${label}.jpg`,
      bytes: Buffer.from(text),
      edge: { status: 415, message: EDGE_UNKNOWN },
      gpu: { code: "invalid_argument", message: GPU_UNKNOWN },
      why: "text named .jpg and sent as image/jpeg: identified by its bytes, not its name",
    });
  }

  // Content-Type is a parsing hint only: the format comes from the magic bytes.
  const png = await photo(96, 64, 21, "png");
  const jpeg = await photo(96, 64, 22);
  const webp = await photo(96, 64, 23, "webp");
  for (const [label, bytes, type] of [
    ["png-sent-as-jpeg", png, "image/jpeg"],
    ["jpeg-sent-as-png", jpeg, "image/png"],
    ["webp-sent-as-gif", webp, "image/gif"],
    ["jpeg-sent-as-heic", jpeg, "image/heic"],
  ] as const) {
    add({
      kind: "wrong-content-type",
      name: `wrong-type/${label}`,
      bytes,
      contentType: type,
      edge: accepted,
      gpu: ok,
      why: "a real image under another type: the magic bytes decide, so it embeds",
    });
  }

  const zip = zipArchive(
    "payload.txt",
    Buffer.from("PK polyglot payload: must never reach the GPU\n"),
  );
  add({
    kind: "polyglot",
    name: "polyglot/jpeg-then-zip.jpg",
    bytes: Buffer.concat([await photo(200, 150, 31), zip]),
    edge: accepted,
    gpu: ok,
    why: "a valid JPEG with a ZIP after its EOI: embedded as the JPEG; the resizer re-encodes pixels, so the ZIP never leaves the edge",
  });
  add({
    kind: "polyglot",
    name: "polyglot/gif-then-zip.gif",
    bytes: Buffer.concat([await sharpGif(64, 48, 32), zip]),
    contentType: "image/gif",
    edge: accepted,
    gpu: ok,
    why: "GIFAR-style: a GIF with an archive after its trailer; only pixels are re-encoded",
  });
  add({
    kind: "polyglot",
    name: "polyglot/zip-then-jpeg.zip",
    bytes: Buffer.concat([zip, await photo(64, 48, 33)]),
    edge: { status: 415, message: "looks like a ZIP archive" },
    gpu: { code: "invalid_argument", message: GPU_UNKNOWN },
    why: "an archive first: not an image",
  });

  // Decompression bombs: tiny files whose headers claim billions of pixels.
  for (const [label, bytes, type] of [
    ["png-50000x50000", pngHeaderClaiming(50_000, 50_000), "image/png"],
    ["png-100000x100000", pngHeaderClaiming(100_000, 100_000), "image/png"],
    ["webp-vp8x-50000x50000", await webpCanvasClaiming(50_000, 50_000), "image/webp"],
    ["webp-vp8l-16384x16384", await vp8lClaimingMax(), "image/webp"],
    ["webp-vp8-16383x16383", await vp8ClaimingMax(), "image/webp"],
    [
      "jpeg-sof-65500x65500",
      jpegSofClaiming(await photo(64, 48, 34), 65_500, 65_500),
      "image/jpeg",
    ],
    ["gif-65535x65535", gifFrameClaiming(65_535, 65_535), "image/gif"],
  ] as const) {
    add({
      kind: "bomb",
      name: `bomb/${label}`,
      bytes,
      contentType: type,
      edge: { status: 413, message: EDGE_BOMB },
      gpu: { code: "invalid_argument", message: GPU_BOMB },
      why: `${bytes.length} bytes claiming more than the 100 MP limit: refused from the header`,
    });
  }

  // Extreme but legitimate dimensions.
  for (const [label, bytes, type] of [
    ["png-1x1", await photo(1, 1, 41, "png"), "image/png"],
    ["jpeg-1x1", await photo(1, 1, 42), "image/jpeg"],
    ["webp-1x1", await photo(1, 1, 43, "webp"), "image/webp"],
    ["gif-1x1", await sharpGif(1, 1, 44), "image/gif"],
  ] as const) {
    add({
      kind: "extreme-dimensions",
      name: `dims/${label}`,
      bytes,
      contentType: type,
      edge: accepted,
      gpu: ok,
      why: "a 1x1 image is a valid image: upscaled like open_clip does",
    });
  }
  for (const [label, w, h] of [
    ["png-65535x1", 65_535, 1],
    ["png-1x65535", 1, 65_535],
  ] as const) {
    add({
      kind: "extreme-dimensions",
      name: `dims/${label}`,
      bytes: await sharp(photoPixels(w, h, 45), { raw: { width: w, height: h, channels: 3 } })
        .png()
        .toBuffer(),
      contentType: "image/png",
      edge: { status: 422, message: "^image 0.*: \\d+x\\d+ has an extreme aspect ratio" },
      gpu: ok,
      why: "the edge cannot re-encode a 65535-px-long strip as JPEG (65,500-px limit) and says so; the gpu-node resizes only the 224x224 window it crops (bounded memory) and embeds it",
    });
  }

  // Colour models a phone or scanner may produce; all become 8-bit sRGB.
  const base = () =>
    sharp(photoPixels(120, 90, 51), { raw: { width: 120, height: 90, channels: 3 } });
  for (const [label, make, type] of [
    ["jpeg-cmyk", () => base().toColourspace("cmyk").jpeg().toBuffer(), "image/jpeg"],
    ["tiff-cmyk", () => base().toColourspace("cmyk").tiff().toBuffer(), "image/tiff"],
    ["png-16-bit-rgb", () => base().toColourspace("rgb16").png().toBuffer(), "image/png"],
    ["png-16-bit-grey", () => base().toColourspace("grey16").png().toBuffer(), "image/png"],
    ["tiff-16-bit-rgb", () => base().toColourspace("rgb16").tiff().toBuffer(), "image/tiff"],
  ] as const) {
    add({
      kind: "cmyk-16-bit",
      name: `colour/${label}`,
      bytes: await make(),
      contentType: type,
      edge: accepted,
      gpu: ok,
      why: "CMYK and 16-bit images are converted to 8-bit sRGB",
    });
  }

  const frames = Buffer.concat([0, 1, 2].map((s) => photoPixels(48, 36, 60 + s)));
  const animated = () =>
    sharp(frames, { raw: { width: 48, height: 108, channels: 3, pageHeight: 36 } });
  for (const [label, bytes, type] of [
    [
      "gif-3-frames",
      await animated()
        .gif({ delay: [100, 100, 100] })
        .toBuffer(),
      "image/gif",
    ],
    [
      "webp-3-frames",
      await animated()
        .webp({ delay: [100, 100, 100] })
        .toBuffer(),
      "image/webp",
    ],
  ] as const) {
    add({
      kind: "animated",
      name: `animated/${label}`,
      bytes,
      contentType: type,
      edge: accepted,
      gpu: ok,
      why: "animations embed their first frame",
    });
  }

  const host = await photo(200, 150, 71);
  const secret = Buffer.from("SECRET-EXIF-VALUE-7f3a GPS 48/1 51/1 24/1 serial SN-0042");
  const garbage = Buffer.concat([secret, randomBytes(60_000 - secret.length, 72)]);
  const tiffGarbage = Buffer.concat([
    Buffer.from([0x49, 0x49, 0x2a, 0x00, 0x08, 0x00, 0x00, 0x00, 0xff, 0xff]),
    secret,
    randomBytes(60_000 - 10 - secret.length, 73),
  ]);
  for (const [label, payload] of [
    ["random", garbage],
    ["tiff-header-then-random", tiffGarbage],
  ] as const) {
    add({
      kind: "exif-garbage",
      name: `exif/${label}-60kb`,
      bytes: withExifSegment(host, payload),
      edge: accepted,
      gpu: ok,
      why: "broken EXIF never rejects an image (decoders ignore it too); it is stripped at the edge",
    });
  }
  return files;
}

/** The marker hidden in the EXIF garbage: it must never reach a log or the gpu-node. */
export const EXIF_SECRET = "SECRET-EXIF-VALUE-7f3a";

function svgFetching(url: string): string {
  return `<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64"><image href="${url}" xlink:href="${url}" width="64" height="64"/></svg>`;
}

async function progressiveJpeg(): Promise<Buffer> {
  return sharp(photoPixels(320, 240, 14), { raw: { width: 320, height: 240, channels: 3 } })
    .jpeg({ progressive: true, quality: 85 })
    .toBuffer();
}

async function sharpGif(width: number, height: number, seed: number): Promise<Buffer> {
  return sharp(photoPixels(width, height, seed), { raw: { width, height, channels: 3 } })
    .gif()
    .toBuffer();
}

/** Counts per kind, for the report. */
export function countByKind(files: readonly { kind: string }[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of files) out[f.kind] = (out[f.kind] ?? 0) + 1;
  return out;
}
