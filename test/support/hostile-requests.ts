/** Hostile request bodies for the edge (multipart and base64 JSON), built from one valid image; pure, so the workerd tests and the Node end-to-end tests share them. */

export type HostileRequestKind = "multipart" | "base64";

export interface HostileRequest {
  readonly kind: HostileRequestKind;
  readonly name: string;
  readonly path: "/v1/embeddings" | "/embed/base64";
  /** Builds headers and body around `image`, a small valid image; `limit` is MAX_REQUEST_BYTES. */
  readonly build: (
    image: Uint8Array,
    limit: number,
  ) => { headers: Headers; body: NonNullable<RequestInit["body"]> };
  readonly status: 200 | 400 | 413 | 415;
  /** A regular expression the error message must match. */
  readonly message?: string;
  /** For a streamed body: how many bytes the client offered at most (the server must stop early). */
  readonly streamed?: boolean;
}

const encoder = new TextEncoder();

function concat(parts: (Uint8Array | string)[]): Uint8Array {
  const bytes = parts.map((p) => (typeof p === "string" ? encoder.encode(p) : p));
  const out = new Uint8Array(bytes.reduce((n, b) => n + b.length, 0));
  let o = 0;
  for (const b of bytes) {
    out.set(b, o);
    o += b.length;
  }
  return out;
}

function toBase64(bytes: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

const BOUNDARY = "----hostile7e1f";

function part(
  name: string,
  content: Uint8Array | string,
  fileName?: string,
): (Uint8Array | string)[] {
  const disposition = fileName
    ? `form-data; name="${name}"; filename="${fileName}"`
    : `form-data; name="${name}"`;
  const type = fileName ? "Content-Type: application/octet-stream\r\n" : "";
  return [`--${BOUNDARY}\r\nContent-Disposition: ${disposition}\r\n${type}\r\n`, content, "\r\n"];
}

const multipartHeaders = (boundary: string | null = BOUNDARY) =>
  new Headers({
    "content-type":
      boundary === null ? "multipart/form-data" : `multipart/form-data; boundary=${boundary}`,
  });

const json = (value: unknown) => ({
  headers: new Headers({ "content-type": "application/json" }),
  body: typeof value === "string" ? value : JSON.stringify(value),
});

/** A body that streams one part's content and never sends its closing boundary, past `limit`. */
function endlessPart(limit: number): ReadableStream<Uint8Array> {
  const chunk = new Uint8Array(64 * 1024).fill(0x41);
  let sent = 0;
  let first = true;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (first) {
        first = false;
        controller.enqueue(concat(part("image", "", "endless.jpg").slice(0, 1)));
        return;
      }
      // Bounded: twice the limit at most, so a server that never stops still ends the test.
      if (sent > 2 * limit) {
        controller.close();
        return;
      }
      sent += chunk.length;
      controller.enqueue(chunk);
    },
  });
}

export const HOSTILE_REQUESTS: readonly HostileRequest[] = [
  {
    kind: "multipart",
    name: "10,000 image parts",
    path: "/v1/embeddings",
    build: (image) => {
      const parts: (Uint8Array | string)[] = [];
      for (let i = 0; i < 10_000; i++) parts.push(...part("image", image, `${i}.png`));
      parts.push(`--${BOUNDARY}--\r\n`);
      return { headers: multipartHeaders(), body: concat(parts) };
    },
    status: 413,
    message: "holds 10000 images; the limit is \\d+",
  },
  {
    kind: "multipart",
    name: "10,000 other parts around one image",
    path: "/v1/embeddings",
    build: (image) => {
      const parts: (Uint8Array | string)[] = [];
      for (let i = 0; i < 10_000; i++) parts.push(...part(`field${i}`, "x"));
      parts.push(...part("image", image, "one.png"), `--${BOUNDARY}--\r\n`);
      return { headers: multipartHeaders(), body: concat(parts) };
    },
    status: 200,
  },
  {
    kind: "multipart",
    name: "no boundary parameter",
    path: "/v1/embeddings",
    build: (image) => ({
      headers: multipartHeaders(null),
      body: concat([...part("image", image, "a.png"), `--${BOUNDARY}--\r\n`]),
    }),
    status: 400,
    message: "multipart body could not be parsed",
  },
  {
    kind: "multipart",
    name: "a boundary the body does not use",
    path: "/v1/embeddings",
    build: (image) => ({
      headers: multipartHeaders("not-the-boundary"),
      body: concat([...part("image", image, "a.png"), `--${BOUNDARY}--\r\n`]),
    }),
    status: 400,
    message: "multipart body could not be parsed",
  },
  {
    kind: "multipart",
    name: "a part that never ends (the body stops inside it)",
    path: "/v1/embeddings",
    build: (image) => ({
      headers: multipartHeaders(),
      body: concat(part("image", image, "a.png").slice(0, 2)),
    }),
    status: 400,
    message: "multipart body could not be parsed",
  },
  {
    kind: "multipart",
    name: "a part that never ends, streamed past the body limit",
    path: "/v1/embeddings",
    build: (_image, limit) => ({ headers: multipartHeaders(), body: endlessPart(limit) }),
    status: 413,
    message: "request body is over \\d+ bytes",
    streamed: true,
  },
  {
    kind: "multipart",
    name: "part headers without the blank line",
    path: "/v1/embeddings",
    build: (image) => ({
      headers: multipartHeaders(),
      body: concat([
        `--${BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n`,
        image,
        `\r\n--${BOUNDARY}--\r\n`,
      ]),
    }),
    status: 400,
    message: "multipart body could not be parsed",
  },
  {
    kind: "multipart",
    name: "the image part as a text field",
    path: "/v1/embeddings",
    build: () => ({
      headers: multipartHeaders(),
      body: concat([...part("image", "not a file"), `--${BOUNDARY}--\r\n`]),
    }),
    status: 400,
    message: "must be a file",
  },
  {
    kind: "multipart",
    name: "no image part at all",
    path: "/v1/embeddings",
    build: () => ({
      headers: multipartHeaders(),
      body: concat([...part("photo", "x"), `--${BOUNDARY}--\r\n`]),
    }),
    status: 400,
    message: "holds no image",
  },
  {
    kind: "base64",
    name: "a JSON body over the request limit",
    path: "/embed/base64",
    build: (_image, limit) => json({ images: ["A".repeat(limit + 1024)] }),
    status: 413,
    message: "request body is over \\d+ bytes",
  },
  {
    kind: "base64",
    name: "characters outside the alphabet",
    path: "/embed/base64",
    build: () => json({ images: ["%%%not*base64!!"] }),
    status: 400,
    message: "^image 0: not valid base64$",
  },
  {
    kind: "base64",
    name: "a length that is 1 mod 4",
    path: "/embed/base64",
    build: () => json({ images: ["AAAAA"] }),
    status: 400,
    message: "not valid base64",
  },
  {
    kind: "base64",
    name: "padding in the middle",
    path: "/embed/base64",
    build: (image) => json({ images: [`${toBase64(image.subarray(0, 10))}${toBase64(image)}`] }),
    status: 400,
    message: "not valid base64",
  },
  {
    kind: "base64",
    name: "the URL-safe alphabet",
    path: "/embed/base64",
    build: (image) => {
      let b64 = toBase64(image).replaceAll("+", "-").replaceAll("/", "_");
      if (!/[-_]/.test(b64)) b64 = `${b64.slice(0, -4)}-_-_`;
      return json({ images: [b64] });
    },
    status: 400,
    message: "not valid base64",
  },
  {
    kind: "base64",
    name: "a data URI with a broken payload",
    path: "/embed/base64",
    build: () => json({ images: ["data:image/jpeg;base64,@@@@"] }),
    status: 400,
    message: "not valid base64",
  },
  {
    kind: "base64",
    name: "a number, null and an object instead of strings",
    path: "/embed/base64",
    build: () => json({ images: [12345, null, {}] }),
    status: 400,
    message: "must be a base64 string",
  },
  {
    kind: "base64",
    name: "images is a string, not a list",
    path: "/embed/base64",
    build: (image) => json({ images: toBase64(image) }),
    status: 400,
    message: '\\{"images": \\[base64, \\.\\.\\.\\]\\}',
  },
  {
    kind: "base64",
    name: "JSON nested 100,000 deep",
    path: "/embed/base64",
    build: () => json(`{"images":${"[".repeat(100_000)}${"]".repeat(100_000)}}`),
    status: 400,
    message: "^image 0: must be a base64 string$",
  },
  {
    kind: "base64",
    name: "not JSON at all",
    path: "/embed/base64",
    build: () => json("images=AAAA"),
    status: 400,
    message: "not valid JSON",
  },
  {
    kind: "base64",
    name: "valid base64 of text",
    path: "/embed/base64",
    build: () => json({ images: [btoa("just text, no photo here")] }),
    status: 415,
    message: "not an image",
  },
  {
    kind: "base64",
    name: "MIME-style base64 with line breaks (accepted)",
    path: "/embed/base64",
    build: (image) => json({ images: [toBase64(image).replace(/.{76}/g, "$&\r\n")] }),
    status: 200,
  },
];

export function countRequestsByKind(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of HOSTILE_REQUESTS) out[r.kind] = (out[r.kind] ?? 0) + 1;
  return out;
}
