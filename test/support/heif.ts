/** HEIC files for tests and benchmarks: an ISO-BMFF writer for grid and single-image HEIF (irot, imir, ICC or nclx colour; the hostile variants bend it), and `encodeHeic`, which cuts RGB into tiles and has Debian's heif-enc (libheif 1.15 + x265) code each one. */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { parseHeif } from "../../edge/validate/heif.ts";
import { primaryHevcItem } from "../../imaging/heif/container.ts";

export interface HevcItem {
  /** The hvcC box payload. */
  readonly hvcC: Uint8Array;
  /** Length-prefixed NAL units. */
  readonly data: Uint8Array;
}

export interface HeifLayout {
  readonly width: number;
  readonly height: number;
  /** One item: a plain image; more: a grid of `columns` per row, each `tileWidth` x `tileHeight`. */
  readonly tiles: readonly HevcItem[];
  readonly columns?: number;
  readonly tileWidth?: number;
  readonly tileHeight?: number;
  /** Quarter turns anticlockwise (irot). */
  readonly irot?: number;
  /** imir axis: 0 top-bottom, 1 left-right. */
  readonly imir?: number;
  readonly icc?: Uint8Array;
  readonly nclx?: { readonly matrix: number; readonly fullRange: boolean };
  /** Hostile: the grid's dimg references (default: the tiles in order). */
  readonly gridRefs?: readonly number[];
  /** Hostile: the grid's declared rows/columns (default: from the tiles). */
  readonly gridShape?: { readonly rows: number; readonly columns: number };
  /** Hostile: the grid's declared output size (default: width x height). */
  readonly gridOutput?: { readonly width: number; readonly height: number };
}

const ascii = (s: string) => Buffer.from(s, "latin1");
const u16 = (n: number) => Buffer.from([n >>> 8, n & 255]);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};

function box(type: string, ...parts: Uint8Array[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([u32(8 + body.length), ascii(type), body]);
}

const full = (type: string, version: number, flags: number, ...parts: Uint8Array[]) =>
  box(type, Buffer.from([version, flags >>> 16, (flags >>> 8) & 255, flags & 255]), ...parts);

/** A HEIF file: item 1 is the primary (the grid, or the only image); tiles are items 2.. */
export function writeHeif(layout: HeifLayout): Buffer {
  const grid = layout.tiles.length > 1 || layout.gridShape !== undefined;
  const columns = layout.gridShape?.columns ?? layout.columns ?? 1;
  const rows = layout.gridShape?.rows ?? Math.ceil(layout.tiles.length / columns);
  const tileIds = layout.tiles.map((_, i) => (grid ? i + 2 : 1));
  const out = layout.gridOutput ?? { width: layout.width, height: layout.height };
  const large = out.width > 0xffff || out.height > 0xffff;
  const gridData = grid
    ? Buffer.concat([
        Buffer.from([0, large ? 1 : 0, rows - 1, columns - 1]),
        large ? u32(out.width) : u16(out.width),
        large ? u32(out.height) : u16(out.height),
      ])
    : Buffer.alloc(0);

  // Properties: 1 ispe (full), 2 ispe (tile), 3 colr, 4 irot, 5 imir, 6.. hvcC per tile.
  const ispe = (w: number, h: number) => full("ispe", 0, 0, u32(w), u32(h));
  const colr = layout.icc
    ? box("colr", ascii("prof"), layout.icc)
    : layout.nclx
      ? box(
          "colr",
          ascii("nclx"),
          u16(1),
          u16(13),
          u16(layout.nclx.matrix),
          Buffer.from([layout.nclx.fullRange ? 0x80 : 0]),
        )
      : undefined;
  const props: Buffer[] = [
    ispe(layout.width, layout.height),
    ispe(layout.tileWidth ?? layout.width, layout.tileHeight ?? layout.height),
  ];
  const colrIndex = colr ? props.push(colr) : 0;
  const irotIndex = layout.irot ? props.push(box("irot", Buffer.from([layout.irot & 3]))) : 0;
  const imirIndex =
    layout.imir !== undefined ? props.push(box("imir", Buffer.from([layout.imir & 1]))) : 0;
  // One hvcC property per distinct configuration (iPhones share one among all tiles).
  const seen = new Map<Uint8Array, number>();
  const hvcIndex = layout.tiles.map((t) => {
    const known = seen.get(t.hvcC);
    if (known !== undefined) return known;
    const index = props.push(box("hvcC", t.hvcC));
    seen.set(t.hvcC, index);
    return index;
  });

  const assoc = (id: number, indices: number[]) =>
    Buffer.concat([u16(id), Buffer.from([indices.length, ...indices])]);
  const transforms = [colrIndex, irotIndex, imirIndex].filter((i) => i > 0);
  const entries = grid
    ? [
        assoc(1, [1, ...transforms]),
        ...layout.tiles.map((_, i) => assoc(tileIds[i]!, [hvcIndex[i]!, 2])),
      ]
    : [assoc(1, [hvcIndex[0]!, 1, ...transforms])];
  const ipma = full("ipma", 0, 0, u32(entries.length), ...entries);

  const infe = (id: number, type: string, hidden: boolean) =>
    full("infe", 2, hidden ? 1 : 0, u16(id), u16(0), ascii(type), Buffer.from([0]));
  const infes = grid
    ? [infe(1, "grid", false), ...layout.tiles.map((_, i) => infe(tileIds[i]!, "hvc1", true))]
    : [infe(1, "hvc1", false)];
  const iinf = full("iinf", 0, 0, u16(infes.length), ...infes);
  const refs = layout.gridRefs ?? tileIds;
  const iref = grid
    ? full("iref", 0, 0, box("dimg", u16(1), u16(refs.length), ...refs.map(u16)))
    : Buffer.alloc(0);

  // iloc: grid data in idat (method 1), tiles in mdat (method 0). Offsets patched below.
  const datas = layout.tiles.map((t) => t.data);
  const ilocFor = (mdatStart: number) => {
    const rowsOut: Buffer[] = [];
    if (grid)
      rowsOut.push(Buffer.concat([u16(1), u16(1), u16(0), u16(1), u32(0), u32(gridData.length)]));
    let offset = mdatStart;
    datas.forEach((d, i) => {
      rowsOut.push(
        Buffer.concat([u16(tileIds[i]!), u16(0), u16(0), u16(1), u32(offset), u32(d.length)]),
      );
      offset += d.length;
    });
    // version 1: offset 4, length 4, base 0, index 0; construction method per item.
    return full("iloc", 1, 0, Buffer.from([0x44, 0x00]), u16(rowsOut.length), ...rowsOut);
  };
  const ftyp = box("ftyp", ascii("heic"), u32(0), ascii("mif1heic"));
  const hdlr = full("hdlr", 0, 0, u32(0), ascii("pict"), Buffer.alloc(12), Buffer.from([0]));
  const pitm = full("pitm", 0, 0, u16(1));
  const iprp = box("iprp", box("ipco", ...props), ipma);
  const idat = grid ? box("idat", gridData) : Buffer.alloc(0);
  const metaWith = (iloc: Buffer) => full("meta", 0, 0, hdlr, pitm, iinf, iloc, iref, iprp, idat);
  const mdatStart = ftyp.length + metaWith(ilocFor(0)).length + 8;
  return Buffer.concat([ftyp, metaWith(ilocFor(mdatStart)), box("mdat", ...datas)]);
}

/** Whether Debian's heif-enc (package libheif-examples, with x265) is on this machine. */
export function haveHeifEnc(): boolean {
  try {
    execFileSync("heif-enc", ["--help"], { stdio: "ignore" });
    return true;
  } catch (e) {
    // heif-enc --help exits 0 on 1.15, but be lenient: only a missing binary means no.
    return !(e instanceof Error && "code" in e && e.code === "ENOENT");
  }
}

export interface EncodeHeicOptions {
  /** Tile side (iPhones use 512); 0: one image, no grid. */
  readonly tile?: number;
  readonly quality?: number;
  /** 10: each tile from a 16-bit PNG, coded Main 10. */
  readonly bitDepth?: 8 | 10;
  readonly irot?: number;
  readonly imir?: number;
  /** An ICC profile to tag the file with (the pixels are taken to be in its space). */
  readonly icc?: Uint8Array;
}

/** HEIC of packed 8-bit RGB, tiled like an iPhone's (needs heif-enc: see `haveHeifEnc`). */
export async function encodeHeic(
  rgb: Uint8Array,
  width: number,
  height: number,
  options: EncodeHeicOptions = {},
): Promise<Buffer> {
  const tile = options.tile ?? 512;
  const dir = mkdtempSync(join(tmpdir(), "heic-"));
  try {
    const tw = tile > 0 ? tile : width;
    const th = tile > 0 ? tile : height;
    const columns = Math.ceil(width / tw);
    const rows = Math.ceil(height / th);
    const tiles: HevcItem[] = [];
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < columns; c++) {
        // Tiles overhanging the edge are padded by repeating the edge (as encoders do).
        const left = c * tw;
        const top = r * th;
        const w = Math.min(tw, width - left);
        const h = Math.min(th, height - top);
        let img = sharp(Buffer.from(rgb), { raw: { width, height, channels: 3 } })
          .extract({ left, top, width: w, height: h })
          .extend({ right: tw - w, bottom: th - h, extendWith: "copy" });
        const png = join(dir, `t${r}_${c}.png`);
        if (options.bitDepth === 10) img = img.toColourspace("rgb16");
        await img.png().toFile(png);
        const out = join(dir, `t${r}_${c}.heic`);
        execFileSync(
          "heif-enc",
          [
            "-q",
            String(options.quality ?? 60),
            ...(options.bitDepth === 10 ? ["-b", "10"] : []),
            "-o",
            out,
            png,
          ],
          { stdio: "ignore" },
        );
        tiles.push(primaryHevcItem(new Uint8Array(readFileSync(out))));
      }
    }
    return writeHeif({
      width,
      height,
      tiles,
      columns,
      // A photo smaller than one tile is still a (1x1) grid: its padded tile is cropped by the
      // grid's output size, which a plain item could only say with a clap box.
      ...(tile > 0 ? { gridShape: { rows, columns } } : {}),
      tileWidth: tw,
      tileHeight: th,
      ...(options.irot ? { irot: options.irot } : {}),
      ...(options.imir !== undefined ? { imir: options.imir } : {}),
      ...(options.icc ? { icc: options.icc } : {}),
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The irot/imir pair whose display matches EXIF `orientation` (found by writing and reading each). */
export function heifTransformFor(orientation: number): { irot?: number; imir?: number } {
  const dummy: HevcItem = { hvcC: new Uint8Array(23), data: new Uint8Array(0) };
  for (const imir of [undefined, 0, 1]) {
    for (let irot = 0; irot < 4; irot++) {
      const t = { ...(irot ? { irot } : {}), ...(imir !== undefined ? { imir } : {}) };
      const b = writeHeif({ width: 2, height: 1, tiles: [dummy], ...t });
      if (parseHeif(b).orientation === orientation) return t;
    }
  }
  throw new Error(`no irot/imir for orientation ${orientation}`);
}
