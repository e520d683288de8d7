/** The production resizer: Cloudflare's Images binding (under `wrangler dev` it runs locally through sharp). Orients, converts and shrinks; metadata is stripped again by us afterwards. */
import { HttpError } from "../errors.ts";
import type { ImageFormat } from "../validate/index.ts";
import { orientedClipCrop, orientedTargetSize, type Resizer } from "./resizer.ts";

// HEIC/AVIF decode in production; under wrangler dev the local sharp cannot read HEIC and the
// binding answers with an error: the fallback (the WASM resizer) then takes the image, so what a
// developer tries locally is what production does. Without one it becomes a clear 415/422 below.
const FORMATS: ReadonlySet<ImageFormat> = new Set([
  "jpeg",
  "png",
  "webp",
  "gif",
  "tiff",
  "heic",
  "avif",
]);

/** An error the binding gives for a format it cannot read (not for a corrupt file). */
const CANNOT_READ = /heif|heic|unsupported|format/i;

export function createImagesBindingResizer(images: ImagesBinding, fallback?: Resizer): Resizer {
  return {
    name: "images",
    supports: (format) => FORMATS.has(format),
    async resize(input, options) {
      // The binding applies EXIF orientation itself: size the box for the oriented image.
      const crop = options.crop224 ? orientedClipCrop(input) : undefined;
      const size = crop
        ? { width: crop.size, height: crop.size }
        : orientedTargetSize(input, options.shortSide);
      // crop-224: the binding's own cover-and-centre crop. Its sizes and offsets may differ from
      // open_clip's by a pixel (the sharp and WASM resizers cut exactly open_clip's crop).
      const transform: ImageTransform = crop
        ? { width: crop.size, height: crop.size, fit: "cover", gravity: "center" }
        : { width: size.width, height: size.height, fit: "scale-down" };
      const stream = new Blob([input.bytes as Uint8Array<ArrayBuffer>]).stream();
      let result: ImageTransformationResult;
      try {
        result = await images
          .input(stream)
          .transform(transform)
          .output({ format: "image/jpeg", quality: options.quality });
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (fallback?.supports(input.format) && CANNOT_READ.test(message)) {
          return fallback.resize(input, options);
        }
        if (input.format === "heic" && CANNOT_READ.test(message)) {
          throw new HttpError(
            415,
            "unsupported_media_type",
            "HEIC cannot be decoded by this resizer",
            {
              cause: err,
            },
          );
        }
        throw new HttpError(422, "unprocessable_image", "the image could not be decoded", {
          cause: err,
        });
      }
      const bytes = new Uint8Array(await result.response().arrayBuffer());
      return { bytes, width: size.width, height: size.height };
    },
  };
}
