/** The self-hosted resizer (Node only, never in the Worker bundle): sharp/libvips orients, converts to sRGB, shrinks and re-encodes without metadata; HEIC (no HEVC in this libvips) goes to the WASM decoders instead. */
import sharp from "sharp";
import { HttpError } from "../errors.ts";
import { orientedClipCrop, orientedTargetSize, type Resizer } from "../resize/resizer.ts";
import type { ImageFormat } from "../validate/index.ts";
import { nodeWasmResizer } from "./wasm-resizer.ts";

// The prebuilt libvips has no HEVC decoder: HEIC goes to the Worker's WASM decoders (libde265),
// so the Node edge accepts what production's Images binding accepts.
const FORMATS: ReadonlySet<ImageFormat> = new Set(["jpeg", "png", "webp", "gif", "tiff", "avif"]);
const WASM_FORMATS: ReadonlySet<ImageFormat> = new Set(["heic"]);

export function createSharpResizer(): Resizer {
  return {
    name: "sharp",
    supports: (format) => FORMATS.has(format) || WASM_FORMATS.has(format),
    async resize(input, options) {
      if (!FORMATS.has(input.format)) return (await nodeWasmResizer()).resize(input, options);
      const size = orientedTargetSize(input, options.shortSide);
      const crop = options.crop224 ? orientedClipCrop(input) : undefined;
      try {
        let image = sharp(input.bytes, {
          failOn: "error",
          limitInputPixels: input.width * input.height,
          pages: 1,
        }).autoOrient();
        image = crop
          ? // open_clip's own resize and crop, as the gpu-node would do them (bicubic, exact
            // torchvision sizes): the gpu-node then only decodes.
            image
              .resize(crop.resizeWidth, crop.resizeHeight, {
                fit: "fill",
                kernel: "cubic",
                fastShrinkOnLoad: false,
              })
              .extract({ left: crop.left, top: crop.top, width: crop.size, height: crop.size })
          : image.resize(size.width, size.height, { fit: "fill", kernel: "lanczos3" });
        const { data, info } = await image
          .toColourspace("srgb")
          // sharp writes no metadata unless asked: no EXIF, XMP or ICC. Standard Huffman
          // tables: see ResizedImage.
          .jpeg({ quality: options.quality, mozjpeg: false, optimiseCoding: false })
          .toBuffer({ resolveWithObject: true });
        return { bytes: new Uint8Array(data), width: info.width, height: info.height };
      } catch (err) {
        throw new HttpError(422, "unprocessable_image", "the image could not be decoded", {
          cause: err,
        });
      }
    },
  };
}
