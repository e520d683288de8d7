// The whole path: client → edge Worker (wrangler's startWorker, workerd, Images binding running
// locally through sharp) → real gpu-node (vit-tiny, calibrated) → back.
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testConfig } from "../gpu-node/config.ts";
import { type GpuNode, startGpuNode } from "../gpu-node/node.ts";
import { decodeForClip } from "../gpu-node/preprocess/decode.ts";
import { type EdgeWorker, startEdge } from "./support/edge-worker.ts";
import { cosine } from "./support/gpu-node-client.ts";
import { photoPixels } from "./support/images.ts";

const CORPUS = resolve(import.meta.dirname, "../../shared/corpus");
const KEY = "e2e-key";
const TOKEN = "e2e-edge-token";

let gpu: GpuNode;
let edge: EdgeWorker;
/** Every JPEG the gpu-node received, as it arrived. */
const received: Uint8Array[] = [];

beforeAll(async () => {
  gpu = await startGpuNode(testConfig({ port: 0, model: "vit-tiny", threads: 2, token: TOKEN }), {
    decode: (data, limits) => {
      received.push(new Uint8Array(data));
      return decodeForClip(data, limits);
    },
  });
  edge = await startEdge({
    GPU_NODE_URLS: gpu.url,
    GPU_NODE_TOKEN: TOKEN,
    API_KEY_HASHES: createHash("sha256").update(KEY).digest("hex"),
  });
}, 120_000);
afterAll(async () => {
  await edge?.dispose();
  await gpu?.close();
});

type Embeddings = {
  data: { embedding: number[]; sent: { width: number; height: number; bytes: number } }[];
};

async function embedRaw(body: Uint8Array, type = "image/jpeg"): Promise<Response> {
  return fetch(`${edge.url}/v1/embeddings`, {
    method: "POST",
    headers: { authorization: `Bearer ${KEY}`, "content-type": type },
    body,
  });
}

async function vectorOf(body: Uint8Array): Promise<Float32Array> {
  const res = await embedRaw(body);
  expect(res.status).toBe(200);
  return Float32Array.from(((await res.json()) as Embeddings).data[0]!.embedding);
}

/** A picture whose layout changes under rotation: coloured bands top to bottom, stripes left to right. */
function asymmetric(width: number, height: number): Buffer {
  const px = photoPixels(width, height, 21);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      const band = Math.floor((3 * y) / height);
      px[i + band] = 230;
      if (Math.floor(x / 40) % 2 === 0) px[i + ((band + 1) % 3)] = 20;
    }
  }
  return px;
}

/** Segment markers before the scan: any APP1..APP15 or COM is metadata. */
function metadataMarkers(jpeg: Uint8Array): number[] {
  const found: number[] = [];
  let i = 2;
  while (i + 4 <= jpeg.length && jpeg[i] === 0xff && jpeg[i + 1] !== 0xda) {
    const m = jpeg[i + 1]!;
    if ((m >= 0xe1 && m <= 0xef) || m === 0xfe) found.push(m);
    i += 2 + ((jpeg[i + 2]! << 8) | jpeg[i + 3]!);
  }
  return found;
}

describe("edge → gpu-node end to end", () => {
  it("applies EXIF orientation: orientation 6 embeds like the pre-rotated photo, unlike the raw pixels", async () => {
    const raw = asymmetric(640, 480);
    const img = () => sharp(raw, { raw: { width: 640, height: 480, channels: 3 } });
    const tagged = await img().jpeg({ quality: 92 }).withMetadata({ orientation: 6 }).toBuffer();
    const upright = await sharp(await img().rotate(90).raw().toBuffer(), {
      raw: { width: 480, height: 640, channels: 3 },
    })
      .jpeg({ quality: 92 })
      .toBuffer();
    const unrotated = await img().jpeg({ quality: 92 }).toBuffer();
    const [a, b, c] = await Promise.all([tagged, upright, unrotated].map((x) => vectorOf(x)));
    const same = cosine(a!, b!);
    const wrong = cosine(a!, c!);
    console.log(`orientation 6 vs upright ${same.toFixed(4)}, vs unrotated ${wrong.toFixed(4)}`);
    expect(same).toBeGreaterThanOrEqual(0.99);
    expect(wrong).toBeLessThan(same - 0.05);
  });

  it("sends the gpu-node a small JPEG with no EXIF, XMP, ICC or comment at all", async () => {
    const withEverything = await sharp(photoPixels(1200, 900, 22), {
      raw: { width: 1200, height: 900, channels: 3 },
    })
      .jpeg({ quality: 90 })
      .withIccProfile("p3")
      .withExif({
        IFD0: { Make: "Phone", ImageDescription: "secret place" },
        IFD3: { GPSLatitudeRef: "N" },
      })
      .withXmp('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>')
      .toBuffer();
    received.length = 0;
    const res = await embedRaw(withEverything);
    expect(res.status).toBe(200);
    expect(received).toHaveLength(1);
    const sent = received[0]!;
    expect(metadataMarkers(sent)).toEqual([]);
    expect(Buffer.from(sent).includes("secret place")).toBe(false);
    const meta = await sharp(sent).metadata();
    expect(Math.min(meta.width!, meta.height!)).toBe(256);
    expect(meta.icc).toBeUndefined();
    expect(meta.exif).toBeUndefined();
    expect(meta.xmp).toBeUndefined();
  });

  it("gives the same embedding through /v1/embeddings and /embed/base64", async () => {
    const jpeg = await sharp(photoPixels(800, 600, 23), {
      raw: { width: 800, height: 600, channels: 3 },
    })
      .jpeg()
      .toBuffer();
    const a = await vectorOf(jpeg);
    const res = await fetch(`${edge.url}/embed/base64`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ images: [jpeg.toString("base64")] }),
    });
    expect(res.status).toBe(200);
    const b = Float32Array.from(((await res.json()) as { embeddings: number[][] }).embeddings[0]!);
    expect(cosine(a, b)).toBeGreaterThan(0.99999);
  });

  it.each([
    ["random bytes", Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919) % 256)), 415],
    ["a text file", Buffer.from("hello\n".repeat(100)), 415],
    ["an empty body", Buffer.alloc(0), 422],
  ])("answers %s with a 4xx and a JSON error", async (_n, body, status) => {
    const res = await embedRaw(body);
    expect(res.status).toBe(status);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(
      /^image 0/,
    );
  });

  it("refuses a call without the API key, and is ready", async () => {
    const res = await fetch(`${edge.url}/v1/embeddings`, { method: "POST", body: "x" });
    expect(res.status).toBe(401);
    expect((await fetch(`${edge.url}/readyz`)).status).toBe(200);
  });

  it.skipIf(!existsSync(CORPUS))(
    "embeds every corpus photo (HEIF too: under wrangler dev the WASM decoders take what the local binding cannot read)",
    async () => {
      const files = ["photos", "odd-metadata"].flatMap((d) =>
        readdirSync(join(CORPUS, d)).map((f) => join(CORPUS, d, f)),
      );
      for (const file of files) {
        const res = await embedRaw(readFileSync(file), "application/octet-stream");
        expect(res.status, `${file}: ${res.status === 200 ? "" : await res.clone().text()}`).toBe(
          200,
        );
        const body = (await res.json()) as Embeddings;
        expect(body.data[0]!.embedding).toHaveLength(512);
      }
    },
  );
});
