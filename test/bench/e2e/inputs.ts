/** The end-to-end benchmark's inputs: 224-px JPEGs like the seed's, generated 12 MP phone photos of 3–5 MB (cached), and the corpus's real phone photo when ../shared/corpus is present. */
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import sharp from "sharp";
import { photoPixels } from "../../support/images.ts";
import { ROOT } from "../child.ts";
import { benchPhotos } from "../images.ts";

export type InputName = "seed-224" | "phone-12mp" | "phone-real";

export interface InputSet {
  readonly name: InputName;
  readonly description: string;
  readonly images: readonly Buffer[];
  readonly meanBytes: number;
}

const REAL_PHONE = resolve(ROOT, "../shared/corpus/photos/mobile_jolla.jpg");

function set(name: InputName, description: string, images: readonly Buffer[]): InputSet {
  const meanBytes = images.reduce((s, b) => s + b.length, 0) / images.length;
  return { name, description, images, meanBytes };
}

/**
 * 224x224 q90 JPEGs (the seed benchmarked 224-px images of about 10 KB): the centre of the bench's
 * grainy 341x256 photos.
 */
export async function seedImages(count: number): Promise<InputSet> {
  const sources = await benchPhotos(count, 5000);
  const images = await Promise.all(
    sources.map((s) =>
      sharp(s)
        .extract({ left: 58, top: 16, width: 224, height: 224 })
        .jpeg({ quality: 90 })
        .toBuffer(),
    ),
  );
  return set("seed-224", "224x224 JPEG q90 (like the seed's test images)", images);
}

const PHONE_W = 4032;
const PHONE_H = 3024;

/**
 * One 12 MP photo-like JPEG: a smooth seeded scene drawn small and scaled up, plus per-pixel
 * grain so that it compresses like a phone photo (3–5 MB at q92), with camera EXIF and GPS that
 * the edge must strip.
 */
async function phonePhoto(seed: number): Promise<Buffer> {
  const small = photoPixels(504, 378, seed);
  const px = await sharp(small, { raw: { width: 504, height: 378, channels: 3 } })
    .resize(PHONE_W, PHONE_H, { kernel: "cubic" })
    .raw()
    .toBuffer();
  const grain = 14 + (seed % 3) * 3;
  let s = (seed * 2654435761 + 11) >>> 0 || 1;
  for (let p = 0; p < px.length; p += 3) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    const g = Math.round((((s & 0xff) + ((s >>> 8) & 0xff) - 255) / 255) * grain);
    for (let c = 0; c < 3; c++) px[p + c] = Math.max(0, Math.min(255, px[p + c]! + g));
  }
  return sharp(px, { raw: { width: PHONE_W, height: PHONE_H, channels: 3 } })
    .jpeg({ quality: 92 })
    .withExif({
      IFD0: { Make: "BenchPhone", Model: "12MP", Software: "photo-embed-ingest bench" },
      IFD3: { GPSLatitudeRef: "N", GPSLatitude: "48/1 8/1 0/1" },
    })
    .toBuffer();
}

/** `count` generated 12 MP phone photos, cached under `cacheDir`/bench/inputs. */
export async function phonePhotos(count: number, cacheDir: string): Promise<InputSet> {
  const dir = join(cacheDir, "bench", "inputs");
  await mkdir(dir, { recursive: true });
  const images: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const file = join(dir, `phone-${PHONE_W}x${PHONE_H}-${i}.jpg`);
    const cached = await readFile(file).catch(() => undefined);
    if (cached) {
      images.push(cached);
      continue;
    }
    const photo = await phonePhoto(100 + i);
    await writeFile(file, photo);
    images.push(photo);
  }
  return set(
    "phone-12mp",
    `generated ${PHONE_W}x${PHONE_H} JPEG q92 with EXIF + GPS (photo-like grain)`,
    images,
  );
}

/** The corpus's real phone photo (3264x2448, ~0.8 MB), or undefined without ../shared/corpus. */
export async function realPhonePhoto(): Promise<InputSet | undefined> {
  if (!existsSync(REAL_PHONE)) return undefined;
  return set("phone-real", "real phone photo, corpus mobile_jolla.jpg (3264x2448)", [
    await readFile(REAL_PHONE),
  ]);
}
