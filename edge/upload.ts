/** Upload parsing: a raw image body, multipart `image` parts, or the seed's base64 JSON, into a bounded list of byte arrays. Content-Type says how to parse, never what the image is. */
import type { EdgeConfig } from "./config.ts";
import { HttpError, imageLabel } from "./errors.ts";

export interface Upload {
  readonly bytes: Uint8Array;
  /** For error messages: the part's file name, if any. */
  readonly name?: string;
}

export type EncodingFormat = "float" | "base64";

export interface ParsedUpload {
  readonly uploads: Upload[];
  readonly encodingFormat: EncodingFormat;
}

function encodingFormat(value: unknown): EncodingFormat {
  if (value === undefined || value === null || value === "" || value === "float") return "float";
  if (value === "base64") return "base64";
  throw new HttpError(400, "bad_request", 'encoding_format must be "float" or "base64"');
}

function checkCount(n: number, config: EdgeConfig): void {
  if (n === 0) throw new HttpError(400, "bad_request", "the request holds no image");
  if (n > config.maxImagesPerRequest) {
    throw new HttpError(
      413,
      "payload_too_large",
      `the request holds ${n} images; the limit is ${config.maxImagesPerRequest}`,
    );
  }
}

/** POST /v1/embeddings: `image/*` (or octet-stream) raw body, or multipart/form-data with `image` parts. */
export async function parseEmbeddingsUpload(
  req: Request,
  config: EdgeConfig,
): Promise<ParsedUpload> {
  const type = (req.headers.get("content-type") ?? "").toLowerCase();
  const query = new URL(req.url).searchParams.get("encoding_format") ?? undefined;
  if (type.startsWith("multipart/form-data")) {
    let form: FormData;
    try {
      form = await req.formData();
    } catch (err) {
      if (err instanceof HttpError) throw err;
      throw new HttpError(400, "bad_request", "the multipart body could not be parsed", {
        cause: err,
      });
    }
    const parts = form.getAll("image");
    checkCount(parts.length, config);
    const uploads: Upload[] = [];
    for (const [i, part] of parts.entries()) {
      if (typeof part === "string") {
        throw new HttpError(
          400,
          "bad_request",
          `${imageLabel(i)}: the "image" part must be a file`,
        );
      }
      uploads.push({
        bytes: new Uint8Array(await part.arrayBuffer()),
        name: part.name || undefined,
      });
    }
    const field = form.get("encoding_format");
    return { uploads, encodingFormat: encodingFormat(typeof field === "string" ? field : query) };
  }
  if (type.startsWith("image/") || type.startsWith("application/octet-stream")) {
    const bytes = new Uint8Array(await req.arrayBuffer());
    return { uploads: [{ bytes }], encodingFormat: encodingFormat(query) };
  }
  throw new HttpError(
    415,
    "unsupported_media_type",
    "send one image as the body (Content-Type: image/*) or multipart/form-data with image parts",
  );
}

/** The seed's PyTorch FastAPI request: `{"images": [base64 or data URI, ...], "model_name"?, "pretrained"?}`. */
export interface Base64Request {
  readonly uploads: Upload[];
  readonly modelName: string | undefined;
  readonly pretrained: string | undefined;
}

export async function parseBase64Upload(req: Request, config: EdgeConfig): Promise<Base64Request> {
  let body: unknown;
  try {
    body = await req.json();
  } catch (err) {
    if (err instanceof HttpError) throw err;
    throw new HttpError(400, "bad_request", "the body is not valid JSON", { cause: err });
  }
  const images = (body as { images?: unknown })?.images;
  if (!Array.isArray(images)) {
    throw new HttpError(400, "bad_request", 'the body must be {"images": [base64, ...]}');
  }
  checkCount(images.length, config);
  const uploads = images.map((item, i): Upload => {
    if (typeof item !== "string") {
      throw new HttpError(400, "bad_request", `${imageLabel(i)}: must be a base64 string`);
    }
    // Accept data URIs ("data:image/jpeg;base64,...") as the seed's clients send them.
    const comma = item.startsWith("data:") ? item.indexOf(",") : -1;
    const text = comma >= 0 ? item.slice(comma + 1) : item;
    // Whitespace only shrinks the decoded size: the text's length bounds it before any decode.
    if ((text.length * 3) / 4 > config.maxImageBytes + 3) {
      throw new HttpError(
        413,
        "payload_too_large",
        `${imageLabel(i)}: larger than ${config.maxImageBytes} bytes`,
      );
    }
    const bytes = fromBase64(text);
    if (!bytes) throw new HttpError(400, "bad_request", `${imageLabel(i)}: not valid base64`);
    return { bytes };
  });
  const b = body as { model_name?: unknown; pretrained?: unknown };
  return {
    uploads,
    modelName: typeof b.model_name === "string" ? b.model_name : undefined,
    pretrained: typeof b.pretrained === "string" ? b.pretrained : undefined,
  };
}

/** The decoders `fromBase64` may use besides atob. */
export interface Base64Decoders {
  /** `Uint8Array.fromBase64` (TC39), where the runtime has it (workerd does). */
  readonly native?: (text: string) => Uint8Array;
  /** Node's Buffer, where there is one: see bufferFromBase64. */
  readonly buffer?: (text: string) => Uint8Array | undefined;
}

interface NodeBuffer {
  from(text: string, encoding: "base64"): Uint8Array;
}

/**
 * Node has no `Uint8Array.fromBase64` yet, and atob plus a byte loop was 14% of the Node edge's
 * CPU on the seed's workload. Buffer's decoder is native but lenient: it skips characters that are
 * not base64 (or stops at them) and takes base64url's `-` and `_`. So its bytes count only when
 * the text is shaped like base64 (canonical padding, no spare character, neither `-` nor `_`) and
 * they are exactly as many as that many characters encode: one skipped character makes them
 * fewer. Anything else is left to atob, which gives the verdict it always gave.
 */
function bufferFromBase64(Buffer: NodeBuffer): (text: string) => Uint8Array | undefined {
  return (text) => {
    let pads = 0;
    while (pads < text.length && text.charCodeAt(text.length - 1 - pads) === 61 /* = */) pads++;
    const chars = text.length - pads;
    if (pads > 2 || (pads > 0 && text.length % 4 !== 0) || chars % 4 === 1) return undefined;
    if (text.includes("-") || text.includes("_")) return undefined;
    const bytes = Buffer.from(text, "base64");
    if (bytes.byteLength !== Math.floor((chars * 3) / 4)) return undefined;
    // A plain Uint8Array over bytes of its own: small results are views into Buffer's pool.
    return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
      ? new Uint8Array(bytes.buffer, 0, bytes.byteLength)
      : new Uint8Array(bytes);
  };
}

const nodeBuffer = (globalThis as { Buffer?: NodeBuffer }).Buffer;

/** Node's Buffer path (the runtime's, also tested on its own). */
export const nodeBufferBase64 = nodeBuffer ? bufferFromBase64(nodeBuffer) : undefined;

const RUNTIME_DECODERS: Base64Decoders = {
  native: (Uint8Array as unknown as { fromBase64?: (text: string) => Uint8Array<ArrayBuffer> })
    .fromBase64,
  buffer: nodeBufferBase64,
};

/**
 * Standard base64 (padding optional, whitespace anywhere) to bytes; undefined when it is not.
 * The decoder is the check: atob and `Uint8Array.fromBase64` refuse any character outside the
 * alphabet, misplaced padding and a length that leaves one spare character (a separate regular
 * expression over the text cost more than the decode: 1.3 ms per 200 KB image). Unicode
 * whitespace, which they refuse, is removed and the decode tried once more.
 */
export function fromBase64(
  text: string,
  via: Base64Decoders = RUNTIME_DECODERS,
): Uint8Array | undefined {
  const decode = (t: string): Uint8Array | undefined => {
    try {
      if (via.native) return via.native(t);
      const fast = via.buffer?.(t);
      if (fast) return fast;
      const bin = atob(t);
      const out = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
      return out;
    } catch {
      return undefined;
    }
  };
  return decode(text) ?? (/\s/.test(text) ? decode(text.replace(/\s+/g, "")) : undefined);
}

export function toBase64(bytes: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}
