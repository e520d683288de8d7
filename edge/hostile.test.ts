// Hostile inputs against the edge inside workerd, with the real Images binding (local) and a
// gpu-node stand-in: every generated hostile file (and the corpus) as a raw body and as a
// multipart part, and hostile multipart / base64 requests. Each gets its expected status and a
// JSON error naming the problem, nothing but a clean small JPEG ever reaches the gpu-node, the
// logs hold no secrets, and the edge is still ready afterwards. Files: test/support/hostile.ts.
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { countBy, recordFigures } from "../test/reliability/figures.ts";
import type { HostileFileJson } from "../test/support/hostile.ts";
import { HOSTILE_REQUESTS } from "../test/support/hostile-requests.ts";
import { segmentMarkers } from "./testing/jpeg-markers.ts";
import {
  contains,
  fromBase64,
  TEST_KEY,
  TEST_TOKEN,
  type TestApp,
  testApp,
} from "./testing/test-app.ts";
import { readHeader } from "./validate/index.ts";

const files = inject("hostile") as HostileFileJson[];
const EXIF_SECRET = "SECRET-EXIF-VALUE-7f3a";
const CODES: Record<number, string> = {
  400: "bad_request",
  413: "payload_too_large",
  415: "unsupported_media_type",
  422: "unprocessable_image",
};

type ErrorBody = { error: { code: string; message: string } };
type ListBody = { data: { embedding: number[]; original: { format: string } }[] };

/** What crossed to the gpu-node must be a fresh, small, metadata-free JPEG and nothing else. */
function expectCleanJpeg(sent: Uint8Array, name: string): void {
  expect([sent[0], sent[1]], name).toEqual([0xff, 0xd8]);
  expect(
    segmentMarkers(sent).filter((m) => (m >= 0xe1 && m <= 0xef) || m === 0xfe),
    name,
  ).toEqual([]);
  const { width, height } = readHeader(sent, "jpeg");
  expect(Math.min(width, height), name).toBeLessThanOrEqual(256);
  expect(contains(sent, "PK\x03\x04"), `${name}: ZIP bytes reached the gpu-node`).toBe(false);
  expect(contains(sent, EXIF_SECRET), `${name}: EXIF reached the gpu-node`).toBe(false);
}

let app: TestApp;
const logs: string[] = [];
/** What each file and request actually got: kind → status. */
const outcomes: { kind: string; via: string; status: number }[] = [];

beforeAll(async () => {
  app = await testApp();
  // Everything the edge writes to the console is captured (and checked at the end).
  for (const level of ["log", "info", "warn", "error", "debug"] as const) {
    vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
      logs.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" "));
    });
  }
});
afterAll(() => {
  vi.restoreAllMocks();
});

describe("hostile files as a raw body (POST /v1/embeddings)", () => {
  it("has the generated files (and says whether the corpus is there)", () => {
    const corpus = files.filter((f) => f.kind === "corpus").length;
    if (corpus === 0) console.warn("../shared/corpus is absent: only generated files are tried");
    expect(files.length - corpus).toBeGreaterThan(90);
  });

  it.each(files.map((f) => [f.name, f] as const))("%s", async (name, f) => {
    const bytes = fromBase64(f.base64);
    const before = app.standIn.received.length;
    const res = await app.request("/v1/embeddings", {
      method: "POST",
      headers: { "content-type": f.contentType },
      body: bytes,
    });
    const text = await res.text();
    outcomes.push({ kind: f.kind, via: "raw body", status: res.status });
    expect(res.status, `${name}: ${text}`).toBe(f.edge.status);
    expect(res.headers.get("x-request-id")).toBeTruthy();
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    if (f.edge.status === 200) {
      const body = JSON.parse(text) as ListBody;
      expect(body.data[0]!.embedding).toHaveLength(512);
      expect(app.standIn.received.length - before).toBe(1);
      expectCleanJpeg(app.standIn.received.at(-1)!, name);
      return;
    }
    const body = JSON.parse(text) as ErrorBody;
    expect(body.error.code).toBe(CODES[f.edge.status]);
    expect(body.error.message).toMatch(/^image 0/);
    if (f.edge.message) expect(body.error.message).toMatch(new RegExp(f.edge.message));
    expect(text).not.toMatch(/\bat .*\.(ts|js):\d+/);
    expect(app.standIn.received.length, "a refused file reached the gpu-node").toBe(before);
  });
});

describe("the new formats' hostile files with RESIZER=wasm (the in-Worker decoders)", () => {
  const mine = files.filter((f) => /^(heic|png|webp)\//.test(f.name));
  let wasmApp: TestApp;
  beforeAll(async () => {
    wasmApp = await testApp({ vars: { RESIZER: "wasm" } });
  });

  it.each(mine.map((f) => [f.name, f] as const))("%s", async (name, f) => {
    const expected = f.edgeWasm ?? f.edge;
    const before = wasmApp.standIn.received.length;
    const res = await wasmApp.request("/v1/embeddings", {
      method: "POST",
      headers: { "content-type": f.contentType },
      body: fromBase64(f.base64),
    });
    const text = await res.text();
    outcomes.push({ kind: f.kind, via: "raw body, RESIZER=wasm", status: res.status });
    expect(res.status, `${name}: ${text}`).toBe(expected.status);
    if (expected.message)
      expect(JSON.parse(text).error.message).toMatch(new RegExp(expected.message));
    if (expected.status !== 200) expect(wasmApp.standIn.received.length).toBe(before);
    // A refused file leaves the resizer working: a good photo still embeds.
    const good = files.find((g) => g.name === "dims/png-1x1")!;
    const after = await wasmApp.request("/v1/embeddings", {
      method: "POST",
      headers: { "content-type": "image/png" },
      body: fromBase64(good.base64),
    });
    expect(after.status).toBe(200);
  });
});

describe("hostile files as multipart parts", () => {
  it("gives every file the same answer as a named part, the message naming the part", async () => {
    for (const f of files) {
      const form = new FormData();
      form.append("image", new Blob([fromBase64(f.base64)], { type: f.contentType }), f.name);
      const res = await app.request("/v1/embeddings", { method: "POST", body: form });
      const text = await res.text();
      outcomes.push({ kind: f.kind, via: "multipart part", status: res.status });
      expect(res.status, `${f.name}: ${text}`).toBe(f.edge.status);
      if (f.edge.status !== 200) {
        const label = `image 0 (${JSON.stringify(f.name.slice(0, 64))})`;
        expect((JSON.parse(text) as ErrorBody).error.message.startsWith(label), text).toBe(true);
      }
    }
  });

  it("fails a multipart request as a whole when one of its images is hostile, naming that one", async () => {
    const good = files.find((f) => f.name === "dims/png-1x1")!;
    const bad = files.find((f) => f.kind === "bomb")!;
    const form = new FormData();
    form.append("image", new Blob([fromBase64(good.base64)]), "good.png");
    form.append("image", new Blob([fromBase64(bad.base64)]), "bomb.png");
    const before = app.standIn.received.length;
    const res = await app.request("/v1/embeddings", { method: "POST", body: form });
    expect(res.status).toBe(413);
    expect(((await res.json()) as ErrorBody).error.message).toMatch(/^image 1 \("bomb\.png"\)/);
    expect(app.standIn.received.length).toBe(before);
  });
});

describe("hostile requests (multipart, base64)", () => {
  const LIMIT = 4 * 1024 * 1024;
  let small: TestApp;
  beforeAll(async () => {
    small = await testApp({ vars: { MAX_REQUEST_BYTES: String(LIMIT) } });
  });

  it.each(HOSTILE_REQUESTS.map((r) => [`${r.kind}: ${r.name}`, r] as const))(
    "%s",
    async (_name, r) => {
      const image = fromBase64(files.find((f) => f.name === "dims/png-1x1")!.base64);
      const { headers, body } = r.build(image, LIMIT);
      let offered = 0;
      const sent =
        body instanceof ReadableStream
          ? body.pipeThrough(
              new TransformStream<Uint8Array, Uint8Array>({
                transform(chunk, controller) {
                  offered += chunk.length;
                  controller.enqueue(chunk);
                },
              }),
            )
          : body;
      const res = await small.request(r.path, {
        method: "POST",
        headers,
        body: sent,
        // @ts-expect-error: workerd's RequestInit takes duplex for streamed bodies
        duplex: "half",
      });
      const text = await res.text();
      outcomes.push({ kind: r.kind, via: "request", status: res.status });
      expect(res.status, text).toBe(r.status);
      if (r.status === 200) return;
      const err = (JSON.parse(text) as ErrorBody).error;
      expect(err.code).toBe(CODES[r.status]);
      if (r.message) expect(err.message).toMatch(new RegExp(r.message));
      expect(text).not.toMatch(/\bat .*\.(ts|js):\d+/);
      // The body limit stops reading a stream that goes on: nowhere near all of it was taken.
      if (r.streamed) expect(offered).toBeLessThan(LIMIT + 1024 * 1024);
    },
  );
});

describe("after all of it", () => {
  it("is still ready and still embeds a good image", async () => {
    expect((await app.request("/readyz", {}, null)).status).toBe(200);
    expect((await app.request("/healthz", {}, null)).status).toBe(200);
    const good = files.find((f) => f.name === "wrong-type/png-sent-as-jpeg")!;
    const res = await app.request("/v1/embeddings", {
      method: "POST",
      headers: { "content-type": "image/png" },
      body: fromBase64(good.base64),
    });
    expect(res.status).toBe(200);
  });

  it("records what every input got (for the reliability report)", ({ task }) => {
    const wasmRuns = files.filter((f) => /^(heic|png|webp)\//.test(f.name)).length;
    expect(outcomes.length).toBe(2 * files.length + HOSTILE_REQUESTS.length + wasmRuns);
    expect(outcomes.filter((o) => o.status >= 500)).toEqual([]);
    const byKind: Record<string, Record<string, number>> = {};
    for (const o of outcomes) {
      byKind[o.kind] ??= {};
      const k = String(o.status);
      byKind[o.kind]![k] = (byKind[o.kind]![k] ?? 0) + 1;
    }
    recordFigures(task, {
      section: "hostile",
      title: "hostile files (raw body and multipart part) and hostile requests",
      target: "edge in workerd (real Images binding, gpu-node stand-in)",
      data: {
        inputs: outcomes.length,
        files: files.length,
        requests: HOSTILE_REQUESTS.length,
        byKind,
        byStatus: countBy(outcomes, (o) => String(o.status)),
        fiveHundreds: 0,
      },
    });
  });

  it("wrote no API key, token, EXIF value or image bytes to its logs", () => {
    const all = logs.join("\n");
    expect(all).not.toContain(TEST_KEY);
    expect(all).not.toContain(TEST_TOKEN);
    expect(all).not.toContain(EXIF_SECRET);
    for (const f of files.filter((x) => x.base64.length > 200)) {
      expect(all).not.toContain(f.base64.slice(40, 120));
    }
  });
});
