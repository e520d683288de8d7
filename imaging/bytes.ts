/** Bounds-checked reads of untrusted image bytes: an offset and a byte order in, a number out, or an ImageHeaderError (never a RangeError or a silent `undefined`). */

/** The header is missing, truncated or contradicts itself; the edge turns it into a 422. */
export class ImageHeaderError extends Error {
  override readonly name = "ImageHeaderError";
}

export function fail(message: string): never {
  throw new ImageHeaderError(message);
}

export const TRUNCATED = "truncated header";

export function u8(b: Uint8Array, o: number): number {
  if (o < 0 || o >= b.length) fail(TRUNCATED);
  return b[o]!;
}
export function be16(b: Uint8Array, o: number): number {
  if (o < 0 || o + 2 > b.length) fail(TRUNCATED);
  return (b[o]! << 8) | b[o + 1]!;
}
export function le16(b: Uint8Array, o: number): number {
  if (o < 0 || o + 2 > b.length) fail(TRUNCATED);
  return b[o]! | (b[o + 1]! << 8);
}
export function le24(b: Uint8Array, o: number): number {
  if (o < 0 || o + 3 > b.length) fail(TRUNCATED);
  return b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16);
}
export function be32(b: Uint8Array, o: number): number {
  if (o < 0 || o + 4 > b.length) fail(TRUNCATED);
  return b[o]! * 0x1000000 + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!);
}
export function le32(b: Uint8Array, o: number): number {
  if (o < 0 || o + 4 > b.length) fail(TRUNCATED);
  return b[o + 3]! * 0x1000000 + ((b[o + 2]! << 16) | (b[o + 1]! << 8) | b[o]!);
}

/** A four-character code as the big-endian number `fourccAt` reads. */
export function fourcc(s: string): number {
  return (
    ((s.charCodeAt(0) << 24) |
      (s.charCodeAt(1) << 16) |
      (s.charCodeAt(2) << 8) |
      s.charCodeAt(3)) >>>
    0
  );
}

/** Unchecked: callers make sure 4 bytes are there. */
export function fourccAt(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/** b[from, to) as a Latin-1 string (for sniffing text; never echoed to clients). */
export function latin1(b: Uint8Array, from: number, to: number): string {
  let s = "";
  for (let i = from; i < to; i++) s += String.fromCharCode(b[i]!);
  return s;
}

/** `parts` one after another in one new array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
