/** markers.ts: reassembling APP2 ICC chunks (order, gaps, duplicates, bad counts) and the EXIF orientation beside them. */
import { describe, expect, it } from "vitest";
import { iccSegments, withSegments } from "../testing/icc-profiles.ts";
import { readExifOrientation, readIccProfile } from "./markers.ts";

/** SOI, an APP0, the given segments, then SOS and EOI: enough header for the marker readers. */
function jpegWith(segments: readonly Uint8Array[]): Uint8Array {
  const app0 = Uint8Array.from([0xff, 0xe0, 0, 4, 0, 0]);
  const tail = Uint8Array.from([0xff, 0xda, 0, 2, 0xff, 0xd9]);
  const body = withSegments(Uint8Array.from([0xff, 0xd8, ...tail]), [app0, ...segments]);
  return body;
}

const profile = Uint8Array.from({ length: 2500 }, (_, i) => (i * 31) & 255);

describe("readIccProfile", () => {
  it("returns undefined without ICC chunks", () => {
    expect(readIccProfile(jpegWith([]))).toBeUndefined();
    expect(readIccProfile(new Uint8Array(0))).toBeUndefined();
    expect(readIccProfile(Uint8Array.from([0x89, 0x50, 0x4e, 0x47]))).toBeUndefined();
  });

  it("returns a single chunk as is", () => {
    expect(readIccProfile(jpegWith(iccSegments(profile)))).toEqual(profile);
  });

  it("reassembles chunks by sequence number, whatever their order in the file", () => {
    const inOrder = iccSegments(profile, 1000);
    expect(inOrder).toHaveLength(3);
    expect(readIccProfile(jpegWith(inOrder))).toEqual(profile);
    const reversed = iccSegments(profile, 1000, (seq, n) => n + 1 - seq);
    expect(reversed.map((s) => s[4 + 12])).toEqual([3, 2, 1]);
    expect(readIccProfile(jpegWith(reversed))).toEqual(profile);
    expect(readIccProfile(jpegWith([inOrder[2]!, inOrder[0]!, inOrder[1]!]))).toEqual(profile);
  });

  it("calls inconsistent chunks malformed", () => {
    const [a, b, c] = iccSegments(profile, 1000) as [Uint8Array, Uint8Array, Uint8Array];
    expect(readIccProfile(jpegWith([a, c]))).toBe("malformed"); // gap
    expect(readIccProfile(jpegWith([a, b, b, c]))).toBe("malformed"); // duplicate
    const badCount = c.slice();
    badCount[4 + 13] = 4; // count disagrees with the others
    expect(readIccProfile(jpegWith([a, b, badCount]))).toBe("malformed");
    const seqZero = a.slice();
    seqZero[4 + 12] = 0;
    expect(readIccProfile(jpegWith([seqZero, b, c]))).toBe("malformed");
    const pastCount = c.slice();
    pastCount[4 + 12] = 9;
    expect(readIccProfile(jpegWith([a, b, pastCount]))).toBe("malformed");
    // "ICC_PROFILE\0" with no room for the sequence bytes
    const stub = Uint8Array.from([0xff, 0xe2, 0, 14, ...a.subarray(4, 16)]);
    expect(readIccProfile(jpegWith([stub]))).toBe("malformed");
  });

  it("ignores other APP2 segments and stops at a broken segment length", () => {
    const mpf = Uint8Array.from([0xff, 0xe2, 0, 8, 0x4d, 0x50, 0x46, 0, 1, 2]);
    expect(readIccProfile(jpegWith([mpf, ...iccSegments(profile)]))).toEqual(profile);
    const jpeg = jpegWith(iccSegments(profile));
    // truncated inside the ICC segment: its length runs past the end, nothing is returned
    expect(readIccProfile(jpeg.subarray(0, 100))).toBeUndefined();
  });

  it("leaves EXIF orientation reading as it was", () => {
    const tiff = [0x4d, 0x4d, 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0];
    const exif = [0x45, 0x78, 0x69, 0x66, 0, 0, ...tiff, 0, 0, 0, 0];
    const app1 = Uint8Array.from([0xff, 0xe1, 0, exif.length + 2, ...exif]);
    expect(readExifOrientation(jpegWith([...iccSegments(profile), app1]))).toBe(6);
    expect(readExifOrientation(jpegWith(iccSegments(profile)))).toBe(1);
  });
});
