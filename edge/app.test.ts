// The edge app in workerd with the real wrangler.toml bindings (Images binding included) and a
// gpu-node stand-in: routes, auth, validation errors, metadata stripping, error mapping, failover.
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, inject, it } from "vitest";
import type { EdgeFixture } from "../test/support/edge-fixtures.setup.ts";
import { createStandIn, fingerprint, type StandIn } from "./testing/gpu-stand-in.ts";
import { segmentMarkers } from "./testing/jpeg-markers.ts";
import { testApp } from "./testing/test-app.ts";
import { readHeader } from "./validate/index.ts";

const fixtures = inject("edgeFixtures") as Record<string, EdgeFixture>;
const bytes = (name: string) =>
  Uint8Array.from(atob(fixtures[name]!.base64), (c) => c.charCodeAt(0));

const KEY = "test-key-0123456789";

/** An app wired to `standIns` (one per gpu-node URL) and the real Images binding. */
async function setup(
  standIns: (StandIn | "down")[] = [createStandIn()],
  vars: Record<string, string> = {},
) {
  const { request } = await testApp({ standIns, vars, key: KEY, token: "edge-secret" });
  return { request, standIns };
}

const postImage = (data: Uint8Array, type = "image/jpeg") => ({
  method: "POST",
  headers: { "content-type": type },
  body: data,
});

type ErrorBody = { error: { code: string; message: string } };

describe("POST /v1/embeddings", () => {
  it("embeds a raw JPEG body: OpenAI-style list with sha256, sizes, request id and Server-Timing", async () => {
    const { request, standIns } = await setup();
    const res = await request("/v1/embeddings", postImage(bytes("photoWithGps")));
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      object: string;
      data: {
        index: number;
        embedding: number[];
        sha256: string;
        original: { width: number; height: number };
        sent: { width: number; height: number; bytes: number };
      }[];
      model: string;
      usage: { images: number };
    };
    expect(body.object).toBe("list");
    expect(body.data).toHaveLength(1);
    expect(body.data[0]!.embedding).toHaveLength(512);
    expect(body.data[0]!.sha256).toMatch(/^[0-9a-f]{64}$/);
    // Orientation 6: stored 640x480, shown 480x640; sent with short side 256.
    expect(body.data[0]!.original).toMatchObject({ width: 480, height: 640 });
    expect(body.data[0]!.sent).toMatchObject({ width: 256, height: 341 });
    expect(body.usage.images).toBe(1);
    expect(res.headers.get("x-request-id")).toBeTruthy();
    const timing = res.headers.get("server-timing") ?? "";
    for (const stage of ["validate", "resize", "gpu", "gpu-node-inference", "total"]) {
      expect(timing).toContain(stage);
    }
    // What crossed the "WAN": a small baseline JPEG, short side 256, no metadata at all.
    const sent = (standIns[0] as StandIn).received[0]!;
    expect(sent.length).toBeLessThan(40_000);
    expect(readHeader(sent, "jpeg")).toMatchObject({ width: 256, height: 341, orientation: 1 });
    expect(segmentMarkers(sent).filter((m) => (m >= 0xe1 && m <= 0xef) || m === 0xfe)).toEqual([]);
    expect((standIns[0] as StandIn).headers[0]!.get("authorization")).toBe("Bearer edge-secret");
  });

  it("with RESIZE_MODE=crop-224 sends the upright 224x224 centre crop, no metadata", async () => {
    const { request, standIns } = await setup(undefined, { RESIZE_MODE: "crop-224" });
    const res = await request("/v1/embeddings", postImage(bytes("photoWithGps")));
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: { sent: { width: number; height: number } }[] };
    expect(body.data[0]!.sent).toMatchObject({ width: 224, height: 224 });
    const sent = (standIns[0] as StandIn).received[0]!;
    expect(readHeader(sent, "jpeg")).toMatchObject({ width: 224, height: 224, orientation: 1 });
    expect(segmentMarkers(sent).filter((m) => (m >= 0xe1 && m <= 0xef) || m === 0xfe)).toEqual([]);
  });

  it("embeds multipart image parts in order, and returns base64 float32 on request", async () => {
    const { request, standIns } = await setup();
    const form = new FormData();
    form.append("image", new Blob([bytes("photoUpright")]), "a.jpg");
    form.append("image", new Blob([bytes("png")]), "b.png");
    form.append("encoding_format", "base64");
    const res = await request("/v1/embeddings", { method: "POST", body: form });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: { index: number; embedding: string }[] };
    expect(body.data.map((d) => d.index)).toEqual([0, 1]);
    const received = (standIns[0] as StandIn).received;
    body.data.forEach((d, i) => {
      const raw = Uint8Array.from(atob(d.embedding), (c) => c.charCodeAt(0));
      const v = new Float32Array(raw.buffer);
      expect(v.length).toBe(512);
      expect(Array.from(v)).toEqual(Array.from(fingerprint(received[i]!)));
    });
  });

  it.each([
    ["text named as a JPEG", new TextEncoder().encode("just some text, not a photo"), 415],
    ["a truncated JPEG", bytes("photoUpright").slice(0, 3000), 422],
    ["zero bytes", new Uint8Array(0), 422],
  ])(
    "refuses %s with the right status and a JSON error naming the image",
    async (_n, data, status) => {
      const { request, standIns } = await setup();
      const res = await request("/v1/embeddings", postImage(data));
      expect(res.status).toBe(status);
      const body = (await res.json()) as ErrorBody;
      expect(body.error.message).toMatch(/^image 0/);
      expect(JSON.stringify(body)).not.toMatch(/\bat .*\.ts:\d+/);
      expect((standIns[0] as StandIn).calls).toBe(0);
    },
  );

  it("refuses a body over the limit while it streams, chunked or not", async () => {
    const { request } = await setup([createStandIn()], { MAX_REQUEST_BYTES: "65536" });
    const big = new Uint8Array(200_000);
    big.set(bytes("photoUpright"));
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 20; i++) controller.enqueue(big.subarray(i * 10_000, (i + 1) * 10_000));
        controller.close();
      },
    });
    const chunked = await request("/v1/embeddings", {
      method: "POST",
      headers: { "content-type": "image/jpeg" },
      body: stream,
      // @ts-expect-error: workerd's RequestInit accepts duplex for streamed bodies
      duplex: "half",
    });
    expect(chunked.status).toBe(413);
    const plain = await request("/v1/embeddings", postImage(big));
    expect(plain.status).toBe(413);
  });

  it("refuses more parts than the limit, and a multipart body without its boundary", async () => {
    const { request } = await setup([createStandIn()], { MAX_IMAGES_PER_REQUEST: "2" });
    const form = new FormData();
    for (let i = 0; i < 3; i++) form.append("image", new Blob([bytes("png")]), `${i}.png`);
    expect((await request("/v1/embeddings", { method: "POST", body: form })).status).toBe(413);
    const broken = await request("/v1/embeddings", {
      method: "POST",
      headers: { "content-type": "multipart/form-data" },
      body: "--x\r\nContent-Disposition: form-data; name=image\r\n\r\nabc",
    });
    expect(broken.status).toBe(400);
  });

  it("needs a valid API key, and says nothing about which part failed", async () => {
    const { request } = await setup();
    const none = await request("/v1/embeddings", postImage(bytes("png")), null);
    const wrong = await request("/v1/embeddings", postImage(bytes("png")), "nope");
    expect(none.status).toBe(401);
    expect(wrong.status).toBe(401);
    expect(await none.json()).toEqual(await wrong.json());
  });

  it("lets requests through without a key only when AUTH_DISABLED is exactly true", async () => {
    const off = await setup([createStandIn()], { AUTH_DISABLED: "true" });
    expect((await off.request("/v1/embeddings", postImage(bytes("png")), null)).status).toBe(200);
    const typo = await setup([createStandIn()], { AUTH_DISABLED: "yes" });
    expect((await typo.request("/v1/embeddings", postImage(bytes("png")), null)).status).toBe(401);
  });
});

describe("POST /embed/base64 (the seed's FastAPI contract)", () => {
  it("accepts base64 and data URIs and answers {embeddings, model_info, count}", async () => {
    const { request } = await setup();
    const b64 = fixtures.photoUpright!.base64;
    const res = await request("/embed/base64", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        images: [b64, `data:image/jpeg;base64,${b64}`],
        model_name: "ViT-B-32",
      }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      embeddings: number[][];
      model_info: { model_name: string; embedding_dim: number };
      count: number;
    };
    expect(body.count).toBe(2);
    expect(body.embeddings[0]).toEqual(body.embeddings[1]);
    expect(body.model_info).toMatchObject({ model_name: "ViT-B-32", embedding_dim: 512 });
  });

  it("gives the same embedding as /v1/embeddings for the same photo", async () => {
    const { request } = await setup();
    const a = (await (
      await request("/v1/embeddings", postImage(bytes("photoWithGps")))
    ).json()) as {
      data: { embedding: number[] }[];
    };
    const b = (await (
      await request("/embed/base64", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ images: [fixtures.photoWithGps!.base64] }),
      })
    ).json()) as { embeddings: number[][] };
    expect(b.embeddings[0]).toEqual(a.data[0]!.embedding);
  });

  it.each([
    ["not JSON", "{images:", 400],
    ["no images field", JSON.stringify({ image: [] }), 400],
    ["base64 that is not base64", JSON.stringify({ images: ["%%%not*base64!!"] }), 400],
    ["valid base64 of text", JSON.stringify({ images: [btoa("hello world, no image")] }), 415],
  ])("refuses %s", async (_n, body, status) => {
    const { request } = await setup();
    const res = await request("/embed/base64", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    expect(res.status).toBe(status);
    expect(((await res.json()) as ErrorBody).error.code).toBeTruthy();
  });
});

describe("gpu-node failures", () => {
  it("fails over to the next gpu-node when one is down", async () => {
    const healthy = createStandIn();
    const { request } = await setup(["down", healthy]);
    for (let i = 0; i < 4; i++) {
      expect((await request("/v1/embeddings", postImage(bytes("png")))).status).toBe(200);
    }
    expect(healthy.calls).toBe(4);
  });

  it.each([
    [Code.InvalidArgument, 422, undefined],
    [Code.ResourceExhausted, 503, "1"],
    [Code.DeadlineExceeded, 504, undefined],
    [Code.Unavailable, 503, "2"],
    [Code.Internal, 502, undefined],
  ])("maps gpu-node %s to HTTP %i", async (code, status, retryAfter) => {
    const failing = createStandIn({
      async embed() {
        throw new ConnectError("stand-in failure", code);
      },
    });
    const { request } = await setup([failing]);
    const res = await request("/v1/embeddings", postImage(bytes("png")));
    expect(res.status).toBe(status);
    expect(res.headers.get("retry-after") ?? undefined).toBe(retryAfter);
    expect(JSON.stringify(await res.json())).not.toContain("stack");
  });

  it("while its gpu-node is full, answers 503 + Retry-After before resizing, bad uploads still 4xx", async () => {
    let embeds = 0;
    const full = createStandIn({
      async embed() {
        embeds++;
        throw new ConnectError("queue full", Code.ResourceExhausted);
      },
    });
    // A hold long enough that no scheduling delay on a busy machine can outlast it.
    const { request } = await setup([full], { GPU_NODE_SHED_MS: "10000" });
    const first = await request("/v1/embeddings", postImage(bytes("png")));
    expect(first.status).toBe(503);
    expect(embeds).toBe(1);
    for (let i = 0; i < 3; i++) {
      const shed = await request("/v1/embeddings", postImage(bytes("png")));
      expect(shed.status).toBe(503);
      expect(shed.headers.get("retry-after")).toBe("1");
      expect(((await shed.json()) as ErrorBody).error.code).toBe("overloaded");
      // No resize ran: the edge reports no resize stage.
      expect(shed.headers.get("server-timing") ?? "").not.toContain("resize");
    }
    expect(embeds).toBe(1);
    // Validation still comes first: a bad upload hears what is wrong with it.
    const text = new TextEncoder().encode("not an image at all, just text");
    expect((await request("/v1/embeddings", postImage(text))).status).toBe(415);
  });

  it("answers 503 with /readyz false when no gpu-node is reachable", async () => {
    const { request } = await setup(["down", "down"]);
    expect((await request("/v1/embeddings", postImage(bytes("png")))).status).toBe(503);
    const ready = await request("/readyz", {}, null);
    expect(ready.status).toBe(503);
    expect((await request("/healthz", {}, null)).status).toBe(200);
  });
});
