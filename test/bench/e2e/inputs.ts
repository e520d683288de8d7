/** The end-to-end benchmark's inputs: the seed benchmark's own random-noise 224-px PNGs, 224-px JPEGs like the seed's, generated 12 MP phone photos of 3–5 MB (cached), and the corpus's real phone photo when ../shared/corpus is present. */
import { existsSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import sharp from "sharp";
import {
  benchPhotos,
  PHONE_HEIGHT,
  PHONE_WIDTH,
  phonePhoto,
  seedNoisePng,
} from "../../support/images.ts";
import { ROOT } from "../../support/processes.ts";

export type InputName = "seed-png" | "seed-224" | "phone-12mp" | "phone-real";

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
 * What the seed's own benchmark sends: 224x224 RGB random noise as PNG (~150 KB each: noise does
 * not compress), seeded so that every run sends the same bytes.
 */
export async function seedNoisePngs(count: number): Promise<InputSet> {
  const images = await Promise.all(Array.from({ length: count }, (_, i) => seedNoisePng(9000 + i)));
  return set("seed-png", "224x224 random-noise PNG (the seed benchmark's own images)", images);
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

/** `count` generated 12 MP phone photos, cached under `cacheDir`/bench/inputs. */
export async function phonePhotos(count: number, cacheDir: string): Promise<InputSet> {
  const dir = join(cacheDir, "bench", "inputs");
  await mkdir(dir, { recursive: true });
  const images: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const file = join(dir, `phone-${PHONE_WIDTH}x${PHONE_HEIGHT}-${i}.jpg`);
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
    `generated ${PHONE_WIDTH}x${PHONE_HEIGHT} JPEG q92 with EXIF + GPS (photo-like grain)`,
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
