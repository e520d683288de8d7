// A request's images reach the gpu-node in calls of at most GPU_CALL_MAX_IMAGES, each sent once
// its own images are resized: ids are positions in the request, the answer keeps upload order,
// every image is still validated, resized and stripped, and any one failure fails the request.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, inject, it } from "vitest";
import { EmbedResponseSchema } from "../proto/gen/embedder/v1/embedder_pb.js";
import type { EdgeFixture } from "../test/support/edge-fixtures.setup.ts";
import { gpuCallRanges } from "./pipeline.ts";
import { createStandIn, fingerprint, type StandIn } from "./testing/gpu-stand-in.ts";
import { segmentMarkers } from "./testing/jpeg-markers.ts";
import { testApp } from "./testing/test-app.ts";

const fixtures = inject("edgeFixtures") as Record<string, EdgeFixture>;
const bytes = (name: string) =>
  Uint8Array.from(atob(fixtures[name]!.base64), (c) => c.charCodeAt(0));

/** 17 different small images the local Images binding decodes (JPEG, PNG, WebP, GIF, TIFF, AVIF). */
const NAMES = [
  "jpegOrientation6",
  "jpegProgressive",
  "png",
  "pngAlpha",
  "webpLossy",
  "webpLossless",
  "webpAlpha",
  "webpOrientation8",
  "gif",
  "tiff",
  "tiffOrientation6",
  "tiffAlpha",
  "avif",
  "avifOrientation6",
  "avifAlpha",
  "photoWithGps",
  "photoUpright",
];

/** A stand-in that records each call's image ids, answering like the default one. */
function recording(modelVersion = "0", fail?: (ids: string[]) => ConnectError | undefined) {
  const calls: string[][] = [];
  const byId = new Map<string, Uint8Array>();
  const standIn: StandIn = createStandIn({
    async embed(req) {
      const ids = req.images.map((im) => im.id);
      calls.push(ids);
      const err = fail?.(ids);
      if (err) throw err;
      for (const im of req.images) byId.set(im.id, im.data);
      return create(EmbedResponseSchema, {
        embeddings: req.images.map((im, index) => ({
          id: im.id,
          index,
          vector: new Uint8Array(fingerprint(im.data).buffer),
        })),
        model: "stand-in",
        modelVersion,
        dimension: 512,
      });
    },
  });
  return { standIn, calls, byId };
}

function form(names: readonly string[], replace: Record<number, Uint8Array> = {}): FormData {
  const f = new FormData();
  names.forEach((n, i) => {
    f.append("image", new Blob([replace[i] ?? bytes(n)]), `${i}-${n}`);
  });
  return f;
}

interface Body {
  data: { index: number; embedding: number[] }[];
}

describe("gpu-node calls of a request", () => {
  it.each([1, 3, 8, 32])(
    "splits n images into near-equal calls of at most %i, in order",
    (perCall) => {
      for (let n = 1; n <= 70; n++) {
        const ranges = gpuCallRanges(n, perCall);
        expect(ranges.length).toBe(Math.ceil(n / perCall));
        expect(ranges[0]![0]).toBe(0);
        expect(ranges.at(-1)![1]).toBe(n);
        ranges.forEach(([first, end], k) => {
          expect(end - first).toBeGreaterThan(0);
          expect(end - first).toBeLessThanOrEqual(perCall);
          if (k > 0) expect(first).toBe(ranges[k - 1]![1]);
        });
      }
    },
  );

  it("sends 17 images in 3 calls with their positions as ids and answers in upload order", async () => {
    const { standIn, calls, byId } = recording();
    const { request } = await testApp({ standIns: [standIn] });
    const res = await request("/v1/embeddings", { method: "POST", body: form(NAMES) });
    expect(res.status).toBe(200);
    expect(calls.length).toBe(3);
    expect(
      calls
        .flat()
        .map(Number)
        .sort((a, b) => a - b),
    ).toEqual(NAMES.map((_, i) => i));
    for (const ids of calls) {
      expect(ids.length).toBeLessThanOrEqual(8); // GPU_CALL_MAX_IMAGES' default
      expect(ids.map(Number)).toEqual(ids.map((_, k) => Number(ids[0]) + k));
    }
    const body = (await res.json()) as Body;
    expect(body.data.map((d) => d.index)).toEqual(NAMES.map((_, i) => i));
    body.data.forEach((d, i) => {
      const sent = byId.get(String(i))!;
      expect(Array.from(Float32Array.from(d.embedding))).toEqual(Array.from(fingerprint(sent)));
      // Still the edge's output: a JPEG with no APP1..APP15 or COM segment.
      expect(Array.from(sent.subarray(0, 2))).toEqual([0xff, 0xd8]);
      const meta = segmentMarkers(sent).filter((m) => (m >= 0xe1 && m <= 0xef) || m === 0xfe);
      expect(meta).toEqual([]);
    });
  });

  it("takes GPU_CALL_MAX_IMAGES from the settings: 17 images at 4 a call make 5 calls", async () => {
    const { standIn, calls } = recording();
    const { request } = await testApp({ standIns: [standIn], vars: { GPU_CALL_MAX_IMAGES: "4" } });
    const res = await request("/v1/embeddings", { method: "POST", body: form(NAMES) });
    expect(res.status).toBe(200);
    expect(calls.map((ids) => ids.length).sort()).toEqual([3, 3, 3, 4, 4]);
  });

  it("an image that cannot be decoded fails the request with its own position", async () => {
    const { standIn } = recording();
    const { request } = await testApp({ standIns: [standIn] });
    const broken = bytes("photoUpright").slice(0, 3000);
    const res = await request("/v1/embeddings", {
      method: "POST",
      body: form(NAMES, { 12: broken }),
    });
    expect(res.status).toBe(422);
    const body = (await res.json()) as { error: { message: string } };
    expect(body.error.message).toMatch(/^image 12/);
  });

  it("one refused call fails the whole request with 503", async () => {
    const { standIn } = recording("0", (ids) =>
      ids.includes("9") ? new ConnectError("queue full", Code.ResourceExhausted) : undefined,
    );
    const { request } = await testApp({ standIns: [standIn] });
    const res = await request("/v1/embeddings", { method: "POST", body: form(NAMES) });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
  });

  it("never mixes vectors of two model versions (calls on two gpu-nodes mid-rollout)", async () => {
    const a = recording("1");
    const b = recording("2");
    const { request } = await testApp({ standIns: [a.standIn, b.standIn] });
    const res = await request("/v1/embeddings", { method: "POST", body: form(NAMES) });
    // Calls take turns over the nodes: both answered, with different versions.
    expect(a.calls.length).toBeGreaterThan(0);
    expect(b.calls.length).toBeGreaterThan(0);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(
      /changing models/,
    );
  });
});
