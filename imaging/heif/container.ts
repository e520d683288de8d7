/**
 * HEIC/HEIF (ISO-BMFF) bytes in; a decode plan for the primary image out: its HEVC tiles (one
 * for a plain image, rows x columns for a grid such as an iPhone's), each as 4-byte-length-
 * prefixed NAL units with its parameter sets, the output size, the colour (nclx or ICC profile).
 *
 * Bounded on hostile input: every read is bounds-checked (imaging/bytes.ts raises
 * ImageHeaderError), loops have caps, a grid's tiles must be coded HEVC items (a grid of grids,
 * or one naming itself, is refused: no recursion), and the declared output size is checked
 * against the caller's pixel limit before anything is allocated.
 */
import { be16, be32, fail, fourcc, fourccAt, TRUNCATED, u8 } from "../bytes.ts";
import { DecodeError } from "../decode-error.ts";

const MAX_BOXES = 10_000;
const MAX_ITEMS = 10_000;
const MAX_EXTENTS = 1_000;
const MAX_NALS = 1_000;
/** A grid of more tiles than this is refused (an iPhone's 48 MP photo has 192). */
export const MAX_TILES = 4_096;

const T = {
  meta: fourcc("meta"),
  pitm: fourcc("pitm"),
  iinf: fourcc("iinf"),
  infe: fourcc("infe"),
  iloc: fourcc("iloc"),
  iref: fourcc("iref"),
  idat: fourcc("idat"),
  iprp: fourcc("iprp"),
  ipco: fourcc("ipco"),
  ipma: fourcc("ipma"),
  ispe: fourcc("ispe"),
  hvcC: fourcc("hvcC"),
  colr: fourcc("colr"),
  nclx: fourcc("nclx"),
  prof: fourcc("prof"),
  rICC: fourcc("rICC"),
  dimg: fourcc("dimg"),
  hvc1: fourcc("hvc1"),
  grid: fourcc("grid"),
  av01: fourcc("av01"),
} as const;

export interface Box {
  readonly type: number;
  readonly start: number;
  readonly end: number;
}

/**
 * The boxes in [from, to). A box running past `to` ends the list with `overrun` set (at the top
 * level that means a truncated file). Shared with the edge's header validation (validate/heif.ts).
 */
export function childBoxes(
  b: Uint8Array,
  from: number,
  to: number,
): { boxes: Box[]; overrun: boolean } {
  const out: Box[] = [];
  let p = from;
  for (let n = 0; n < MAX_BOXES && p + 8 <= to; n++) {
    let size = be32(b, p);
    const type = fourccAt(b, p + 4);
    let start = p + 8;
    if (size === 1) {
      size = be32(b, p + 8) * 0x100000000 + be32(b, p + 12);
      start = p + 16;
    } else if (size === 0) {
      size = to - p; // to the end
    }
    if (size < start - p) fail("invalid box size");
    if (p + size > to) {
      out.push({ type, start, end: to });
      return { boxes: out, overrun: true };
    }
    out.push({ type, start, end: p + size });
    p += size;
  }
  return { boxes: out, overrun: false };
}

/** The boxes in [from, to); one running past `to` means a truncated file. */
function boxes(b: Uint8Array, from: number, to: number): Box[] {
  const { boxes: out, overrun } = childBoxes(b, from, to);
  if (overrun) fail(TRUNCATED);
  return out;
}

/** How the decoded samples become RGB. */
export interface HeifColour {
  /** From a `colr` nclx box; undefined: take the HEVC stream's own (VUI) signalling. */
  readonly nclx?: { readonly matrix: number; readonly fullRange: boolean };
  /** A `colr` prof/rICC ICC profile. */
  readonly icc?: Uint8Array;
}

export interface HeifTile {
  /**
   * Parameter sets then the coded picture, each NAL unit prefixed by its 4-byte length: built on
   * demand (the framing is checked when the plan is made), so that only one tile's copy exists at
   * a time.
   */
  readonly nals: () => Uint8Array;
  /** Where the tile's top-left pixel lands in the output image. */
  readonly x: number;
  readonly y: number;
}

export interface HeifPlan {
  readonly width: number;
  readonly height: number;
  readonly tiles: readonly HeifTile[];
  readonly tileWidth: number;
  readonly tileHeight: number;
  readonly colour: HeifColour;
  readonly grid: boolean;
}

interface Item {
  type: number;
  extents: { offset: number; length: number }[];
  method: number;
  props: number[];
}

function readSized(b: Uint8Array, p: number, size: number): number {
  if (size === 0) return 0;
  if (size === 4) return be32(b, p);
  if (size === 8) {
    const hi = be32(b, p);
    if (hi > 0x1fffff) fail("64-bit offset out of range");
    return hi * 0x100000000 + be32(b, p + 4);
  }
  fail(`unsupported field size ${size}`);
}

function parseIloc(b: Uint8Array, box: Box, items: Map<number, Item>): void {
  const version = u8(b, box.start);
  let p = box.start + 4;
  const sizes = be16(b, p);
  p += 2;
  const offsetSize = sizes >> 12;
  const lengthSize = (sizes >> 8) & 15;
  const baseSize = (sizes >> 4) & 15;
  const indexSize = version === 1 || version === 2 ? sizes & 15 : 0;
  let count: number;
  if (version < 2) {
    count = be16(b, p);
    p += 2;
  } else {
    count = be32(b, p);
    p += 4;
  }
  if (count > MAX_ITEMS) fail("too many items");
  for (let i = 0; i < count; i++) {
    const id = version < 2 ? be16(b, p) : be32(b, p);
    p += version < 2 ? 2 : 4;
    let method = 0;
    if (version === 1 || version === 2) {
      method = be16(b, p) & 15;
      p += 2;
    }
    p += 2; // data_reference_index
    const base = readSized(b, p, baseSize);
    p += baseSize;
    const extentCount = be16(b, p);
    p += 2;
    if (extentCount > MAX_EXTENTS) fail("too many extents");
    const extents: Item["extents"] = [];
    for (let e = 0; e < extentCount; e++) {
      p += indexSize;
      const offset = readSized(b, p, offsetSize);
      p += offsetSize;
      const length = readSized(b, p, lengthSize);
      p += lengthSize;
      extents.push({ offset: base + offset, length });
    }
    if (p > box.end) fail("iloc box runs past its end");
    const item = items.get(id);
    if (item) {
      item.extents = extents;
      item.method = method;
    }
  }
}

/** The item's bytes: its extents, from the file (method 0) or the idat box (method 1). */
function itemData(b: Uint8Array, item: Item, idat: Box | undefined): Uint8Array {
  let from: Uint8Array;
  let base = 0;
  if (item.method === 0) from = b;
  else if (item.method === 1 && idat) {
    from = b.subarray(idat.start, idat.end);
    base = 0;
  } else throw new DecodeError("unsupported", `item construction method ${item.method}`);
  let total = 0;
  for (const e of item.extents) {
    // length 0: to the end of the file (ISO/IEC 14496-12).
    const length = e.length === 0 ? from.length - e.offset : e.length;
    if (e.offset + base > from.length || length < 0 || e.offset + length > from.length) {
      fail("item data lies outside the file (truncated)");
    }
    total += length;
  }
  if (item.extents.length === 1) {
    const e = item.extents[0]!;
    return from.subarray(e.offset, e.length === 0 ? from.length : e.offset + e.length);
  }
  const out = new Uint8Array(total);
  let q = 0;
  for (const e of item.extents) {
    const part = from.subarray(e.offset, e.length === 0 ? from.length : e.offset + e.length);
    out.set(part, q);
    q += part.length;
  }
  return out;
}

/** hvcC: the NAL length size and the parameter-set NAL units (VPS, SPS, PPS, SEI). */
function parseHvcc(b: Uint8Array, box: Box): { lengthSize: number; params: Uint8Array[] } {
  const lengthSize = (u8(b, box.start + 21) & 3) + 1;
  const arrays = u8(b, box.start + 22);
  let p = box.start + 23;
  const params: Uint8Array[] = [];
  for (let a = 0; a < arrays; a++) {
    const n = be16(b, p + 1);
    p += 3;
    for (let i = 0; i < n; i++) {
      if (params.length >= MAX_NALS) fail("too many parameter sets");
      const len = be16(b, p);
      p += 2;
      if (p + len > box.end) fail("hvcC parameter set runs past its box");
      params.push(b.subarray(p, p + len));
      p += len;
    }
  }
  return { lengthSize, params };
}

/** Parameter sets then the item's NAL units, re-prefixed with 4-byte lengths (built on demand). */
function tileNals(
  hvcc: { lengthSize: number; params: Uint8Array[] },
  data: Uint8Array,
): () => Uint8Array {
  const units: Uint8Array[] = [...hvcc.params];
  let p = 0;
  const L = hvcc.lengthSize;
  while (p < data.length) {
    if (units.length > MAX_NALS + hvcc.params.length) fail("too many NAL units in one item");
    if (p + L > data.length) fail("NAL unit length runs past the item (truncated)");
    let n = 0;
    for (let i = 0; i < L; i++) n = n * 256 + data[p + i]!;
    p += L;
    if (n === 0 || p + n > data.length) fail("NAL unit runs past the item (truncated)");
    units.push(data.subarray(p, p + n));
    p += n;
  }
  let total = 0;
  for (const u of units) total += 4 + u.length;
  return () => {
    const out = new Uint8Array(total);
    let q = 0;
    for (const u of units) {
      out[q] = u.length >>> 24;
      out[q + 1] = (u.length >>> 16) & 255;
      out[q + 2] = (u.length >>> 8) & 255;
      out[q + 3] = u.length & 255;
      out.set(u, q + 4);
      q += 4 + u.length;
    }
    return out;
  };
}

interface Meta {
  readonly items: Map<number, Item>;
  readonly primary: number;
  readonly idat: Box | undefined;
  readonly props: Box[];
  /** dimg references: from → to[]. */
  readonly refs: Map<number, number[]>;
}

function readMeta(b: Uint8Array): Meta {
  const top = boxes(b, 0, b.length);
  const meta = top.find((x) => x.type === T.meta);
  if (!meta) fail("no meta box");
  const children = boxes(b, meta.start + 4, meta.end);
  const items = new Map<number, Item>();
  let primary = -1;
  let idat: Box | undefined;
  const props: Box[] = [];
  const refs = new Map<number, number[]>(); // dimg: from → to[]
  for (const box of children) {
    if (box.type === T.pitm) {
      primary = u8(b, box.start) === 0 ? be16(b, box.start + 4) : be32(b, box.start + 4);
    } else if (box.type === T.iinf) {
      const first = box.start + (u8(b, box.start) === 0 ? 6 : 8);
      for (const infe of boxes(b, first, box.end)) {
        if (infe.type !== T.infe) continue;
        const v = u8(b, infe.start);
        if (v < 2) continue;
        const id = v === 2 ? be16(b, infe.start + 4) : be32(b, infe.start + 4);
        const type = be32(b, infe.start + (v === 2 ? 8 : 10));
        if (items.size >= MAX_ITEMS) fail("too many items");
        items.set(id, { type, extents: [], method: 0, props: [] });
      }
    } else if (box.type === T.idat) {
      idat = box;
    } else if (box.type === T.iref) {
      const wide = u8(b, box.start) !== 0;
      for (const ref of boxes(b, box.start + 4, box.end)) {
        if (ref.type !== T.dimg) continue;
        let p = ref.start;
        const from = wide ? be32(b, p) : be16(b, p);
        p += wide ? 4 : 2;
        const count = be16(b, p);
        p += 2;
        if (count > MAX_TILES) fail("too many derived-image references");
        const to: number[] = [];
        for (let i = 0; i < count; i++) {
          to.push(wide ? be32(b, p) : be16(b, p));
          p += wide ? 4 : 2;
        }
        if (p > ref.end) fail("iref box runs past its end");
        refs.set(from, to);
      }
    }
  }
  // iloc and iprp after iinf whatever their order in the file.
  for (const box of children) {
    if (box.type === T.iloc) parseIloc(b, box, items);
    else if (box.type === T.iprp) {
      const iprp = boxes(b, box.start, box.end);
      const ipco = iprp.find((x) => x.type === T.ipco);
      if (ipco) props.push(...boxes(b, ipco.start, ipco.end));
      for (const ipma of iprp.filter((x) => x.type === T.ipma)) associate(b, ipma, items);
    }
  }
  return { items, primary, idat, props, refs };
}

/** The primary item's hvcC payload and coded data (test fixtures re-wrap heif-enc's output). */
export function primaryHevcItem(b: Uint8Array): { hvcC: Uint8Array; data: Uint8Array } {
  const { items, primary, idat, props } = readMeta(b);
  const item = items.get(primary);
  const hvcc = item?.props.map((i) => props[i - 1]).find((x) => x?.type === T.hvcC);
  if (!item || item.type !== T.hvc1 || !hvcc) fail("the primary item is not a coded HEVC image");
  return { hvcC: b.subarray(hvcc.start, hvcc.end), data: itemData(b, item, idat) };
}

/**
 * The primary image's decode plan. Throws ImageHeaderError (malformed or truncated: 422) or
 * DecodeError "unsupported" (AV1, other codecs, derived images other than a grid: 415).
 */
export function planHeif(b: Uint8Array, maxPixels: number): HeifPlan {
  const { items, primary, idat, props, refs } = readMeta(b);
  const item = items.get(primary);
  if (!item) fail("no primary item");
  const prop = (it: Item, type: number) =>
    it.props.map((i) => props[i - 1]).find((x): x is Box => x?.type === type);
  const ispeOf = (it: Item) => {
    const box = prop(it, T.ispe);
    if (!box) fail("an image item has no size (ispe)");
    return { width: be32(b, box.start + 4), height: be32(b, box.start + 8) };
  };
  const colour = readColour(b, item, props);

  if (item.type === T.hvc1) {
    const { width, height } = ispeOf(item);
    checkPixels(width, height, maxPixels);
    return {
      width,
      height,
      tiles: [{ nals: codedNals(b, item, prop, idat), x: 0, y: 0 }],
      tileWidth: width,
      tileHeight: height,
      colour,
      grid: false,
    };
  }
  if (item.type !== T.grid) {
    const name = item.type === T.av01 ? "AV1 (AVIF)" : fourccName(item.type);
    throw new DecodeError("unsupported", `the primary image is ${name}, not HEVC`);
  }
  const data = itemData(b, item, idat);
  if (data.length < 8) fail("grid description too short");
  const large = (data[1]! & 1) === 1;
  const rows = data[2]! + 1;
  const cols = data[3]! + 1;
  const width = large ? be32(data, 4) : be16(data, 4);
  const height = large ? be32(data, 8) : be16(data, 6);
  checkPixels(width, height, maxPixels);
  const declared = prop(item, T.ispe) ? ispeOf(item) : undefined;
  if (declared && (declared.width !== width || declared.height !== height)) {
    fail(`the grid declares ${width}x${height} but its ispe ${declared.width}x${declared.height}`);
  }
  if (rows * cols > MAX_TILES) fail(`grid of ${rows}x${cols} tiles is over ${MAX_TILES}`);
  const tileIds = refs.get(primary) ?? [];
  if (tileIds.length !== rows * cols) {
    fail(`grid declares ${rows}x${cols} tiles but references ${tileIds.length}`);
  }
  let tileWidth = 0;
  let tileHeight = 0;
  const tiles: HeifTile[] = [];
  for (let i = 0; i < tileIds.length; i++) {
    const id = tileIds[i]!;
    const tile = items.get(id);
    if (!tile || id === primary) fail("a grid tile is missing or is the grid itself");
    // Only coded tiles: a grid of grids (or any derived tile) would recurse.
    if (tile.type !== T.hvc1)
      throw new DecodeError("unsupported", "a grid tile that is not an HEVC image");
    const size = ispeOf(tile);
    if (i === 0) {
      tileWidth = size.width;
      tileHeight = size.height;
      if (tileWidth * cols < width || tileHeight * rows < height) {
        fail("the grid's tiles do not cover its output size");
      }
      checkPixels(tileWidth, tileHeight, maxPixels);
    } else if (size.width !== tileWidth || size.height !== tileHeight) {
      fail("grid tiles differ in size");
    }
    const x = (i % cols) * tileWidth;
    const y = Math.floor(i / cols) * tileHeight;
    if (x >= width || y >= height) continue; // wholly outside the output: never decoded
    tiles.push({ nals: codedNals(b, tile, prop, idat), x, y });
  }
  // A grid without its own colr takes its first tile's (some writers put it there).
  const firstTile = items.get(tileIds[0]!)!;
  return {
    width,
    height,
    tiles,
    tileWidth,
    tileHeight,
    colour: colour.icc || colour.nclx ? colour : readColour(b, firstTile, props),
    grid: true,
  };
}

function codedNals(
  b: Uint8Array,
  item: Item,
  prop: (it: Item, type: number) => Box | undefined,
  idat: Box | undefined,
): () => Uint8Array {
  const hvcc = prop(item, T.hvcC);
  if (!hvcc) fail("an HEVC item has no hvcC configuration");
  return tileNals(parseHvcc(b, hvcc), itemData(b, item, idat));
}

function checkPixels(width: number, height: number, maxPixels: number): void {
  if (width === 0 || height === 0) fail("zero image dimension");
  if (width * height > maxPixels) {
    fail(`declared ${width}x${height} is over the pixel limit`);
  }
}

/**
 * An ipma box's payload [start, end): each item id → its 1-based ipco property indices, in
 * order. Bounded by the box, whatever count it declares (each entry takes at least 3 bytes).
 */
export function readIpma(b: Uint8Array, start: number, end: number): Map<number, number[]> {
  const version = u8(b, start);
  const wide = (u8(b, start + 3) & 1) === 1;
  const count = be32(b, start + 4);
  const out = new Map<number, number[]>();
  let p = start + 8;
  for (let i = 0; i < count && p < end; i++) {
    const id = version < 1 ? be16(b, p) : be32(b, p);
    p += version < 1 ? 2 : 4;
    const n = u8(b, p++);
    const indices = out.get(id) ?? [];
    for (let j = 0; j < n; j++) {
      indices.push(wide ? be16(b, p) & 0x7fff : u8(b, p) & 0x7f);
      p += wide ? 2 : 1;
    }
    if (p > end) fail("ipma box runs past its end");
    out.set(id, indices);
  }
  return out;
}

function associate(b: Uint8Array, ipma: Box, items: Map<number, Item>): void {
  for (const [id, indices] of readIpma(b, ipma.start, ipma.end))
    items.get(id)?.props.push(...indices);
}

function readColour(b: Uint8Array, item: Item, props: Box[]): HeifColour {
  let nclx: HeifColour["nclx"];
  let icc: Uint8Array | undefined;
  for (const i of item.props) {
    const box = props[i - 1];
    if (box?.type !== T.colr || box.start + 4 > box.end) continue;
    const kind = be32(b, box.start);
    if (kind === T.nclx && box.start + 11 <= box.end && !nclx) {
      nclx = { matrix: be16(b, box.start + 8), fullRange: (u8(b, box.start + 10) & 0x80) !== 0 };
    } else if ((kind === T.prof || kind === T.rICC) && !icc) {
      icc = b.subarray(box.start + 4, box.end);
    }
  }
  return { ...(nclx ? { nclx } : {}), ...(icc ? { icc } : {}) };
}

function fourccName(type: number): string {
  let s = "";
  for (let i = 3; i >= 0; i--) {
    const c = (type >>> (i * 8)) & 255;
    s += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : "?";
  }
  return `'${s}'`;
}
