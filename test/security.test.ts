// Security properties, tested structurally where timing would flake:
//  - edge API keys: only SHA-256 hashes are configured; a key is hashed first, then compared with
//    every configured hash, reading every byte whatever the position of the first difference;
//  - the gpu-node's token: compared as two SHA-256 digests with crypto.timingSafeEqual, before
//    the body is read, for every caller whatever it sends;
//  - limits: message size and deadlines on the gpu-node, its metrics port takes no bodies;
//  - logs: no token (right or wrong), image bytes or EXIF value reaches the gpu-node's log;
//  - no module of the edge or the gpu-node opens a connection to anything a client names.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { connect } from "node:net";
import { join, relative, resolve } from "node:path";
import { Writable } from "node:stream";
import { Code, ConnectError } from "@connectrpc/connect";
import sharp from "sharp";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { constantTimeEqual, matchingDigest } from "../edge/auth.ts";
import { parseEdgeConfig } from "../edge/config.ts";
import type { Backend } from "../gpu-node/backends/backend.ts";
import { createNoopBackend } from "../gpu-node/backends/noop.ts";
import { testConfig } from "../gpu-node/config.ts";
import { createLogger } from "../gpu-node/logger.ts";
import { type GpuNode, startGpuNode } from "../gpu-node/node.ts";
import { listenDual } from "../gpu-node/rpc/listener.ts";
import { recordFigures } from "./reliability/figures.ts";
import { embedderClient } from "./support/gpu-node-client.ts";
import { photoPixels } from "./support/images.ts";

// A pass-through spy on node:crypto's timingSafeEqual: the gpu-node's real comparison runs, and
// every call's arguments are recorded.
const { timingSafeEqualCalls } = vi.hoisted(() => ({
  timingSafeEqualCalls: [] as { a: number; b: number }[],
}));
vi.mock("node:crypto", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:crypto")>();
  return {
    ...real,
    timingSafeEqual: (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
      timingSafeEqualCalls.push({ a: a.byteLength, b: b.byteLength });
      return real.timingSafeEqual(a, b);
    },
  };
});

const ROOT = resolve(import.meta.dirname, "..");
const sha256Hex = async (text: string) =>
  Buffer.from(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))).toString(
    "hex",
  );

/** A Uint8Array whose index reads are recorded, in order. */
function recording(bytes: Uint8Array, reads: number[]): Uint8Array {
  return new Proxy(bytes, {
    get(target, prop, receiver) {
      if (typeof prop === "string" && /^\d+$/.test(prop)) reads.push(Number(prop));
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : (value ?? receiver[prop]);
    },
  });
}

describe("edge API keys: hashed, compared in constant time", () => {
  it("configures hashes only: a plain key in API_KEY_HASHES is refused at start", () => {
    expect(() => parseEdgeConfig({ API_KEY_HASHES: "my-plain-secret-key" })).toThrow(
      /64-hex-digit SHA-256/,
    );
  });

  it("reads every byte of both digests wherever the first difference is (or none)", () => {
    const base = new Uint8Array(32).map((_, i) => i * 7);
    const sequences: string[] = [];
    for (const differAt of [0, 1, 15, 31, -1]) {
      const other = base.slice();
      if (differAt >= 0) other[differAt]! ^= 0xff;
      const readsA: number[] = [];
      const readsB: number[] = [];
      const equal = constantTimeEqual(recording(base, readsA), recording(other, readsB));
      expect(equal).toBe(differAt < 0);
      expect(readsA).toEqual(Array.from({ length: 32 }, (_, i) => i));
      expect(readsB).toEqual(readsA);
      sequences.push(`${readsA.join(",")}|${readsB.join(",")}`);
    }
    expect(new Set(sequences).size).toBe(1); // the same work for every case
  });

  it("hashes every key first (any length, empty too) and compares it with every configured hash", async () => {
    const keys = ["alpha-key", "beta-key", "gamma-key", "delta-key"];
    const hashes = await Promise.all(keys.map(sha256Hex));
    const digest = vi.spyOn(crypto.subtle, "digest");
    try {
      for (const candidate of ["alpha-key", "delta-key", "nope", "", "x".repeat(10_000)]) {
        const visited: number[] = [];
        const watched = new Proxy(hashes, {
          get(target, prop) {
            if (typeof prop === "string" && /^\d+$/.test(prop)) visited.push(Number(prop));
            return Reflect.get(target, prop);
          },
        });
        digest.mockClear();
        const matched = await matchingDigest(candidate, watched);
        expect(matched !== undefined).toBe(keys.includes(candidate));
        // The first match does not stop the walk: all four hashes, in order, every time.
        expect(visited).toEqual([0, 1, 2, 3]);
        // What is compared is the key's SHA-256, never the key itself.
        expect(digest).toHaveBeenCalledTimes(1);
        expect(digest.mock.calls[0]![0]).toBe("SHA-256");
        // A match hands back that digest: the request's key id comes from it, not a second hash.
        if (matched) expect(Buffer.from(matched).toString("hex")).toBe(await sha256Hex(candidate));
      }
    } finally {
      digest.mockRestore();
    }
  });
});

/** Collects the gpu-node's JSON log lines in memory. */
function memoryLog() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString("utf8"));
      done();
    },
  });
  return { lines, log: createLogger("debug", stream) };
}

const TOKEN = "security-token-7b7e1f0c";

describe("gpu-node token, limits and logs (in process, noop backend)", () => {
  let node: GpuNode;
  let logs: string[];
  let backend: Backend & { delayMs: number };
  beforeAll(async () => {
    const inner = createNoopBackend(32);
    backend = {
      delayMs: 0,
      start: () => inner.start(),
      ready: () => inner.ready(),
      close: () => inner.close(),
      async infer(batch) {
        if (backend.delayMs > 0) await new Promise((r) => setTimeout(r, backend.delayMs));
        return inner.infer(batch);
      },
    };
    const captured = memoryLog();
    logs = captured.lines;
    node = await startGpuNode(
      testConfig({
        port: 0,
        token: TOKEN,
        maxMessageBytes: 256 * 1024,
        defaultDeadlineMs: 400,
        maxDeadlineMs: 5000,
        logLevel: "debug",
      }),
      { backend, log: captured.log },
    );
  });
  afterAll(() => node?.close());

  const codeOf = (p: Promise<unknown>) =>
    p.then(
      () => "ok",
      (e: unknown) => Code[ConnectError.from(e).code],
    );

  it("compares every presented token as two 32-byte digests with timingSafeEqual, whatever it is", async ({
    task,
  }) => {
    const image = await sharp(photoPixels(64, 48, 1), {
      raw: { width: 64, height: 48, channels: 3 },
    })
      .jpeg()
      .toBuffer();
    const req = { images: [{ id: "t", data: image }] };
    const presented: [string, string | undefined][] = [
      ["none", undefined],
      ["empty", ""],
      ["short", "x"],
      ["long", "y".repeat(4096)],
      ["right but for the first byte", `X${TOKEN.slice(1)}`],
      ["right but for the last byte", `${TOKEN.slice(0, -1)}X`],
      ["right plus a suffix", `${TOKEN}0`],
      ["right", TOKEN],
    ];
    const results: Record<string, string> = {};
    for (const [name, token] of presented) {
      timingSafeEqualCalls.length = 0;
      results[name] = await codeOf(embedderClient(node.url, "connect-h1", token).embed(req));
      expect(timingSafeEqualCalls.length, name).toBeGreaterThanOrEqual(1);
      for (const c of timingSafeEqualCalls) expect(c, name).toEqual({ a: 32, b: 32 });
    }
    expect(results).toEqual({
      none: "Unauthenticated",
      empty: "Unauthenticated",
      short: "Unauthenticated",
      long: "Unauthenticated",
      "right but for the first byte": "Unauthenticated",
      "right but for the last byte": "Unauthenticated",
      "right plus a suffix": "Unauthenticated",
      right: "ok",
    });
    recordFigures(task, {
      section: "security",
      title: "gpu-node token: digests compared with timingSafeEqual for every caller",
      target: "gpu-node (in process)",
      data: {
        presented: presented.length,
        refused: presented.length - 1,
        comparedAs: "2 x 32-byte SHA-256",
      },
    });
  });

  it("refuses a caller without the token before reading its body, even one over the size limit", async () => {
    const tooBig = { images: [{ id: "", data: new Uint8Array(1024 * 1024) }] };
    expect(await codeOf(embedderClient(node.url, "grpc").embed(tooBig))).toBe("Unauthenticated");
    expect(await codeOf(embedderClient(node.url, "grpc", TOKEN).embed(tooBig))).toBe(
      "ResourceExhausted",
    );
  });

  it("applies the default deadline to calls that set none, and refuses deadlines over the maximum", async () => {
    backend.delayMs = 2000;
    try {
      const image = await sharp(photoPixels(32, 32, 2), {
        raw: { width: 32, height: 32, channels: 3 },
      })
        .png()
        .toBuffer();
      const client = embedderClient(node.url, "grpc", TOKEN);
      const t0 = performance.now();
      expect(await codeOf(client.embed({ images: [{ id: "", data: image }] }))).toBe(
        "DeadlineExceeded",
      );
      expect(performance.now() - t0).toBeLessThan(1500);
      expect(
        await codeOf(client.embed({ images: [{ id: "", data: image }] }, { timeoutMs: 60_000 })),
      ).toBe("InvalidArgument");
    } finally {
      backend.delayMs = 0;
    }
  });

  it("serves no request bodies on its metrics port", async () => {
    if (!node.metricsUrl) return;
    const res = await fetch(`${node.metricsUrl}/metrics`, {
      method: "POST",
      body: "x".repeat(1 << 20),
    });
    expect(res.status).toBe(405);
  });

  it("logs no token (right or wrong), image bytes or EXIF values", async () => {
    const secret = "EXIF-SECRET-d41d8c";
    const withExif = await sharp(photoPixels(120, 90, 3), {
      raw: { width: 120, height: 90, channels: 3 },
    })
      .jpeg()
      .withExif({
        IFD0: {
          Make: secret,
          Model: `${secret}-model`,
          ImageDescription: `${secret} home address`,
        },
        IFD3: { GPSLatitudeRef: "N", GPSLatitude: "48/1 51/1 24/1" },
      })
      .toBuffer();
    const broken = Buffer.concat([withExif.subarray(0, withExif.length >> 1)]);
    const client = embedderClient(node.url, "connect-h1", TOKEN);
    // (The previous test's slow batch may still hold the backend: a roomy deadline.)
    await client.embed({ images: [{ id: "exif", data: withExif }] }, { timeoutMs: 4000 });
    await codeOf(client.embed({ images: [{ id: "broken", data: broken }] }, { timeoutMs: 4000 }));
    await codeOf(embedderClient(node.url, "grpc", `wrong-${TOKEN}-guess`).embed({ images: [] }));
    const all = logs.join("");
    expect(logs.some((l) => l.includes('"msg":"call"'))).toBe(true);
    expect(all).not.toContain(TOKEN);
    expect(all).not.toContain("wrong-");
    expect(all).not.toContain(secret);
    expect(all).not.toContain("48/1");
    for (const bytes of [withExif, broken]) {
      const slice = bytes.subarray(100, 160);
      expect(all).not.toContain(slice.toString("base64"));
      expect(all).not.toContain(slice.toString("hex"));
    }
  });

  it("logs a served call's line at debug and a refused call's at info", async () => {
    const from = logs.length;
    const image = await sharp(photoPixels(64, 48, 3), {
      raw: { width: 64, height: 48, channels: 3 },
    })
      .jpeg()
      .toBuffer();
    const req = { images: [{ id: "level", data: image }] };
    expect(await codeOf(embedderClient(node.url, "connect-h1", TOKEN).embed(req))).toBe("ok");
    expect(await codeOf(embedderClient(node.url, "grpc", "not-the-token").embed(req))).toBe(
      "Unauthenticated",
    );
    const calls = logs
      .slice(from)
      .map((l) => JSON.parse(l) as { msg: string; code: string; level: number })
      .filter((l) => l.msg === "call")
      .map((l) => [l.code, l.level]);
    // pino's levels: debug 20, info 30.
    expect(calls).toEqual([
      ["ok", 20],
      ["Unauthenticated", 30],
    ]);
  });
});

describe("gpu-node listener: slow clients are cut off", () => {
  it("closes an HTTP/1.1 connection whose headers never finish, and one that sends nothing", async () => {
    const listener = await listenDual(
      (_req, res) => {
        res.end("ok");
      },
      { host: "127.0.0.1", port: 0, headersTimeoutMs: 300, idleTimeoutMs: 300 },
    );
    const closedAfter = (first: string | undefined) =>
      new Promise<{ ms: number; got: string }>((done) => {
        const t0 = performance.now();
        let got = "";
        const socket = connect(listener.port, "127.0.0.1", () => {
          if (first !== undefined) socket.write(first); // …and the rest never comes
        });
        socket.setEncoding("utf8");
        socket.on("data", (d: string) => {
          got += d;
        });
        socket.on("close", () => done({ ms: performance.now() - t0, got }));
        socket.on("error", () => undefined);
      });
    try {
      const [slowHeaders, silent] = await Promise.all([
        closedAfter("POST /embedder.v1.EmbedderService/Embed HTTP/1.1\r\nHost: x\r\nX-Slow: "),
        closedAfter(undefined),
      ]);
      expect(slowHeaders.ms).toBeLessThan(2000);
      expect(slowHeaders.got).toMatch(/^HTTP\/1\.1 408/);
      expect(silent.ms).toBeLessThan(2000);
    } finally {
      listener.stopAccepting();
      listener.destroyAll();
    }
  });
});

/** Source files of the running services (tests, test support and tooling excluded). */
function serviceSources(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) {
        if (!["testing", "model", "dashboards", "node_modules", "triton"].includes(name))
          walk(path);
      } else if (/\.(ts|js)$/.test(name) && !/\.test\.ts$|\.d\.ts$/.test(name)) {
        out.push(relative(ROOT, path));
      }
    }
  };
  walk(join(ROOT, "edge"));
  walk(join(ROOT, "gpu-node"));
  return out;
}

describe("no endpoint fetches a URL a client gives", () => {
  // Every place a service opens an outbound connection, and where its address comes from.
  const ALLOWED: Record<string, string> = {
    "edge/gpu-client.ts": "GPU_NODE_URLS (configuration)",
    "edge/node/gpu-transport.ts": "GPU_NODE_URLS (configuration), for edge/gpu-client.ts",
    "edge/node/local-stack.ts": "npm start polling its own child processes",
    "edge/node/server.ts":
      "app.fetch: the inbound request handler of the Node entry, not a call out",
    "gpu-node/backends/triton/client.ts": "--triton-url (configuration)",
    "gpu-node/backends/triton/backend.ts": "--triton-url (configuration)",
    "gpu-node/observability/dashboard/dashboard.js":
      "the page polls its own origin (CSP connect-src 'self')",
  };
  const OUTBOUND =
    /\bfetch\s*\(|\bhttps?\.(request|get)\s*\(|\bhttp2\.connect\s*\(|\bnet\.(connect|createConnection)\s*\(|\btls\.connect\s*\(|new\s+WebSocket\s*\(|XMLHttpRequest|\bundici\b/;

  it("opens outbound connections only in modules whose address is configuration", ({ task }) => {
    const files = serviceSources();
    expect(files.length).toBeGreaterThan(20);
    const found = files.filter((f) => OUTBOUND.test(readFileSync(join(ROOT, f), "utf8")));
    for (const f of found) expect(ALLOWED, `${f} opens a connection`).toHaveProperty([f]);
    // The edge's gpu-node client takes its URLs from the config object alone.
    const client = readFileSync(join(ROOT, "edge/gpu-client.ts"), "utf8");
    expect(client).toMatch(/baseFetch\(`\$\{url\}\/readyz`/);
    expect(client).toMatch(/opts\.urls\.map/);
    recordFigures(task, {
      section: "security",
      title: "outbound connections by module",
      target: "edge/ and gpu-node/ sources",
      data: {
        sourcesScanned: files.length,
        withOutboundConnections: Object.fromEntries(found.map((f) => [f, ALLOWED[f]])),
      },
    });
  });
});
