// The gpu-node over TLS: Connect, gRPC and gRPC-Web from Node clients that trust a CA made here;
// untrusted, expired and wrong-host certificates refused by the clients; garbage handshakes that
// never hurt the node; certificates swapped while serving (in-process and by SIGHUP to a cluster);
// cert/key files that cannot serve stop the start with a message naming the file.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as http2 from "node:http2";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import * as tls from "node:tls";
import { promisify } from "node:util";
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testConfig } from "../gpu-node/config.ts";
import { type GpuNode, startGpuNode } from "../gpu-node/node.ts";
import { loadTlsFiles } from "../gpu-node/rpc/tls.ts";
import { EmbedderService } from "../proto/gen/embedder/v1/embedder_pb.js";
import { photo } from "./support/images.ts";
import { descendants } from "./support/proc.ts";
import { spawnGpuNode, startAnnounced } from "./support/processes.ts";
import { createCa, type IssuedCert, issueServerCert, type TestCa } from "./support/tls.ts";

const ROOT = resolve(import.meta.dirname, "..");
const run = promisify(execFile);
const DAY = 86_400_000;

let dir: string;
let ca: TestCa;
let otherCa: TestCa;
let files: { cert: string; key: string };

function writePair(name: string, pair: IssuedCert): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  writeFileSync(cert, pair.certPem);
  writeFileSync(key, pair.keyPem);
  return { cert, key };
}

type Protocol = "grpc" | "connect-h1" | "connect-h2" | "grpc-web";

function transport(baseUrl: string, protocol: Protocol, trust: string): Transport {
  const nodeOptions = { ca: trust };
  switch (protocol) {
    case "grpc":
      return createGrpcTransport({ baseUrl, nodeOptions });
    case "connect-h1":
      return createConnectTransport({ baseUrl, httpVersion: "1.1", nodeOptions });
    case "connect-h2":
      return createConnectTransport({ baseUrl, httpVersion: "2", nodeOptions });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl, httpVersion: "1.1", nodeOptions });
  }
}

function client(
  url: string,
  protocol: Protocol,
  trust = ca.certPem,
): Client<typeof EmbedderService> {
  return createClient(EmbedderService, transport(url, protocol, trust));
}

async function embedOne(c: Client<typeof EmbedderService>, image: Uint8Array): Promise<number> {
  const res = await c.embed({ images: [{ id: "a", data: image }] });
  expect(res.embeddings).toHaveLength(1);
  return res.dimension;
}

/** The serial number of the certificate a fresh TLS connection to `port` is shown. */
function servedSerial(port: number): Promise<string> {
  return new Promise((done, fail) => {
    const s = tls.connect({ host: "127.0.0.1", port, ca: ca.certPem }, () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.destroy();
      done(serial);
    });
    s.once("error", fail);
  });
}

let image: Buffer;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "gpu-node-tls-"));
  ca = createCa();
  otherCa = createCa("another CA");
  files = writePair("server", issueServerCert(ca));
  image = await photo(320, 240, 1);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("gpu-node over TLS (one process)", () => {
  let node: GpuNode;
  beforeAll(async () => {
    node = await startGpuNode(
      testConfig({ port: 0, backend: "noop", tlsCert: files.cert, tlsKey: files.key }),
    );
  });
  afterAll(() => node?.close());

  it("says https in its URL", () => {
    expect(node.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  });

  it.each<Protocol>(["grpc", "connect-h1", "connect-h2", "grpc-web"])(
    "serves %s over TLS (ALPN h2 or http/1.1)",
    async (protocol) => {
      expect(await embedOne(client(node.url, protocol), image)).toBe(512);
    },
  );

  it("is refused by a client that does not trust its CA; the node serves on", async () => {
    await expect(embedOne(client(node.url, "grpc", otherCa.certPem), image)).rejects.toThrow(
      /certificate|self.signed|unable to verify/i,
    );
    await expect(embedOne(client(node.url, "connect-h1", otherCa.certPem), image)).rejects.toThrow(
      /certificate|self.signed|unable to verify/i,
    );
    expect(await embedOne(client(node.url, "grpc"), image)).toBe(512);
  });

  it("survives garbage instead of a handshake, and handshakes abandoned halfway", async () => {
    const port = new URL(node.url).port;
    for (const garbage of [
      Buffer.from("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"),
      Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
      Buffer.alloc(4096, 0x16),
      Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00]),
    ]) {
      const socket = net.connect(Number(port), "127.0.0.1");
      socket.on("error", () => {});
      socket.resume(); // read the alert and the close
      // Some of these are the start of a record the node waits for: the client gives up, as an
      // abandoned handshake does. The node ends the connection either way, never a crash.
      socket.end(garbage);
      await new Promise<void>((done) => socket.once("close", () => done()));
    }
    expect(await embedOne(client(node.url, "connect-h2"), image)).toBe(512);
  });

  it("swaps its certificate without dropping open connections; a bad pair keeps the old one", async () => {
    const port = Number(new URL(node.url).port);
    const session = http2.connect(node.url, { ca: ca.certPem });
    const before = await servedSerial(port);
    const next = issueServerCert(ca);
    writePair("server", next);
    await node.reloadCertificate();
    expect(await servedSerial(port)).toBe(next.serial);
    expect(next.serial).not.toBe(before);
    // The connection opened before the swap still carries calls.
    const status = await new Promise<number>((done, fail) => {
      const req = session.request({ ":path": "/healthz" });
      req.on("response", (h) => done(Number(h[":status"])));
      req.on("error", fail);
      req.end();
    });
    expect(status).toBe(200);
    session.close();

    // A key of another certificate: refused, naming the file; the served certificate stays.
    writeFileSync(files.key, issueServerCert(ca).keyPem);
    await expect(node.reloadCertificate()).rejects.toThrow(files.key);
    expect(await servedSerial(port)).toBe(next.serial);
    writePair("server", next);
  });
});

describe("clients refuse certificates that are not good for the node", () => {
  it.each([
    [
      "expired",
      { notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() - DAY) },
      /expired/i,
    ],
    ["for another host", { hosts: ["gpu.example.internal"] }, /hostname|altnames|does not match/i],
  ] as const)("a certificate %s", async (name, opts, reason) => {
    const pair = writePair(name.replaceAll(" ", "-"), issueServerCert(ca, opts));
    const node = await startGpuNode(
      testConfig({ port: 0, backend: "noop", tlsCert: pair.cert, tlsKey: pair.key }),
    );
    try {
      await expect(embedOne(client(node.url, "grpc"), image)).rejects.toThrow(reason);
      await expect(embedOne(client(node.url, "connect-h1"), image)).rejects.toThrow(reason);
    } finally {
      await node.close();
    }
  });
});

describe("certificate and key files that cannot serve", () => {
  it("names the file that is missing, not PEM, or not the certificate's key", () => {
    const missing = join(dir, "missing.crt");
    expect(() => loadTlsFiles(missing, files.key)).toThrow(`${missing} (ENOENT)`);
    const notPem = join(dir, "not-pem.crt");
    writeFileSync(notPem, "hello");
    expect(() => loadTlsFiles(notPem, files.key)).toThrow(`certificate file ${notPem}`);
    expect(() => loadTlsFiles(files.cert, notPem)).toThrow(`key file ${notPem}`);
    const stranger = writePair("stranger", issueServerCert(otherCa));
    expect(() => loadTlsFiles(files.cert, stranger.key)).toThrow(
      `key file ${stranger.key} does not match the certificate ${files.cert}`,
    );
  });

  it("stops the CLI before the model loads, with the file named; a lone flag is a usage error", async () => {
    const cli = (args: string[]) =>
      run(process.execPath, [join(ROOT, "gpu-node/main.ts"), "--port", "0", ...args], {
        cwd: ROOT,
      }).then(
        () => ({ code: 0, stderr: "" }),
        (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
      );
    const missing = join(dir, "nope.key");
    const bad = await cli(["--backend", "noop", "--tls-cert", files.cert, "--tls-key", missing]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(missing);
    const lone = await cli(["--backend", "noop", "--tls-cert", files.cert]);
    expect(lone.code).toBe(2);
    expect(lone.stderr).toMatch(/--tls-cert .* and --tls-key .* go together/);
  });
});

describe("the Node edge calling a gpu-node over https", () => {
  it("embeds through it when it trusts the CA, and reports the gpu-node unreachable when not", async () => {
    const node = await startGpuNode(
      testConfig({
        port: 0,
        backend: "noop",
        tlsCert: files.cert,
        tlsKey: files.key,
        token: "t0k",
      }),
    );
    const caFile = join(dir, "ca.pem");
    writeFileSync(caFile, ca.certPem);
    const edgeWith = (extra: Record<string, string>) =>
      startAnnounced(join(ROOT, "edge/node/server.ts"), {
        env: {
          ...process.env,
          EDGE_PORT: "0",
          GPU_NODE_URLS: node.url,
          GPU_NODE_TOKEN: "t0k",
          GPU_NODE_TIMEOUT_MS: "3000",
          AUTH_DISABLED: "true",
          ...extra,
        },
        isReady: (l) => l.msg === "listening",
        what: "node edge",
      });
    const trusting = await edgeWith({ NODE_EXTRA_CA_CERTS: caFile });
    const stranger = await edgeWith({});
    try {
      const post = (url: string) =>
        fetch(`${url}/v1/embeddings`, {
          method: "POST",
          headers: { "content-type": "image/jpeg" },
          body: image,
        });
      const ok = await post(trusting.ready.url as string);
      expect(ok.status).toBe(200);
      const body = (await ok.json()) as { data: { embedding: number[] }[] };
      expect(body.data[0]!.embedding).toHaveLength(512);
      expect((await fetch(`${trusting.ready.url}/readyz`)).status).toBe(200);
      // An edge that does not trust the certificate never sends the photo in clear instead.
      expect((await fetch(`${stranger.ready.url}/readyz`)).status).toBe(503);
      expect([502, 503]).toContain((await post(stranger.ready.url as string)).status);
    } finally {
      await Promise.all([trusting.stop(), stranger.stop(), node.close()]);
    }
  });
});

describe("a cluster over TLS", () => {
  it("re-reads its certificate on SIGHUP in every worker, serving throughout", async () => {
    const pair = writePair("cluster", issueServerCert(ca));
    const node = await spawnGpuNode([
      "--backend",
      "noop",
      "--processes",
      "2",
      "--tls-cert",
      pair.cert,
      "--tls-key",
      pair.key,
    ]);
    try {
      expect(node.url).toMatch(/^https:/);
      const before = client(node.url, "grpc");
      expect(await embedOne(before, image)).toBe(512);
      const next = issueServerCert(ca);
      writePair("cluster", next);
      node.child.kill("SIGHUP");
      // Each new connection lands on either worker: wait until several in a row show the new
      // certificate (each worker logs the reload; the connections prove it).
      let fresh = 0;
      for (let attempt = 0; attempt < 400 && fresh < 8; attempt++) {
        fresh = (await servedSerial(node.port)) === next.serial ? fresh + 1 : 0;
      }
      expect(fresh).toBe(8);
      expect(await embedOne(before, image)).toBe(512);
      expect(node.alive()).toBe(true);
      const workers = descendants(node.pid).map((d) => d.pid);
      expect((await node.stop()).code).toBe(0);
      expect(node.output()).not.toContain("shutdown failed");
      for (const pid of workers) expect(() => process.kill(pid, 0)).toThrow();
    } finally {
      await node.stop("SIGKILL");
    }
  });
});
