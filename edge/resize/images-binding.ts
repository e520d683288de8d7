/** The production resizer: Cloudflare's Images binding (under `wrangler dev` it runs locally through sharp). Orients, converts and shrinks; metadata is stripped again by us afterwards. */
import { HttpError } from "../errors.ts";
import type { ImageFormat } from "../validate.ts";
import { orientedTargetSize, type Resizer } from "./resizer.ts";

// HEIC/AVIF decode in production; under wrangler dev the local sharp cannot read HEIC and the
// binding answers with an error, which becomes a clear 415/422 below.
const FORMATS: ReadonlySet<ImageFormat> = new Set([
  "jpeg",
  "png",
  "webp",
  "gif",
  "tiff",
  "heic",
  "avif",
]);

export function createImagesBindingResizer(images: ImagesBinding): Resizer {
  return {
    name: "images",
    supports: (format) => FORMATS.has(format),
    async resize(input, options) {
      // The binding applies EXIF orientation itself: size the box for the oriented image.
      const size = orientedTargetSize(input, options.shortSide);
      const stream = new Blob([input.bytes as Uint8Array<ArrayBuffer>]).stream();
      let result: ImageTransformationResult;
      try {
        result = await images
          .input(stream)
          .transform({ width: size.width, height: size.height, fit: "scale-down" })
          .output({ format: "image/jpeg", quality: options.quality });
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (input.format === "heic" && /heif|heic|unsupported|format/i.test(message)) {
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
