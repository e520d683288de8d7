// Hostile inputs against real processes: the gpu-node CLI (vit-tiny, its own process, so that a
// crash or a leak would show) called directly, and the edge Worker (wrangler's startWorker, i.e.
// workerd, Images binding running locally) in front of it. Every generated hostile file and every
// corpus photo gets its expected answer (test/support/hostile.ts); the processes stay alive and
// ready, good images still embed exactly as before, memory returns to its baseline, and the
// gpu-node's log holds no token, image bytes or EXIF values.
import { createHash } from "node:crypto";
import { createServer } from "node:http";
import { Code, ConnectError } from "@connectrpc/connect";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { countBy, recordFigures } from "./reliability/figures.ts";
import { type EdgeWorker, startEdge } from "./support/edge-worker.ts";
import { embedderClient, maxAbsDiff, norm, toFloats } from "./support/gpu-node-client.ts";
import { EXIF_SECRET, type HostileFile, hostileFiles } from "./support/hostile.ts";
import { HOSTILE_REQUESTS } from "./support/hostile-requests.ts";
import { photo, photoPixels } from "./support/images.ts";
import { MiB, workerdRss } from "./support/proc.ts";
import { type GpuNodeProcess, spawnGpuNode } from "./support/processes.ts";

const TOKEN = "hostile-e2e-token-31f0";
const E2E_TARGET =
  "edge Worker (wrangler startWorker → workerd, local Images binding) → gpu-node process";
const KEY = "hostile-e2e-key-77aa";
const REQUEST_LIMIT = 4 * MiB;
/** RSS may grow this much over two passes of hostile files once warmed up (allocator slack). */
const RSS_SLACK = 32 * MiB;
/**
 * V8 grows an idle-pressure heap lazily (measured: ~190 MB heap per process under this churn,
 * with heap *used* flat), which hides any real leak in RSS. A capped heap, as in a container,
 * makes RSS show what is really retained: with it, 5,000 refused calls moved RSS by < 10 MB.
 */
const GPU_NODE_OPTIONS = "--max-old-space-size=96 --max-semi-space-size=4";
/**
 * And without the gpu-node's own NODE_FLAGS: their 64 MB starting budget lets the heap grow by
 * design before its first full GC (RSS +34 MB over the two passes, in a CI run), which is memory
 * in use, not retained, and would hide a leak of the same size.
 */
const GPU_NODE_FLAGS: readonly string[] = [];

let files: HostileFile[];
let gpu: GpuNodeProcess;
let edge: EdgeWorker;
let good: Buffer;
let goodVector: Float32Array;

beforeAll(async () => {
  [files, gpu, good] = await Promise.all([
    hostileFiles(),
    spawnGpuNode(["--model", "vit-tiny", "--threads", "1"], {
      nodeArgs: GPU_NODE_FLAGS,
      env: { GPU_NODE_TOKEN: TOKEN, NODE_OPTIONS: GPU_NODE_OPTIONS },
    }),
    photo(300, 220, 5),
  ]);
  edge = await startEdge({
    GPU_NODE_URLS: gpu.url,
    GPU_NODE_TOKEN: TOKEN,
    API_KEY_HASHES: createHash("sha256").update(KEY).digest("hex"),
    MAX_REQUEST_BYTES: String(REQUEST_LIMIT),
  });
  const res = await client().embed({ images: [{ id: "good", data: good }] });
  goodVector = toFloats(res.embeddings[0]!.vector);
}, 120_000);

afterAll(async () => {
  await edge?.dispose();
  await gpu?.stop("SIGKILL");
});

const client = () => embedderClient(gpu.url, "connect-h2", TOKEN);

interface Outcome {
  readonly file: HostileFile;
  readonly code: string;
  readonly message: string;
}

/** One Embed call per file; the answer's code ("ok" or the Connect code name) and message. */
async function embedEach(list: readonly HostileFile[]): Promise<Outcome[]> {
  const out: Outcome[] = [];
  const c = client();
  for (const [i, file] of list.entries()) {
    try {
      const res = await c.embed({ images: [{ id: file.name, data: file.bytes }] });
      const v = toFloats(res.embeddings[0]!.vector);
      expect(v.length, file.name).toBe(512);
      expect(norm(v), file.name).toBeCloseTo(1, 4);
      out.push({ file, code: "ok", message: "" });
    } catch (err) {
      const ce = ConnectError.from(err);
      out.push({
        file,
        code: Code[ce.code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase(),
        message: ce.rawMessage,
      });
    }
    // Every 16 files, a good image must still embed exactly as before the storm.
    if (i % 16 === 15) {
      const res = await c.embed({ images: [{ id: "good", data: good }] });
      expect(maxAbsDiff(toFloats(res.embeddings[0]!.vector), goodVector)).toBeLessThanOrEqual(1e-6);
    }
  }
  return out;
}

describe("hostile files against the gpu-node directly (its own process)", () => {
  it("answers every file with its expected code and message, survives, and its memory returns to baseline", async ({
    task,
  }) => {
    const first = await embedEach(files);
    for (const o of first) {
      expect(o.code, `${o.file.name}: ${o.message}`).toBe(o.file.gpu.code);
      if (o.code === "ok") continue;
      expect(o.message, o.file.name).toMatch(/^image 0 \(id "/);
      if (o.file.gpu.message)
        expect(o.message, o.file.name).toMatch(new RegExp(o.file.gpu.message));
      expect(o.message).not.toMatch(/\n\s+at /);
    }
    // Warmed up by a second pass: two more may not grow the processes (a leak per file would).
    await embedEach(files);
    const baseline = gpu.rss();
    for (let pass = 0; pass < 2; pass++) await embedEach(files);
    const after = gpu.rss();
    expect(gpu.alive()).toBe(true);
    expect((await fetch(`${gpu.url}/readyz`)).status).toBe(200);
    expect(after - baseline, `RSS ${baseline / MiB} → ${after / MiB} MiB`).toBeLessThan(RSS_SLACK);
    recordFigures(task, {
      section: "hostile",
      title: "hostile files, four passes, one Embed each",
      target: "gpu-node (CLI process, vit-tiny, Connect over h2c)",
      data: {
        inputs: first.length * 4,
        files: first.length,
        byKind: Object.fromEntries(
          Object.entries(countBy(first, (o) => o.file.kind)).map(([k]) => [
            k,
            countBy(
              first.filter((o) => o.file.kind === k),
              (o) => o.code,
            ),
          ]),
        ),
        byCode: countBy(first, (o) => o.code),
        internalErrors: 0,
        rssBaselineMiB: +(baseline / MiB).toFixed(1),
        rssAfterMiB: +(after / MiB).toFixed(1),
      },
    });
  });

  it("streams every file through one EmbedStream: a per-item error or a vector each, and the stream lives on", async () => {
    async function* requests() {
      for (const f of files) yield { image: { id: f.name, data: f.bytes } };
    }
    const seen = new Map<string, string>();
    for await (const r of client().embedStream(requests())) {
      seen.set(r.id, r.result.case === "vector" ? "ok" : r.result.value!.code);
    }
    expect(seen.size).toBe(files.length);
    for (const f of files) expect(seen.get(f.name), f.name).toBe(f.gpu.code);
  });

  it("keeps limits at the protocol level: too many images, an oversized message, a huge id, a deadline beyond the maximum", async () => {
    const codeOf = async (p: Promise<unknown>) =>
      p.then(
        () => "ok",
        (e: unknown) => {
          const ce = ConnectError.from(e);
          return `${Code[ce.code]}: ${ce.rawMessage}`;
        },
      );
    const c = client();
    expect(
      await codeOf(
        c.embed({
          images: Array.from({ length: 100_000 }, () => ({ id: "", data: new Uint8Array(0) })),
        }),
      ),
    ).toMatch(/^InvalidArgument: request has 100000 images; the limit is \d+/);
    const hugeId = "x".repeat(1_000_000);
    const message = await codeOf(
      c.embed({ images: [{ id: hugeId, data: Buffer.from("not an image") }] }),
    );
    expect(message).toMatch(/^InvalidArgument: image 0 \(id "x{64}"\): unsupported_format/);
    expect(message.length).toBeLessThan(400); // the id is cut, not echoed
    expect(
      await codeOf(c.embed({ images: [{ id: "", data: good }] }, { timeoutMs: 86_400_000 })),
    ).toMatch(/^InvalidArgument: timeout \d+ms must be <= \d+/);
    // An oversized message: refused while reading (64 MiB default), the node stays ready.
    const big = new Uint8Array(65 * MiB);
    expect(await codeOf(c.embed({ images: [{ id: "", data: big }] }))).toMatch(
      /^ResourceExhausted: message size/,
    );
    expect((await fetch(`${gpu.url}/readyz`)).status).toBe(200);
  });

  it("refuses a body that is not protobuf: unauthenticated before reading it; with the token, the node stays up", async () => {
    const garbage = Buffer.alloc(4096, 0xff);
    const post = (headers: Record<string, string>) =>
      fetch(`${gpu.url}/embedder.v1.EmbedderService/Embed`, {
        method: "POST",
        headers: { "content-type": "application/proto", ...headers },
        body: garbage,
      });
    const anonymous = await post({});
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toMatchObject({ code: "unauthenticated" });
    // With the token, connect-es rejects the unparsable body before any of our code runs (it
    // says "internal"; see docs/operations.md, Known limits). What matters here: a clean JSON error, no crash.
    const authed = await post({ authorization: `Bearer ${TOKEN}` });
    expect([400, 500]).toContain(authed.status);
    expect(JSON.stringify(await authed.json())).not.toMatch(/\bat .*\.(ts|js):\d+/);
    expect(gpu.alive()).toBe(true);
    expect((await fetch(`${gpu.url}/readyz`)).status).toBe(200);
  });
});

type ErrorBody = { error: { code: string; message: string } };

async function postEdge(path: string, init: RequestInit): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${KEY}`);
  const send = () =>
    fetch(`${edge.url}${path}`, {
      ...init,
      headers,
      ...(init.body instanceof ReadableStream ? { duplex: "half" } : {}),
    });
  const res = await send();
  // wrangler's local dev proxy (its ProxyWorker, in front of our Worker; a deployed Worker has
  // none) lost its connection to the runtime once under load, answering 500 "Network connection
  // lost" before our Worker answered. That one failure of the dev server is retried, once, with
  // the same request; any answer of our Worker counts as it is.
  if (res.status !== 500 || init.body instanceof ReadableStream) return res;
  const text = await res.clone().text();
  return /Network connection lost/.test(text) && !text.startsWith('{"error"') ? send() : res;
}

async function edgePass(): Promise<{ file: HostileFile; status: number }[]> {
  const out: { file: HostileFile; status: number }[] = [];
  for (const file of files) {
    const res = await postEdge("/v1/embeddings", {
      method: "POST",
      headers: { "content-type": file.contentType },
      body: file.bytes,
    });
    const text = await res.text();
    expect(res.status, `${file.name}: ${text}`).toBe(file.edge.status);
    if (res.status === 200) {
      const body = JSON.parse(text) as { data: { embedding: number[] }[] };
      expect(norm(Float32Array.from(body.data[0]!.embedding)), file.name).toBeCloseTo(1, 4);
    } else {
      const err = (JSON.parse(text) as ErrorBody).error;
      expect(err.message, file.name).toMatch(/^image 0/);
      if (file.edge.message) expect(err.message, file.name).toMatch(new RegExp(file.edge.message));
    }
    out.push({ file, status: res.status });
  }
  return out;
}

describe("hostile inputs through the edge Worker (workerd) to the gpu-node", () => {
  it("answers every file end to end with its expected status; 200s carry unit vectors; memory stays put", async ({
    task,
  }) => {
    const first = await edgePass();
    const workerdBefore = workerdRss();
    const gpuBefore = gpu.rss();
    await edgePass();
    const workerdAfter = workerdRss();
    const gpuAfter = gpu.rss();
    expect(workerdBefore, "the Worker's workerd process was not found").toBeGreaterThan(0);
    // workerd's heap is collected in large steps (measured 350 → 710 → 473 MB under load): only a
    // loose bound is stable here. In production each isolate is capped at 128 MB by Cloudflare.
    expect(workerdAfter - workerdBefore).toBeLessThan(128 * MiB);
    expect(gpuAfter - gpuBefore).toBeLessThan(RSS_SLACK);
    expect((await fetch(`${edge.url}/readyz`)).status).toBe(200);
    recordFigures(task, {
      section: "hostile",
      title: "hostile files, two passes, raw body",
      target: E2E_TARGET,
      data: {
        inputs: first.length * 2,
        files: first.length,
        byKind: Object.fromEntries(
          [...new Set(first.map((o) => o.file.kind))].map((k) => [
            k,
            countBy(
              first.filter((o) => o.file.kind === k),
              (o) => String(o.status),
            ),
          ]),
        ),
        byStatus: countBy(first, (o) => String(o.status)),
        fiveHundreds: 0,
        workerdRssMiB: [+(workerdBefore / MiB).toFixed(1), +(workerdAfter / MiB).toFixed(1)],
        gpuNodeRssMiB: [+(gpuBefore / MiB).toFixed(1), +(gpuAfter / MiB).toFixed(1)],
      },
    });
  });

  it("answers every hostile multipart and base64 request with its status", async ({ task }) => {
    const image = files.find((f) => f.name === "dims/png-1x1")!.bytes;
    const statuses: { kind: string; status: number }[] = [];
    for (const r of HOSTILE_REQUESTS) {
      const { headers, body } = r.build(image, REQUEST_LIMIT);
      const res = await postEdge(r.path, { method: "POST", headers, body });
      const text = await res.text();
      expect(res.status, `${r.name}: ${text}`).toBe(r.status);
      if (r.status !== 200 && r.message) {
        expect((JSON.parse(text) as ErrorBody).error.message, r.name).toMatch(
          new RegExp(r.message),
        );
      }
      statuses.push({ kind: r.kind, status: res.status });
    }
    expect((await fetch(`${edge.url}/readyz`)).status).toBe(200);
    recordFigures(task, {
      section: "hostile",
      title: "hostile multipart and base64 requests",
      target: E2E_TARGET,
      data: {
        inputs: statuses.length,
        byKind: Object.fromEntries(
          [...new Set(statuses.map((x) => x.kind))].map((k) => [
            k,
            countBy(
              statuses.filter((x) => x.kind === k),
              (x) => String(x.status),
            ),
          ]),
        ),
        byStatus: countBy(statuses, (s) => String(s.status)),
        fiveHundreds: 0,
      },
    });
  });

  it("fetches nothing a client names: URLs in JSON, bodies, parts, SVG, XMP and EXIF go nowhere", async ({
    task,
  }) => {
    const hits: string[] = [];
    const tripwire = createServer((req, res) => {
      hits.push(`${req.method} ${req.url}`);
      res.end();
    });
    await new Promise<void>((r) => tripwire.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(tripwire.address() as { port: number }).port}/photo.jpg`;
    try {
      const svg = `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="8" height="8"><image href="${url}" xlink:href="${url}" width="8" height="8"/></svg>`;
      const withUrls = await sharp(photoPixels(200, 150, 9), {
        raw: { width: 200, height: 150, channels: 3 },
      })
        .jpeg()
        .withXmp(
          `<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="${url}"/></rdf:RDF></x:xmpmeta>`,
        )
        .withExif({ IFD0: { ImageDescription: url, Copyright: url } })
        .toBuffer();
      const asJson = (body: unknown) => ({
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      const form = new FormData();
      form.append("image", url);
      const tries: [string, string, RequestInit, number][] = [
        ["base64 route, a URL instead of base64", "/embed/base64", asJson({ images: [url] }), 400],
        [
          "base64 route, a data URI holding a URL",
          "/embed/base64",
          asJson({ images: [`data:image/jpeg;base64,${btoa(url)}`] }),
          415,
        ],
        [
          "base64 route, URL fields beside an image",
          "/embed/base64",
          asJson({
            images: [good.toString("base64")],
            url,
            image_url: url,
            model_name: url,
            pretrained: url,
          }),
          200,
        ],
        [
          "a URL as the raw body",
          "/v1/embeddings",
          { method: "POST", headers: { "content-type": "image/jpeg" }, body: url },
          415,
        ],
        ["a URL as the image part", "/v1/embeddings", { method: "POST", body: form }, 400],
        [
          "a URL in the query",
          `/v1/embeddings?url=${encodeURIComponent(url)}&image_url=${encodeURIComponent(url)}`,
          { method: "POST", headers: { "content-type": "image/jpeg" }, body: good },
          200,
        ],
        [
          "an SVG pointing at it",
          "/v1/embeddings",
          { method: "POST", headers: { "content-type": "image/svg+xml" }, body: svg },
          415,
        ],
        [
          "a JPEG whose XMP and EXIF name it",
          "/v1/embeddings",
          { method: "POST", headers: { "content-type": "image/jpeg" }, body: withUrls },
          200,
        ],
      ];
      for (const [name, path, init, status] of tries) {
        const res = await postEdge(path, init);
        expect(res.status, `${name}: ${await res.clone().text()}`).toBe(status);
        await res.body?.cancel();
      }
      // The gpu-node directly: a URL, an SVG and the JPEG carrying URLs as image data.
      const c = client();
      for (const data of [Buffer.from(url), Buffer.from(svg)]) {
        await expect(c.embed({ images: [{ id: "u", data }] })).rejects.toThrow(
          /unsupported_format/,
        );
      }
      expect((await c.embed({ images: [{ id: "u", data: withUrls }] })).embeddings).toHaveLength(1);
      await new Promise((r) => setTimeout(r, 300));
      expect(hits).toEqual([]);
      recordFigures(task, {
        section: "security",
        title: "client-named URLs (JSON fields, body, part, query, SVG href, XMP, EXIF)",
        target: "edge Worker (workerd) and gpu-node process, with a tripwire HTTP server",
        data: { attempts: tries.length + 3, fetchesOfTheTripwire: hits.length },
      });
    } finally {
      await new Promise((r) => tripwire.close(r));
    }
  });

  it("kept no token, image bytes or EXIF value in the gpu-node's log", () => {
    const log = gpu.output();
    expect(gpu.logs.filter((l) => l.msg === "call").length).toBeGreaterThan(files.length);
    expect(log).not.toContain(TOKEN);
    expect(log).not.toContain(KEY);
    expect(log).not.toContain(EXIF_SECRET);
    for (const f of files.filter((x) => x.bytes.length >= 64)) {
      const slice = Buffer.from(f.bytes.subarray(16, 64));
      expect(log).not.toContain(slice.toString("base64"));
      expect(log).not.toContain(slice.toString("hex"));
    }
  });
});
