// The seed route's base64 cases, shared by upload.test.ts (workerd: Uint8Array.fromBase64, atob)
// and upload.node.test.ts (Node: its Buffer, then atob): the decoder itself is the check.
import { describe, expect, it } from "vitest";
import { type Base64Decoders, fromBase64, nodeBufferBase64 } from "../upload.ts";

/** Every decoder this runtime offers, each alone with atob behind it. */
export function runtimeDecoders(): [string, Base64Decoders][] {
  const native = (Uint8Array as unknown as { fromBase64?: (t: string) => Uint8Array<ArrayBuffer> })
    .fromBase64;
  return [
    ["atob", {}],
    ...(native ? [["Uint8Array.fromBase64", { native }] as [string, Base64Decoders]] : []),
    ...(nodeBufferBase64
      ? [["Buffer, then atob", { buffer: nodeBufferBase64 }] as [string, Base64Decoders]]
      : []),
  ];
}

const bytes = Uint8Array.from({ length: 256 }, (_, i) => (i * 37 + 11) & 0xff);
const b64 = btoa(String.fromCharCode(...bytes));

export function base64Cases(decoders: [string, Base64Decoders][]): void {
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

    it("gives atob's answer for non-canonical trailing bits and hands out bytes of their own", () => {
      expect(fromBase64("QR==", decoder)).toEqual(
        Uint8Array.from(atob("QR=="), (c) => c.charCodeAt(0)),
      );
      const small = fromBase64("QUJD", decoder)!;
      expect(small.byteOffset).toBe(0);
      expect(small.buffer.byteLength).toBe(3);
    });
  });
}

/** Node only: the Buffer path alone. */
export function bufferCases(): void {
  it.runIf(nodeBufferBase64 !== undefined)(
    "Node's Buffer path takes canonical base64 alone",
    () => {
      expect(nodeBufferBase64!(b64)).toEqual(bytes);
      expect(nodeBufferBase64!(b64.replace(/=+$/, ""))).toEqual(bytes);
      // Anything Buffer would skip over is left to atob.
      expect(nodeBufferBase64!(`${b64.slice(0, 8)}\n${b64.slice(8)}`)).toBeUndefined();
      expect(nodeBufferBase64!("ab-_")).toBeUndefined();
      expect(nodeBufferBase64!("QUJD=")).toBeUndefined(); // padding past a whole quantum
      expect(nodeBufferBase64!("QQ==QQ==")).toBeUndefined();
      expect(nodeBufferBase64!("QUJD\u0100QUJD")).toBeUndefined();
      // Non-canonical trailing bits: the same byte atob gives.
      expect(nodeBufferBase64!("QR==")).toEqual(Uint8Array.of(0x41));
    },
  );

  it("gives atob's verdict on 5,000 random near-base64 strings", () => {
    const pieces = [
      ..."ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
      "=",
      "==",
      "-",
      "_",
      " ",
      "\n",
      "\u00a0",
      "\u0100",
      "%",
    ];
    let seed = 99;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    for (let i = 0; i < 5000; i++) {
      let text = "";
      const length = rand(24);
      // Mostly the alphabet: the junk lands in otherwise well-formed text.
      for (let k = 0; k < length; k++)
        text += pieces[rand(8) ? rand(64) : 64 + rand(pieces.length - 64)];
      if (rand(3) === 0) text += "=".repeat(rand(3));
      expect(fromBase64(text, { buffer: nodeBufferBase64 }), JSON.stringify(text)).toEqual(
        fromBase64(text, {}),
      );
    }
  });
}
