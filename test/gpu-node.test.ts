// End to end against a real gpu-node (vit-tiny on ONNX Runtime, port 0): every protocol, consistency
// across batching, bad inputs, limits, streaming, overload, deadlines, auth and health.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { join, resolve } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Backend } from "../gpu-node/backends/backend.ts";
import { createNoopBackend } from "../gpu-node/backends/noop.ts";
import { testConfig } from "../gpu-node/config.ts";
import { type GpuNode, startGpuNode } from "../gpu-node/node.ts";
import { EmbedRequestSchema, EmbedResponseSchema } from "../proto/gen/embedder/v1/embedder_pb.js";
import {
  cosine,
  embedderClient,
  maxAbsDiff,
  norm,
  type Protocol,
  toFloats,
} from "./support/gpu-node-client.ts";
import { photo, pngHeaderClaiming, randomBytes } from "./support/images.ts";
import { until } from "./support/wait.ts";

const CORPUS = resolve(import.meta.dirname, "../../shared/corpus");

let node: GpuNode;
let images: Buffer[];

beforeAll(async () => {
  node = await startGpuNode(testConfig({ port: 0, model: "vit-tiny", threads: 2 }));
  images = await Promise.all(
    Array.from({ length: 8 }, (_, i) => photo(256 + 16 * i, 256 + 8 * (i % 3), i + 1)),
  );
});
afterAll(() => node?.close());

const embedAll = async (data: Uint8Array[], protocol: Protocol = "connect-h2") => {
  const res = await embedderClient(node.url, protocol).embed({
    images: data.map((d, i) => ({ id: `img-${i}`, data: d })),
  });
  return res.embeddings.map((e) => toFloats(e.vector));
};

const codeOf = async (p: Promise<unknown>): Promise<[Code, string]> => {
  try {
    await p;
  } catch (err) {
    const ce = ConnectError.from(err);
    return [ce.code, ce.rawMessage];
  }
  throw new Error("expected the call to fail");
};

describe("gpu-node end to end (vit-tiny)", () => {
  it.each<Protocol>(["connect-h1", "connect-h2", "grpc", "grpc-web"])(
    "embeds over %s: one unit vector per image, in order, with timings",
    async (protocol) => {
      const client = embedderClient(node.url, protocol);
      const res = await client.embed({
        images: images.slice(0, 3).map((d, i) => ({ id: `p${i}`, data: d })),
      });
      expect(res.dimension).toBe(512);
      expect(res.model).toBe("vit-tiny");
      expect(res.modelVersion).toMatch(/^[0-9a-f]{12}$/);
      expect(res.embeddings.map((e) => [e.id, e.index])).toEqual([
        ["p0", 0],
        ["p1", 1],
        ["p2", 2],
      ]);
      for (const e of res.embeddings) {
        const v = toFloats(e.vector);
        expect(v.length).toBe(512);
        expect(norm(v)).toBeCloseTo(1, 5);
      }
      expect(res.timings?.totalUs).toBeGreaterThan(0);
      expect(res.timings?.decodeUs).toBeGreaterThan(0);
      expect(res.timings?.inferenceUs).toBeGreaterThan(0);
    },
  );

  it("describes the model and its limits", async () => {
    const info = await embedderClient(node.url).getModelInfo({});
    expect(info).toMatchObject({
      model: "vit-tiny",
      dimension: 512,
      inputSize: 224,
      backend: "onnxruntime",
      maxBatchSize: 32,
      maxImagesPerRequest: 64,
    });
  });

  it("gives the same vectors one per request, all in one request, and over 64 concurrent requests", async () => {
    const one = await Promise.all(images.map(async (d) => (await embedAll([d]))[0]!));
    const all = await embedAll(images);
    // 64 concurrent calls of one image each, images interleaved, so batches mix callers.
    const concurrent = await Promise.all(
      Array.from({ length: 64 }, async (_, k) => {
        const i = k % images.length;
        return { i, v: (await embedAll([images[i]!], k % 2 ? "grpc" : "connect-h1"))[0]! };
      }),
    );
    for (let i = 0; i < images.length; i++) {
      expect(maxAbsDiff(one[i]!, all[i]!)).toBeLessThanOrEqual(1e-5);
    }
    for (const { i, v } of concurrent) expect(maxAbsDiff(one[i]!, v)).toBeLessThanOrEqual(1e-5);
    // The images really differ, so a mix-up could not hide.
    expect(cosine(one[0]!, one[1]!)).toBeLessThan(0.99);
  });

  it("embeds a 1x1 image and tiny or extreme aspect ratios", async () => {
    const vs = await embedAll([await photo(1, 1, 3, "png"), await photo(3000, 2, 4, "png")]);
    for (const v of vs) expect(norm(v)).toBeCloseTo(1, 5);
  });

  it.each([
    ["empty bytes", () => Buffer.alloc(0)],
    ["random bytes", () => randomBytes(5000, 7)],
    ["a text file", () => Buffer.from("hello, this is not an image\n".repeat(20))],
    ["a truncated JPEG", () => images[0]!.subarray(0, Math.floor(images[0]!.length / 2))],
    ["a JPEG cut after its header", () => images[0]!.subarray(0, 700)],
    ["a PNG claiming 100000x100000 pixels", () => pngHeaderClaiming(100_000, 100_000)],
  ])("refuses %s with InvalidArgument naming the image", async (_name, make) => {
    const [code, message] = await codeOf(
      embedderClient(node.url).embed({
        images: [
          { id: "good", data: images[1]! },
          { id: "bad-one", data: make() },
        ],
      }),
    );
    expect(code).toBe(Code.InvalidArgument);
    expect(message).toMatch(/^image 1 \(id "bad-one"\): /);
    expect(message).not.toMatch(/\n\s+at /); // no stack trace
  });

  it("refuses more images than the limit, and an empty request", async () => {
    const tooMany = Array.from({ length: 65 }, () => ({ id: "", data: images[0]! }));
    const [code, message] = await codeOf(embedderClient(node.url).embed({ images: tooMany }));
    expect(code).toBe(Code.InvalidArgument);
    expect(message).toContain("limit is 64");
    expect((await codeOf(embedderClient(node.url).embed({ images: [] })))[0]).toBe(
      Code.InvalidArgument,
    );
  });

  it("stays ready, and its memory bounded, after a stream of bad inputs", async () => {
    const bad = [Buffer.alloc(0), randomBytes(20_000, 9), pngHeaderClaiming(100_000, 100_000)];
    const client = embedderClient(node.url);
    for (let round = 0; round < 3; round++) {
      await Promise.all(
        Array.from({ length: 60 }, (_, k) =>
          client.embed({ images: [{ id: "", data: bad[k % bad.length]! }] }).catch(() => undefined),
        ),
      );
    }
    const before = process.memoryUsage().rss;
    for (let round = 0; round < 5; round++) {
      await Promise.all(
        Array.from({ length: 60 }, (_, k) =>
          client.embed({ images: [{ id: "", data: bad[k % bad.length]! }] }).catch(() => undefined),
        ),
      );
    }
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
    expect(await node.ready()).toBe(true);
    const res = await fetch(`${node.url}/readyz`);
    expect(res.status).toBe(200);
    expect((await embedAll([images[2]!]))[0]!.length).toBe(512);
  });

  it("streams results for a bulk upload, with a per-item error for a bad image", async () => {
    const client = embedderClient(node.url, "grpc");
    const n = 40;
    async function* requests() {
      for (let i = 0; i < n; i++) {
        const data = i === 17 ? randomBytes(100, 1) : images[i % images.length]!;
        yield { image: { id: `s${i}`, data } };
      }
    }
    const reference = await embedAll(images);
    const seen = new Map<string, Float32Array | string>();
    for await (const r of client.embedStream(requests())) {
      seen.set(r.id, r.result.case === "vector" ? toFloats(r.result.value) : r.result.value!.code);
    }
    expect(seen.size).toBe(n);
    for (let i = 0; i < n; i++) {
      const got = seen.get(`s${i}`)!;
      if (i === 17) expect(got).toBe("invalid_argument");
      else
        expect(maxAbsDiff(got as Float32Array, reference[i % images.length]!)).toBeLessThan(1e-5);
    }
  });

  it("answers /healthz and /readyz over HTTP/1.1", async () => {
    const h = await fetch(`${node.url}/healthz`);
    expect(h.status).toBe(200);
    const r = await fetch(`${node.url}/readyz`);
    expect(await r.json()).toMatchObject({ status: "ready", model: "vit-tiny" });
  });

  it.skipIf(!existsSync(CORPUS))("embeds every real photo in the corpus", async () => {
    const files = ["photos", "odd-metadata"].flatMap((dir) =>
      readdirSync(join(CORPUS, dir))
        .filter((f) => !f.startsWith("."))
        .map((f) => join(CORPUS, dir, f)),
    );
    expect(files.length).toBeGreaterThan(10);
    const client = embedderClient(node.url);
    for (const file of files) {
      const res = await client.embed({ images: [{ id: file, data: readFileSync(file) }] });
      expect(norm(toFloats(res.embeddings[0]!.vector)), file).toBeCloseTo(1, 5);
    }
  });
});

/**
 * A backend that holds every batch until `release()`: "busy" is a state the test ends, not a
 * duration a loaded machine might outlast. `entered` resolves when the first batch arrives.
 */
function gatedBackend(): Backend & { batches: number; entered: Promise<void>; release(): void } {
  const inner = createNoopBackend(32);
  let enter!: () => void;
  let open!: () => void;
  const entered = new Promise<void>((r) => {
    enter = r;
  });
  const released = new Promise<void>((r) => {
    open = r;
  });
  const b = {
    batches: 0,
    entered,
    release: () => open(),
    start: () => inner.start(),
    ready: () => inner.ready(),
    close: () => inner.close(),
    async infer(batch: Parameters<Backend["infer"]>[0]) {
      b.batches++;
      enter();
      await released;
      return inner.infer(batch);
    },
  };
  return b;
}

describe("gpu-node limits and failure modes (noop backend)", () => {
  it("sheds load with ResourceExhausted when the queue is full, and recovers", async () => {
    const backend = gatedBackend();
    const n = await startGpuNode(
      testConfig({ port: 0, maxQueuedImages: 8, maxImagesPerRequest: 8, maxBatchSize: 4 }),
      { backend },
    );
    try {
      const client = embedderClient(n.url);
      const img = await photo(64, 64, 1);
      // The backend holds the admitted images until both refusals are in: a call that arrives
      // late on a loaded machine still finds the queue full.
      let refused = 0;
      let bothRefused!: () => void;
      const refusals = new Promise<void>((r) => {
        bothRefused = r;
      });
      const calls = Array.from({ length: 6 }, () =>
        client
          .embed({
            images: [
              { id: "", data: img },
              { id: "", data: img },
            ],
          })
          .then(
            () => "ok",
            (e: unknown) => {
              const code = Code[ConnectError.from(e).code];
              if (code === "ResourceExhausted" && ++refused === 2) bothRefused();
              return code;
            },
          ),
      );
      await refusals;
      backend.release();
      const outcomes = await Promise.all(calls);
      expect(outcomes.filter((o) => o === "ok").length).toBe(4);
      expect(outcomes.filter((o) => o === "ResourceExhausted").length).toBe(2);
      expect(await client.embed({ images: [{ id: "", data: img }] })).toBeTruthy();
    } finally {
      await n.close();
    }
  });

  it("honours deadlines: the caller gets DeadlineExceeded and its queued work is skipped", async () => {
    const backend = gatedBackend();
    const n = await startGpuNode(testConfig({ port: 0, maxBatchSize: 1, maxBatchWaitMs: 0 }), {
      backend,
    });
    try {
      const client = embedderClient(n.url);
      const img = await photo(64, 64, 2);
      const first = client.embed({ images: [{ id: "", data: img }] });
      await backend.entered; // the backend is now busy until released
      const t0 = performance.now();
      const [code] = await codeOf(
        client.embed(
          {
            images: [
              { id: "", data: img },
              { id: "", data: img },
            ],
          },
          { timeoutMs: 100 },
        ),
      );
      expect(code).toBe(Code.DeadlineExceeded);
      expect(performance.now() - t0).toBeLessThan(280);
      // Our deadline fired here, the server's on its own clock: release the backend once the
      // server has finished the late call (only the first is left in flight).
      await until(() => n.inFlight() === 1);
      backend.release();
      await first;
      // First in, first out: had the timed-out images stayed queued, they would reach the
      // backend before this call's image.
      await client.embed({ images: [{ id: "", data: img }] });
      expect(backend.batches).toBe(2); // the timed-out images never reached the backend
    } finally {
      await n.close();
    }
  });

  it("refuses calls without the shared token, in constant time, and accepts the right one", async () => {
    const n = await startGpuNode(testConfig({ port: 0, token: "s3cret-token" }), {
      backend: createNoopBackend(32),
    });
    try {
      const img = await photo(64, 64, 3);
      const req = { images: [{ id: "", data: img }] };
      expect((await codeOf(embedderClient(n.url).embed(req)))[0]).toBe(Code.Unauthenticated);
      expect((await codeOf(embedderClient(n.url, "grpc", "wrong").embed(req)))[0]).toBe(
        Code.Unauthenticated,
      );
      const ok = await embedderClient(n.url, "grpc", "s3cret-token").embed(req);
      expect(ok.embeddings.length).toBe(1);
    } finally {
      await n.close();
    }
  });

  it("refuses every method and protocol without the token, and any other scheme or spelling of it", async () => {
    const token = "s3cret-token";
    const n = await startGpuNode(testConfig({ port: 0, token, maxMessageBytes: 64 * 1024 }), {
      backend: createNoopBackend(32),
    });
    try {
      const img = await photo(64, 64, 5);
      const protocols: Protocol[] = ["connect-h1", "connect-h2", "grpc", "grpc-web"];
      for (const protocol of protocols) {
        const anonymous = embedderClient(n.url, protocol);
        expect((await codeOf(anonymous.getModelInfo({})))[0], protocol).toBe(Code.Unauthenticated);
        expect((await codeOf(anonymous.embed({ images: [{ id: "", data: img }] })))[0]).toBe(
          Code.Unauthenticated,
        );
        if (protocol !== "connect-h1" && protocol !== "grpc-web") {
          async function* one() {
            yield { image: { id: "s", data: img } };
          }
          const stream = (async () => {
            for await (const _ of anonymous.embedStream(one())) {
              // nothing arrives
            }
          })();
          expect((await codeOf(stream))[0], `${protocol} stream`).toBe(Code.Unauthenticated);
        }
      }
      // Only "Bearer <token>" exactly; the body of a refused call is never read (over the limit
      // here, and still Unauthenticated rather than ResourceExhausted).
      const big = { images: [{ id: "", data: randomBytes(100 * 1024, 5) }] };
      for (const header of [
        `bearer ${token}`,
        `Basic ${Buffer.from(`x:${token}`).toString("base64")}`,
        `Bearer  ${token}`,
        token,
      ]) {
        const res = await fetch(`${n.url}/embedder.v1.EmbedderService/Embed`, {
          method: "POST",
          headers: { "content-type": "application/proto", authorization: header },
          body: Buffer.alloc(200 * 1024),
        });
        expect(res.status, header).toBe(401);
      }
      expect((await codeOf(embedderClient(n.url, "grpc").embed(big)))[0]).toBe(
        Code.Unauthenticated,
      );
      expect((await codeOf(embedderClient(n.url, "grpc", token).embed(big)))[0]).toBe(
        Code.ResourceExhausted,
      );
      // Health and readiness stay open (they reveal nothing and the edge probes them).
      expect((await fetch(`${n.url}/readyz`)).status).toBe(200);
    } finally {
      await n.close();
    }
  });

  it("refuses a message over the size limit", async () => {
    const n = await startGpuNode(testConfig({ port: 0, maxMessageBytes: 64 * 1024 }), {
      backend: createNoopBackend(32),
    });
    try {
      const big = randomBytes(100 * 1024, 3);
      const [code] = await codeOf(embedderClient(n.url).embed({ images: [{ id: "", data: big }] }));
      expect(code).toBe(Code.ResourceExhausted);
      expect(await n.ready()).toBe(true);
    } finally {
      await n.close();
    }
  });

  it("drains on close: a call still uploading its body when the drain begins is served, not refused", async () => {
    const n = await startGpuNode(testConfig({ port: 0, drainTimeoutMs: 5000 }), {
      backend: createNoopBackend(32),
    });
    const body = toBinary(
      EmbedRequestSchema,
      create(EmbedRequestSchema, { images: [{ id: "slow", data: await photo(64, 64, 6) }] }),
    );
    // A Connect unary call over HTTP/1.1 whose body arrives in two halves, the drain in between.
    const answer = new Promise<{ status: number; body: Buffer }>((done, fail) => {
      const req = httpRequest(`${n.url}/embedder.v1.EmbedderService/Embed`, {
        method: "POST",
        headers: { "content-type": "application/proto", "content-length": body.length },
      });
      req.on("response", (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => done({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      });
      req.on("error", fail);
      req.write(body.subarray(0, body.length >> 1));
      setTimeout(() => {
        closed = n.close();
        setTimeout(() => req.end(body.subarray(body.length >> 1)), 200);
      }, 100);
    });
    let closed: Promise<void> | undefined;
    const res = await answer;
    expect(res.status).toBe(200);
    expect(fromBinary(EmbedResponseSchema, res.body).embeddings.map((e) => e.id)).toEqual(["slow"]);
    await closed;
  });

  it("drains on close: in-flight calls finish, new ones are refused, /readyz turns 503", async () => {
    const backend = gatedBackend();
    const n = await startGpuNode(testConfig({ port: 0 }), { backend });
    const client = embedderClient(n.url, "connect-h1");
    const img = await photo(64, 64, 4);
    const inFlight = client.embed({ images: [{ id: "", data: img }] });
    await backend.entered; // the call is in flight (held in the backend)
    const closed = n.close();
    expect(await n.ready()).toBe(false);
    backend.release();
    const res = await inFlight;
    expect(res.embeddings.length).toBe(1);
    await closed;
    await expect(client.embed({ images: [{ id: "", data: img }] })).rejects.toThrow();
  });
});
