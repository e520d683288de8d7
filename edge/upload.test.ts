// The seed route's base64 decoding: the decoder itself is the check (no separate regular
// expression), with the runtime's Uint8Array.fromBase64 and with atob alike.
import { describe, expect, it } from "vitest";
import { fromBase64 } from "./upload.ts";

const native = (Uint8Array as unknown as { fromBase64?: (t: string) => Uint8Array<ArrayBuffer> })
  .fromBase64;
const decoders = [
  ["atob", undefined],
  ...(native ? [["Uint8Array.fromBase64", native] as const] : []),
] as const;

const bytes = Uint8Array.from({ length: 256 }, (_, i) => (i * 37 + 11) & 0xff);
const b64 = btoa(String.fromCharCode(...bytes));

describe.each(decoders)("fromBase64 through %s", (_name, decoder) => {
  it("decodes standard base64, padded or not, with whitespace anywhere", () => {
    expect(fromBase64(b64, decoder)).toEqual(bytes);
    expect(fromBase64(b64.replace(/=+$/, ""), decoder)).toEqual(bytes);
    const wrapped = b64.replace(/(.{76})/g, "$1\r\n");
    expect(fromBase64(wrapped, decoder)).toEqual(bytes);
    // Unicode whitespace (the old \s strip removed it too): removed, then decoded.
    expect(fromBase64(`${b64.slice(0, 8)}\u00a0\u2028${b64.slice(8)}`, decoder)).toEqual(bytes);
    expect(fromBase64("", decoder)).toEqual(new Uint8Array(0));
  });

  it.each([
    ["characters outside the alphabet", "%%%not*base64!!"],
    ["base64url's alphabet", "ab-_"],
    ["one spare character", "QUJDR"],
    ["padding in the middle", "QQ==QQ=="],
    ["padding that does not complete a quantum", "QQ="],
    ["a character beyond Latin-1", "QUJD\u0100"],
  ])("refuses %s", (_what, text) => {
    expect(fromBase64(text, decoder)).toBeUndefined();
  });
});
