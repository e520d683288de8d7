/** A photo's path in; a small JPEG data URI for the contact sheet out, turned upright by its EXIF orientation (so that orientation twins look alike), or undefined when it cannot be decoded here (HEIC: this libvips has no HEVC). The one module of the ingest tools that imports sharp. */
import sharp from "sharp";

export async function thumbnail(path: string, px: number): Promise<string | undefined> {
  try {
    const jpeg = await sharp(path, { failOn: "none" })
      .rotate()
      .resize(px, px, { fit: "inside", withoutEnlargement: true })
      .jpeg({ quality: 70 })
      .toBuffer();
    return `data:image/jpeg;base64,${jpeg.toString("base64")}`;
  } catch {
    return undefined;
  }
}
