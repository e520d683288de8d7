// The self-hosted edge on Node: same app, sharp resizer, a real gpu-node (noop backend) behind it.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNoopBackend } from "../../gpu-node/backends/noop.ts";
import { testConfig } from "../../gpu-node/config.ts";
import { type GpuNode, startGpuNode } from "../../gpu-node/node.ts";
import { decodeForClip } from "../../gpu-node/preprocess/decode.ts";
import { photoPixels } from "../../test/support/images.ts";
import { createNodeEdge, NODE_FLAGS } from "./server.ts";

const HEIF = resolve(import.meta.dirname, "../../../shared/corpus/photos/samplefilehub.heif");
let gpu: GpuNode;
const received: Uint8Array[] = [];
let edge: ReturnType<typeof createNodeEdge>;

beforeAll(async () => {
  gpu = await startGpuNode(testConfig({ port: 0, token: "t" }), {
    backend: createNoopBackend(32),
    decode: (data, limits) => {
      received.push(new Uint8Array(data));
      return decodeForClip(data, limits);
    },
  });
  edge = createNodeEdge({
    GPU_NODE_URLS: gpu.url,
    GPU_NODE_TOKEN: "t",
    API_KEY_HASHES: createHash("sha256").update("k").digest("hex"),
  });
});
afterAll(() => gpu?.close());

const post = (body: Uint8Array) =>
  edge.app.request(
    "/v1/embeddings",
    { method: "POST", headers: { authorization: "Bearer k", "content-type": "image/jpeg" }, body },
    edge.bindings,
  );

describe("edge on Node (sharp resizer)", () => {
  it("orients, shrinks and strips a photo before the gpu-node sees it", async () => {
    const jpeg = await sharp(photoPixels(900, 600, 3), {
      raw: { width: 900, height: 600, channels: 3 },
    })
      .jpeg()
      .withExif({ IFD0: { Make: "Phone" } })
      .withMetadata({ orientation: 6 })
      .toBuffer();
    received.length = 0;
    const res = await post(jpeg);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: { embedding: number[]; sent: object }[] };
    expect(body.data[0]!.embedding).toHaveLength(512);
    expect(body.data[0]!.sent).toMatchObject({ width: 256, height: 384 });
    const meta = await sharp(received[0]!).metadata();
    expect([meta.width, meta.height, meta.exif, meta.icc, meta.orientation]).toEqual([
      256,
      384,
      undefined,
      undefined,
      undefined,
    ]);
  });

  it("reaches the gpu-node over node:http: a refused first node is skipped, 10 images in two calls, in order", async () => {
    const failover = createNodeEdge({
      // Port 1 refuses connections: connect-node's error must read as Unavailable (try the next).
      GPU_NODE_URLS: `http://127.0.0.1:1,${gpu.url}`,
      GPU_NODE_TOKEN: "t",
      API_KEY_HASHES: createHash("sha256").update("k").digest("hex"),
    });
    const form = new FormData();
    const sizes = Array.from({ length: 10 }, (_, i) => 230 + i * 7);
    for (const [i, w] of sizes.entries()) {
      const png = await sharp(photoPixels(w, 240, i), {
        raw: { width: w, height: 240, channels: 3 },
      })
        .png()
        .toBuffer();
      form.append("image", new Blob([png]), `${i}.png`);
    }
    received.length = 0;
    const res = await failover.app.request(
      "/v1/embeddings",
      { method: "POST", headers: { authorization: "Bearer k" }, body: form },
      failover.bindings,
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: { index: number; sent: { width: number } }[] };
    expect(body.data.map((d) => d.index)).toEqual(sizes.map((_, i) => i));
    // Each answer belongs to its own upload: the sent widths follow the uploads' widths.
    expect(body.data.map((d) => d.sent.width)).toEqual(sizes);
    expect(received).toHaveLength(10);
  });

  it("refuses bad settings at start, naming the variable", () => {
    expect(() => createNodeEdge({ MAX_IMAGE_PIXELS: "lots" })).toThrow(/MAX_IMAGE_PIXELS/);
  });

  it.skipIf(!existsSync(HEIF))(
    "embeds the corpus HEIF through the WASM decoders (this libvips has no HEVC)",
    async () => {
      received.length = 0;
      const res = await post(readFileSync(HEIF));
      expect(res.status).toBe(200);
      const body = (await res.json()) as { data: { sent: object }[] };
      expect(body.data[0]!.sent).toMatchObject({ width: 385, height: 256 });
      expect((await sharp(received[0]!).metadata()).format).toBe("jpeg");
    },
  );

  it("runs with its Node flags: npm run edge:node passes them, and they cap the young generation", () => {
    const pkg = JSON.parse(
      readFileSync(resolve(import.meta.dirname, "../../package.json"), "utf8"),
    );
    expect(pkg.scripts["edge:node"]).toBe(`node ${NODE_FLAGS.join(" ")} edge/node/server.ts`);
    // Garbage enough for V8 to grow its young generation as far as it may.
    const probe = `const v8 = require("node:v8"); let keep = [];
      for (let i = 0; i < 300000; i++) { keep.push({ i, s: "x" + i }); if (keep.length > 50000) keep = []; }
      const s = v8.getHeapSpaceStatistics().find((x) => x.space_name === "new_space");
      process.stdout.write(String(s.space_size));`;
    const young = (flags: readonly string[]) => {
      const res = spawnSync(process.execPath, [...flags, "-e", probe], { encoding: "utf8" });
      expect(res.stderr).toBe("");
      return Number(res.stdout);
    };
    const capped = young(NODE_FLAGS);
    expect(capped).toBeGreaterThan(0);
    expect(capped).toBeLessThanOrEqual(8 * 1024 * 1024);
    expect(young([])).toBeGreaterThan(capped);
  });
});
