/**
 * Edge fidelity benchmark (`npm run bench:fidelity`): for real photos, the cosine between the
 * embedding of the edge's small JPEG and the embedding of the original preprocessed directly at
 * full resolution, per short side (or RESIZE_MODE=crop-224: open_clip's exact 224x224 centre
 * crop, which the gpu-node only decodes), JPEG quality and resizer, with the bytes sent per image.
 * Calibrated vit-b32 on ONNX Runtime (CPU). Next to it, the median cosine between different
 * photos, for scale.
 *
 * Then the phone formats: each photo re-encoded as HEIC (an iPhone-like 512 grid by Debian's
 * heif-enc, its EXIF orientation as irot/imir, its ICC profile as colr), PNG and WebP (upright,
 * ICC kept), through each resizer at the default 256 px q80: cosine against the gpu-node's
 * embedding of that file, and against the JPEG twin's (same orientation and colour).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import sharp from "sharp";
import { createSharpResizer } from "../../edge/node/sharp-resizer.ts";
import { orientedClipCrop, orientedTargetSize, type Resizer } from "../../edge/resize/resizer.ts";
import { createJpegWasmResizer } from "../../edge/resize/wasm/core.ts";
import { createWasmResizer } from "../../edge/resize/wasm/formats.ts";
import { validateImage } from "../../edge/validate/index.ts";
import { decodeForClip } from "../../gpu-node/preprocess/decode.ts";
import { closeHeicDecoder } from "../../gpu-node/preprocess/heic-decoder.ts";
import { compileJpegWasm, JpegWasm } from "../../imaging/jpeg/codec.ts";
import { readIccProfile } from "../../imaging/jpeg/markers.ts";
import { compileWasm } from "../../imaging/wasm-instance.ts";
import { parseCli } from "../support/cli.ts";
import { openEmbedder } from "../support/embedder.ts";
import { cosine } from "../support/gpu-node-client.ts";
import { encodeHeic, haveHeifEnc, heifTransformFor } from "../support/heif.ts";
import { photo } from "../support/images.ts";
import { median } from "../support/stats.ts";

const USAGE = `usage: npm run bench:fidelity [-- --formats-only]

For the real photos of ../shared/corpus: the cosine between the embedding of the edge's small JPEG
and that of the original at full resolution, per short side, JPEG quality and resizer, with the
bytes sent per image (calibrated vit-b32 on ONNX Runtime, CPU). Then the same photos as HEIC (needs
Debian's heif-enc, else skipped with a message), PNG and WebP through every resizer.
--formats-only: the second part alone.`;
const { values: cli } = parseCli(USAGE, {
  options: { "formats-only": { type: "boolean", default: false } },
});

const ROOT = resolve(import.meta.dirname, "../..");
const CORPUS = resolve(ROOT, "../shared/corpus");
const limits = { maxPixels: 100_000_000, maxBytes: 50 * 1024 * 1024 };

interface Variant {
  readonly resizer: string;
  /** "256", "224" (short side) or "crop 224". */
  readonly shortSide: number | "crop 224";
  readonly quality: number;
}

/** One row's cosines and JPEG sizes, against the target: median ≥ 0.995, worst ≥ 0.97, median ≤ 25 KB. */
function summary(cosines: number[], sizes: number[], worst: { name: string; cosine: number }) {
  return {
    photos: cosines.length,
    medianCosine: +median(cosines).toFixed(5),
    worstCosine: +worst.cosine.toFixed(5),
    worstPhoto: worst.name,
    medianBytes: median(sizes),
    maxBytes: Math.max(...sizes),
    meetsTarget: median(cosines) >= 0.995 && worst.cosine >= 0.97 && median(sizes) <= 25_000,
  };
}

async function loadResizers(): Promise<Resizer[]> {
  // The WASM resizer's module is compiled from the committed .wasm, as wrangler would bundle it.
  const module = await compileJpegWasm(readFileSync(join(ROOT, "imaging/jpeg/jpeg.wasm")));
  return [createSharpResizer(), createJpegWasmResizer(module), localImagesBinding()];
}

/**
 * What the Images binding does under `wrangler dev` (miniflare runs it through sharp: autoOrient,
 * resize with sharp's default lanczos3 kernel, fit "scale-down" = inside without enlargement,
 * "cover" = cover with centre gravity), driven as edge/resize/images-binding.ts drives it. The
 * production binding is Cloudflare's own resizer and cannot be measured here.
 */
function localImagesBinding(): Resizer {
  return {
    name: "images (local)",
    supports: (format) => format !== "heic",
    async resize(input, options) {
      const crop = options.crop224 ? orientedClipCrop(input) : undefined;
      const size = crop
        ? { width: 224, height: 224 }
        : orientedTargetSize(input, options.shortSide);
      const image = sharp(input.bytes, { autoOrient: true }).resize(size.width, size.height, {
        fit: crop ? "cover" : "inside",
        withoutEnlargement: !crop,
        ...(crop ? { position: "centre" } : {}),
      });
      const { data, info } = await image
        .jpeg({ quality: options.quality })
        .toBuffer({ resolveWithObject: true });
      return { bytes: new Uint8Array(data), width: info.width, height: info.height };
    },
  };
}

async function inputs(): Promise<{ name: string; bytes: Uint8Array }[]> {
  if (existsSync(CORPUS)) {
    return ["photos", "odd-metadata"].flatMap((dir) =>
      readdirSync(join(CORPUS, dir))
        .filter((f) => /\.(jpe?g|tiff?)$/i.test(f))
        .map((f) => ({
          name: `${dir}/${f}`,
          bytes: new Uint8Array(readFileSync(join(CORPUS, dir, f))),
        })),
    );
  }
  console.log("(../shared/corpus is absent: using generated photos instead)");
  return Promise.all(
    Array.from({ length: 12 }, async (_, i) => ({
      name: `generated-${i}`,
      bytes: new Uint8Array(await photo(1600 + 80 * i, 1200, 100 + i, "jpeg", 92)),
    })),
  );
}

async function main(): Promise<void> {
  const embedder = await openEmbedder("vit-b32");
  const embed = async (pixels: Uint8Array) => (await embedder.embed([pixels]))[0]!;
  if (cli["formats-only"]) {
    await phoneFormats(embed);
    await embedder.close();
    await closeHeicDecoder();
    return;
  }

  const photos = await inputs();
  const resizers = await loadResizers();
  const reference = new Map<string, Float32Array>();
  for (const p of photos)
    reference.set(p.name, await embed((await decodeForClip(p.bytes, limits)).pixels));

  const refs = [...reference.values()];
  const between: number[] = [];
  for (let i = 0; i < refs.length; i++)
    for (let j = i + 1; j < refs.length; j++) between.push(cosine(refs[i]!, refs[j]!));

  const variants: Variant[] = resizers.flatMap((r) => [
    ...[224, 256].flatMap((shortSide) =>
      [80, 90].map((quality) => ({ resizer: r.name, shortSide, quality })),
    ),
    ...[80, 90, 95].map((quality) => ({
      resizer: r.name,
      shortSide: "crop 224" as const,
      quality,
    })),
  ]);
  const rows: Record<string, unknown>[] = [];
  for (const v of variants) {
    const resizer = resizers.find((r) => r.name === v.resizer)!;
    const cosines: number[] = [];
    const sizes: number[] = [];
    let worst = { name: "", cosine: 1 };
    for (const p of photos) {
      const valid = validateImage(p.bytes, limits, p.name);
      if (!resizer.supports(valid.format)) continue;
      const out = await resizer.resize(
        {
          bytes: p.bytes,
          format: valid.format,
          width: valid.width,
          height: valid.height,
          orientation: valid.orientation,
        },
        v.shortSide === "crop 224"
          ? { shortSide: 256, quality: v.quality, crop224: true }
          : { shortSide: v.shortSide, quality: v.quality },
      );
      const c = cosine(
        reference.get(p.name)!,
        await embed((await decodeForClip(out.bytes, limits)).pixels),
      );
      cosines.push(c);
      sizes.push(out.bytes.length);
      if (c < worst.cosine) worst = { name: p.name, cosine: c };
    }
    rows.push({ ...v, ...summary(cosines, sizes, worst) });
  }
  await phoneFormats(embed);
  await embedder.close();
  await closeHeicDecoder();

  console.log(`\n${photos.length} photos; model vit-b32 (generated, calibrated)`);
  console.log(
    `median cosine between DIFFERENT photos: ${median(between).toFixed(3)} (for scale)\n`,
  );
  console.log(
    "| resizer | short side | quality | median cosine | worst cosine (photo) | median bytes | max bytes | target |",
  );
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(
      `| ${r.resizer} | ${r.shortSide} | ${r.quality} | ${r.medianCosine} | ${r.worstCosine} (${r.worstPhoto}) | ${r.medianBytes} | ${r.maxBytes} | ${r.meetsTarget ? "PASS" : "MISS"} |`,
    );
  }
  console.log("\ntarget: median ≥ 0.995, worst ≥ 0.97, median ≤ 25 KB per image");
  const dir = join(ROOT, ".cache/bench");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `fidelity-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileSync(
    file,
    JSON.stringify({ photos: photos.length, betweenMedian: median(between), rows }, null, 2),
  );
  console.log(`\nwrote ${file}`);
}

type Embed = (pixels: Uint8Array) => Promise<Float32Array>;

/** Each photo as HEIC, PNG and WebP, through every resizer at 256 px q80 (see the file comment). */
async function phoneFormats(embed: Embed): Promise<void> {
  const file = (p: string) => readFileSync(join(ROOT, "imaging", p));
  const wasm = createWasmResizer({
    jpeg: await compileWasm(file("jpeg/jpeg.wasm")),
    hevc: await compileWasm(file("heif/hevc.wasm")),
    webp: await compileWasm(file("webp/webp.wasm")),
  });
  const local = localImagesBinding();
  // The local binding cannot read HEIC: the edge hands it to the WASM decoders (images-binding.ts).
  const images: Resizer = {
    name: local.name,
    supports: () => true,
    resize: (input, options) =>
      input.format === "heic" ? wasm.resize(input, options) : local.resize(input, options),
  };
  const resizers: Resizer[] = [wasm, createSharpResizer(), images];
  const jpegCodec = new JpegWasm(await compileWasm(file("jpeg/jpeg.wasm")));
  const bigLimits = { libjpegBytes: 256 << 20, outputBytes: 256 << 20 };
  const heif = haveHeifEnc();
  if (!heif) console.log("(heif-enc is absent: HEIC is skipped; apt-get install libheif-examples)");
  const photos = (await inputs()).filter((p) => /\.jpe?g$/i.test(p.name) || !existsSync(CORPUS));
  interface Twin {
    name: string;
    format: string;
    bytes: Uint8Array;
    jpegReference: Float32Array;
  }
  const twins: Twin[] = [];
  for (const p of photos) {
    const valid = validateImage(p.bytes, limits, p.name);
    const jpegReference = await embed((await decodeForClip(p.bytes, limits)).pixels);
    const icc = readIccProfile(p.bytes);
    const profile = icc instanceof Uint8Array ? icc : undefined;
    if (heif) {
      // The stored pixels as decoded (libjpeg, no colour conversion: sharp would convert them to
      // sRGB), turned by irot/imir as EXIF turned them, tagged with the same profile.
      const stored = await jpegCodec.decode(
        p.bytes,
        () => 1,
        bigLimits,
        (px) => ({
          width: px.width,
          height: px.height,
          data: px.data.slice(),
          channels: px.channels,
        }),
      );
      if (stored.channels !== 3) continue; // CMYK: not a phone photo
      const bytes = await encodeHeic(stored.data, stored.width, stored.height, {
        quality: 80,
        ...heifTransformFor(valid.orientation),
        ...(profile ? { icc: profile } : {}),
      });
      twins.push({ name: p.name, format: "heic", bytes, jpegReference });
    }
    const upright = () => sharp(p.bytes).rotate().keepIccProfile();
    twins.push({
      name: p.name,
      format: "png",
      bytes: await upright().png().toBuffer(),
      jpegReference,
    });
    twins.push({
      name: p.name,
      format: "webp",
      bytes: await upright().webp({ quality: 90 }).toBuffer(),
      jpegReference,
    });
  }
  const references = new Map<Twin, Float32Array>();
  for (const t of twins)
    references.set(t, await embed((await decodeForClip(t.bytes, limits)).pixels));

  console.log(
    "\n| format | resizer | photos | median cosine | worst cosine (photo) | vs JPEG twin: median / worst | median bytes | max bytes | target |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|");
  const rows: Record<string, unknown>[] = [];
  for (const format of ["heic", "png", "webp"]) {
    for (const resizer of resizers) {
      const cos: number[] = [];
      const twinCos: number[] = [];
      const sizes: number[] = [];
      let worst = { name: "", cosine: 1 };
      let twinWorst = { name: "", cosine: 1 };
      for (const t of twins.filter((x) => x.format === format)) {
        const v = validateImage(t.bytes, limits, t.name);
        const out = await resizer.resize(
          {
            bytes: t.bytes,
            format: v.format,
            width: v.width,
            height: v.height,
            orientation: v.orientation,
          },
          { shortSide: 256, quality: 80 },
        );
        const e = await embed((await decodeForClip(out.bytes, limits)).pixels);
        const c = cosine(references.get(t)!, e);
        cos.push(c);
        const tc = cosine(t.jpegReference, e);
        twinCos.push(tc);
        if (tc < twinWorst.cosine) twinWorst = { name: t.name, cosine: tc };
        sizes.push(out.bytes.length);
        if (c < worst.cosine) worst = { name: t.name, cosine: c };
      }
      if (cos.length === 0) continue;
      const row = {
        format,
        resizer: resizer.name,
        ...summary(cos, sizes, worst),
        twinMedian: +median(twinCos).toFixed(5),
        twinWorst: +twinWorst.cosine.toFixed(5),
        twinWorstPhoto: twinWorst.name,
      };
      rows.push(row);
      console.log(
        `| ${format} | ${row.resizer} | ${row.photos} | ${row.medianCosine} | ${row.worstCosine} (${row.worstPhoto}) | ${row.twinMedian} / ${row.twinWorst} (${row.twinWorstPhoto}) | ${row.medianBytes} | ${row.maxBytes} | ${row.meetsTarget ? "PASS" : "MISS"} |`,
      );
    }
  }
  const dir = join(ROOT, ".cache/bench");
  mkdirSync(dir, { recursive: true });
  const out = join(dir, `fidelity-formats-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  writeFileSync(out, JSON.stringify({ rows }, null, 2));
  console.log(`\nwrote ${out}`);
}

await main();
