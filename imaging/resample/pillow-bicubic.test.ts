import { describe, expect, it } from "vitest";
import { type RgbImage, resizeBicubicWindow } from "./pillow-bicubic.ts";

/** A grey image from one row of values: R = G = B. */
function greyRow(values: readonly number[]): RgbImage {
  return {
    data: Uint8Array.from(values.flatMap((v) => [v, v, v])),
    width: values.length,
    height: 1,
  };
}

function seeded(width: number, height: number): RgbImage {
  let state = 99;
  const data = Uint8Array.from({ length: width * height * 3 }, () => {
    state = (state * 1103515245 + 12345) >>> 0;
    return state >>> 24;
  });
  return { data, width, height };
}

describe("resizeBicubicWindow", () => {
  it("matches Pillow 9.4 Image.resize((25, 1), BICUBIC) byte for byte", () => {
    const image = greyRow([0, 0, 0, 255, 255, 0, 0, 100, 200, 50]);
    const window = { outWidth: 25, outHeight: 1, left: 0, top: 0, width: 25, height: 1 };
    const out = resizeBicubicWindow(image, window);
    // Printed by /usr/bin/python3 with Pillow 9.4.0 from the same 10 pixels.
    const pillow = [
      0, 0, 0, 0, 0, 0, 16, 128, 239, 255, 255, 239, 128, 16, 0, 0, 6, 44, 90, 138, 188, 194, 126,
      60, 35,
    ];
    expect([...out.filter((_, i) => i % 3 === 0)]).toEqual(pillow);
  });

  it("upscales 1x1 to a uniform image", () => {
    const image = { data: Uint8Array.of(200, 30, 90), width: 1, height: 1 };
    const window = { outWidth: 224, outHeight: 224, left: 0, top: 0, width: 224, height: 224 };
    const out = resizeBicubicWindow(image, window);
    for (let i = 0; i < out.length; i += 3) {
      expect([out[i], out[i + 1], out[i + 2]]).toEqual([200, 30, 90]);
    }
  });

  it("computes a window identical to the same region of the full resize", () => {
    const image = seeded(37, 23);
    const full = resizeBicubicWindow(image, {
      outWidth: 101,
      outHeight: 64,
      left: 0,
      top: 0,
      width: 101,
      height: 64,
    });
    const window = { outWidth: 101, outHeight: 64, left: 30, top: 11, width: 40, height: 32 };
    const part = resizeBicubicWindow(image, window);
    for (let y = 0; y < window.height; y++) {
      const from = ((y + window.top) * 101 + window.left) * 3;
      expect(part.subarray(y * 40 * 3, (y + 1) * 40 * 3)).toEqual(
        full.subarray(from, from + 40 * 3),
      );
    }
  });

  it("writes into a caller's buffer", () => {
    const out = new Uint8Array(4 * 4 * 3);
    const window = { outWidth: 4, outHeight: 4, left: 0, top: 0, width: 4, height: 4 };
    expect(resizeBicubicWindow(seeded(2, 2), window, out)).toBe(out);
  });
});
