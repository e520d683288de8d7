/** Hostile HEIC, PNG and WebP files for the in-Worker decoders (truncated, huge declared grids, recursive item references, tile lies, zlib bombs, 16-bit giants, lying headers), each with what the edge (Images binding, and RESIZER=wasm where it differs) and the gpu-node must answer. */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { deflateSync } from "node:zlib";
import sharp from "sharp";
import { primaryHevcItem } from "../../imaging/heif/container.ts";
import { writeHeif } from "./heif.ts";
import type { EdgeExpectation, GpuExpectation, HostileFile } from "./hostile.ts";
import { photoPixels, pngChunk } from "./images.ts";

const fixture = (name: string) =>
  new Uint8Array(readFileSync(resolve(import.meta.dirname, "../fixtures/heic", name)));

// The binding's own failure reads "the image could not be decoded"; the WASM decoders say why.
const EDGE_CORRUPT = "^image 0.*: (corrupt or truncated|unreadable|the image could not be decoded)";
const EDGE_BOMB = "^image 0.*: \\d+x\\d+ is [\\d.]+ MP, over the pixel limit.*decompression bomb";
const GPU_CORRUPT = '^image 0 \\(id "[^"]*"\\): (corrupt|unsupported_format): ';
const GPU_BOMB = '^image 0 \\(id "[^"]*"\\): (too_many_pixels|corrupt): ';
const corrupt: EdgeExpectation = { status: 422, message: EDGE_CORRUPT };
const bomb: EdgeExpectation = { status: 413, message: EDGE_BOMB };
const gpuCorrupt: GpuExpectation = { code: "invalid_argument", message: GPU_CORRUPT };
const gpuBomb: GpuExpectation = { code: "invalid_argument", message: GPU_BOMB };
const ok: GpuExpectation = { code: "ok" };

/** A PNG whose IHDR says width x height (8-bit RGB unless told) over the given raw rows. */
function pngOf(width: number, height: number, raw: Uint8Array, depth = 8, colorType = 2): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = depth;
  ihdr[9] = colorType;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk("IHDR", ihdr),
    pngChunk("IDAT", deflateSync(raw, { level: 9 })),
    pngChunk("IEND", new Uint8Array(0)),
  ]);
}

/** Every hostile file for the new formats; deterministic. */
export async function hostileFormatFiles(): Promise<HostileFile[]> {
  const files: HostileFile[] = [];
  const add = (f: Omit<HostileFile, "contentType"> & { contentType?: string }) =>
    files.push({ contentType: "image/heic", ...f });
  const grid = fixture("grid-irot1-p3.heic");
  const tile = primaryHevcItem(fixture("tile-512.heic"));
  const small = primaryHevcItem(fixture("single-10bit-imir.heic"));
  const gridOf = (layout: Partial<Parameters<typeof writeHeif>[0]>) =>
    writeHeif({
      width: 1000,
      height: 1000,
      tiles: [tile, tile, tile, tile],
      columns: 2,
      tileWidth: 512,
      tileHeight: 512,
      ...layout,
    });

  for (const [label, at] of [
    ["in-meta", 300],
    ["in-mdat", Math.floor(grid.length * 0.6)],
    ["last-byte", grid.length - 1],
  ] as const) {
    add({
      kind: "truncated",
      name: `heic/truncated-${label}`,
      bytes: grid.subarray(0, at),
      edge: corrupt,
      // libheif (the gpu-node) decodes a last tile that lacks only its final byte.
      gpu: label === "last-byte" ? ok : gpuCorrupt,
      why: "a HEIC grid cut short: the box sizes say so before any decode",
    });
  }
  add({
    kind: "bomb",
    name: "heic/huge-declared-grid",
    bytes: gridOf({ width: 65_535, height: 65_535, tileWidth: 65_535, tileHeight: 65_535 }),
    edge: bomb,
    gpu: gpuBomb,
    why: "ispe and grid declare 65535x65535 (4.3 GP) over four tiles: refused from the header",
  });
  add({
    kind: "lying-header",
    name: "heic/grid-larger-than-its-ispe",
    bytes: gridOf({ gridOutput: { width: 60_000, height: 60_000 } }),
    edge: corrupt,
    gpu: gpuCorrupt,
    why: "ispe says 1000x1000 but the grid's own data declares 60000x60000: never allocated",
  });
  add({
    kind: "lying-header",
    name: "heic/grid-references-itself",
    bytes: gridOf({ gridRefs: [1, 1, 1, 1] }),
    edge: corrupt,
    gpu: gpuCorrupt,
    why: "a grid whose tiles are the grid itself (recursive item references): refused, no recursion",
  });
  add({
    kind: "lying-header",
    name: "heic/grid-tile-count-mismatch",
    bytes: gridOf({ gridShape: { rows: 3, columns: 3 } }),
    edge: corrupt,
    gpu: gpuCorrupt,
    why: "a 3x3 grid with four tile references",
  });
  add({
    kind: "lying-header",
    name: "heic/tiles-smaller-than-declared",
    bytes: gridOf({ tiles: [small, small, small, small] }),
    edge: corrupt,
    gpu: gpuCorrupt,
    why: "the tiles' ispe says 512x512, their HEVC pictures are 320x240",
  });

  // PNG: a zlib bomb (64x64 declared, 64 MB of zeros inflated), a 16-bit giant, lying IHDR.
  add({
    kind: "bomb",
    name: "png/zlib-bomb",
    contentType: "image/png",
    bytes: pngOf(64, 64, new Uint8Array(64 * 1024 * 1024)),
    // libpng (sharp: the local binding, the gpu-node) stops reading at the last row and ignores
    // the rest; the WASM decoder refuses the excess as soon as it inflates past the header's size.
    edge: { status: 200 },
    edgeWasm: corrupt,
    gpu: ok,
    why: "64x64 declared, 64 MB inflated: nobody inflates more than the declared size",
  });
  add({
    kind: "bomb",
    name: "png/16-bit-giant",
    contentType: "image/png",
    bytes: pngOf(20_000, 20_000, new Uint8Array(1 + 20_000 * 8), 16, 6),
    edge: bomb,
    gpu: gpuBomb,
    why: "16-bit RGBA 20000x20000 (3.2 GB inflated): refused from the header",
  });
  const rows = photoPixels(256, 256, 41);
  const raw = new Uint8Array(256 * (1 + 256 * 3));
  for (let y = 0; y < 256; y++) raw.set(rows.subarray(y * 768, (y + 1) * 768), y * 769 + 1);
  add({
    kind: "lying-header",
    name: "png/ihdr-smaller-than-its-data",
    contentType: "image/png",
    bytes: pngOf(16, 16, raw),
    edge: corrupt,
    gpu: gpuCorrupt,
    why: "IHDR says 16x16 over a 256x256 image's data",
  });
  add({
    kind: "lying-header",
    name: "png/ihdr-larger-than-its-data",
    contentType: "image/png",
    bytes: pngOf(2048, 2048, raw),
    edge: corrupt,
    gpu: gpuCorrupt,
    why: "IHDR says 2048x2048 over a 256x256 image's data (truncated rows)",
  });

  // WebP: a VP8X canvas that disagrees with its bitstream.
  const webp = await sharp(photoPixels(300, 200, 42), {
    raw: { width: 300, height: 200, channels: 3 },
  })
    .webp({ quality: 80 })
    .toBuffer();
  const vp8 = webp.subarray(12); // the "VP8 " chunk
  const vp8x = Buffer.alloc(18);
  vp8x.write("VP8X", 0, "latin1");
  vp8x.writeUInt32LE(10, 4);
  vp8x.writeUIntLE(4000 - 1, 12, 3);
  vp8x.writeUIntLE(3000 - 1, 15, 3);
  const body = Buffer.concat([Buffer.from("WEBP", "latin1"), vp8x, vp8]);
  const riff = Buffer.alloc(8);
  riff.write("RIFF", 0, "latin1");
  riff.writeUInt32LE(body.length, 4);
  add({
    kind: "lying-header",
    name: "webp/vp8x-canvas-larger-than-its-bitstream",
    contentType: "image/webp",
    bytes: Buffer.concat([riff, body]),
    edge: corrupt,
    gpu: gpuCorrupt,
    why: "VP8X declares 4000x3000, the VP8 frame is 300x200",
  });
  add({
    kind: "truncated",
    name: "webp/truncated-bitstream",
    contentType: "image/webp",
    bytes: webp.subarray(0, Math.floor(webp.length * 0.6)),
    edge: corrupt,
    gpu: gpuCorrupt,
    why: "a lossy WebP cut at 60%: the RIFF size says so",
  });
  return files;
}
