/** Worker thread: receives HEIC/HEIF bytes, hands back the first image as 8-bit sRGB (alpha dropped, ICC profile applied). */
import { createRequire } from "node:module";
import { parentPort } from "node:worker_threads";
import { planHeif } from "../../imaging/heif/container.ts";
import { iccToSrgb } from "../../imaging/icc.ts";

/** What the main thread sends: one encoded file and the pixel budget it may decode. */
export interface HeicRequest {
  readonly id: number;
  readonly bytes: Uint8Array;
  readonly maxPixels: number;
}

/** What comes back: "ready" once the decoder has loaded, then one reply per request. */
export type HeicReply =
  | { readonly id: 0; readonly ok: "ready" }
  | {
      readonly id: number;
      readonly ok: true;
      readonly width: number;
      readonly height: number;
      readonly rgb: Uint8Array;
    }
  | {
      readonly id: number;
      readonly ok: false;
      readonly reason: "too_many_pixels" | "corrupt";
      readonly message: string;
    };

interface HeifImage {
  readonly width: number;
  readonly height: number;
  decode(): Promise<{ width: number; height: number; data: Uint8ClampedArray }>;
}
type HeifImages = HeifImage[] & { dispose(): void };
type DecodeAll = (input: { buffer: Uint8Array }) => Promise<HeifImages>;

// heic-decode is CommonJS without types.
const decodeAll = (createRequire(import.meta.url)("heic-decode") as { all: DecodeAll }).all;

/** RGBA → RGB by dropping alpha, as Pillow's convert("RGB") does (no compositing). */
function dropAlpha(rgba: Uint8Array | Uint8ClampedArray, pixels: number): Uint8Array {
  const rgb = new Uint8Array(pixels * 3);
  for (let p = 0, i = 0, o = 0; p < pixels; p++, i += 4, o += 3) {
    rgb[o] = rgba[i]!;
    rgb[o + 1] = rgba[i + 1]!;
    rgb[o + 2] = rgba[i + 2]!;
  }
  return rgb;
}

/** The file's ICC profile as a conversion to sRGB; undefined when untagged or unreadable. */
function toSrgb(bytes: Uint8Array, maxPixels: number): ((rgb: Uint8Array) => void) | undefined {
  let icc: Uint8Array | undefined;
  try {
    icc = planHeif(bytes, maxPixels).colour.icc;
  } catch {
    // A layout libheif decodes but the container reader does not plan: taken as sRGB.
    return undefined;
  }
  return icc === undefined ? undefined : iccToSrgb(icc, "rgb").apply;
}

async function decode(request: HeicRequest): Promise<HeicReply> {
  const { id, bytes, maxPixels } = request;
  let images: HeifImages;
  try {
    images = await decodeAll({ buffer: bytes });
  } catch (error) {
    return { id, ok: false, reason: "corrupt", message: messageOf(error) };
  }
  try {
    const first = images[0];
    if (!first) return { id, ok: false, reason: "corrupt", message: "no image in the HEIF file" };
    // The handle knows its size from the header (ispe): refuse before allocating any pixels.
    if (first.width * first.height > maxPixels) {
      const size = `${first.width}x${first.height}`;
      return { id, ok: false, reason: "too_many_pixels", message: size };
    }
    const { width, height, data } = await first.decode();
    const rgb = dropAlpha(data, width * height);
    // libheif hands back the samples as coded; a tagged HEIC (iPhones: Display P3) becomes sRGB
    // here, as sharp does for every other format and the edge does for HEIC.
    toSrgb(bytes, maxPixels)?.(rgb);
    return { id, ok: true, width, height, rgb };
  } catch (error) {
    return { id, ok: false, reason: "corrupt", message: messageOf(error) };
  } finally {
    images.dispose();
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

const port = parentPort;
if (port) {
  // libheif-js prints parse failures with console.log, which a worker forwards to the process's
  // stdout; failures are reported in the reply instead.
  console.log = () => {};
  port.on("message", async (request: HeicRequest) => {
    const reply = await decode(request);
    // The RGB buffer is transferred, not copied.
    port.postMessage(reply, reply.ok === true ? [reply.rgb.buffer as ArrayBuffer] : []);
  });
  port.postMessage({ id: 0, ok: "ready" } satisfies HeicReply);
}
