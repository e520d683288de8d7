/** A path in; its bytes, sha256 and image format (from the content, never the extension) out — or why it cannot be a photo: too large, unreadable, or not an image (with what it looks like instead). */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { describeUnknown, sniffFormat } from "../edge/validate/sniff.ts";
import { describeFsError } from "./walk.ts";

export type ReadPhoto =
  | {
      readonly ok: true;
      readonly data: Uint8Array;
      readonly sha256: string;
      readonly format: string;
    }
  | {
      readonly ok: false;
      readonly code: "too_large" | "unreadable" | "not_image";
      readonly message: string;
      readonly sha256: string | null;
      /** Worth trying again on the next run (an I/O error may pass; a text file stays text). */
      readonly retryable: boolean;
    };

export function sha256Hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export async function readPhoto(path: string, size: number, maxBytes: number): Promise<ReadPhoto> {
  if (size > maxBytes) {
    return {
      ok: false,
      code: "too_large",
      message: `${size} bytes, over --max-file-bytes ${maxBytes}`,
      sha256: null,
      retryable: false,
    };
  }
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (error) {
    return {
      ok: false,
      code: "unreadable",
      message: `unreadable: ${describeFsError(error)}`,
      sha256: null,
      retryable: true,
    };
  }
  const sha256 = sha256Hex(data);
  const format = sniffFormat(data);
  if (format === undefined) {
    return {
      ok: false,
      code: "not_image",
      message: describeUnknown(data),
      sha256,
      retryable: false,
    };
  }
  return { ok: true, data, sha256, format };
}
