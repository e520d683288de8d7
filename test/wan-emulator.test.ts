// The WAN emulator's self-test: measured RTT and throughput through the proxy match its settings
// (asymmetric delay, a rate per direction, a link shared by connections), bytes arrive intact,
// and the emulator process answers its commands. A few seconds in all.
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type LinkSettings,
  startWanProxy,
  symmetricLink,
  type WanProxy,
} from "./bench/wan/link.ts";
import { startWanProcess } from "./bench/wan/process.ts";
import { median } from "./support/stats.ts";

const MBIT = 1e6;

/** Medians of timer-based delays: at most 1 ms early, late by up to this on a busy machine. */
const LATE_TOLERANCE_MS = 4;
/** A measured transfer may take this fraction less (a bug) or more (a busy machine) than the rate says. */
const FASTER_TOLERANCE = 0.02;
const SLOWER_TOLERANCE = 0.1;

function expectRate(measuredMs: number, expectedMs: number): void {
  expect(measuredMs).toBeGreaterThanOrEqual(expectedMs * (1 - FASTER_TOLERANCE));
  expect(measuredMs).toBeLessThanOrEqual(expectedMs * (1 + SLOWER_TOLERANCE));
}

type Handler = (socket: Socket) => void;

async function listen(handler: Handler): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true }, handler);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no address");
  return { server, port: address.port };
}

const echo: Handler = (s) => {
  s.on("data", (d) => s.write(d));
  s.on("end", () => s.end());
};

/** Counts what arrives; reports first and last arrival time per connection. */
function sink(expectBytes: number, arrivals: { first: number; last: number }[]): Handler {
  return (s) => {
    let got = 0;
    let first = 0;
    s.on("data", (d: Buffer) => {
      if (got === 0) first = performance.now();
      got += d.length;
      if (got >= expectBytes) {
        arrivals.push({ first, last: performance.now() });
        s.end("k");
      }
    });
  };
}

/** Sends `size` bytes as soon as a client connects, then closes. */
function source(size: number): Handler {
  return (s) => {
    s.end(Buffer.alloc(size, 7));
  };
}

async function dial(port: number): Promise<Socket> {
  const s = connect({ host: "127.0.0.1", port, allowHalfOpen: true });
  s.setNoDelay(true);
  await once(s, "connect");
  return s;
}

/** One small request, one echo: round-trip times in ms (the first includes the handshake). */
async function pings(port: number, count: number): Promise<number[]> {
  const s = await dial(port);
  const times: number[] = [];
  const t0 = performance.now();
  let sent = t0;
  try {
    for (let i = 0; i < count; i++) {
      sent = performance.now();
      s.write("ping");
      await once(s, "data");
      times.push(performance.now() - (i === 0 ? t0 : sent));
    }
  } finally {
    s.destroy();
  }
  return times;
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c()));
});

async function proxyTo(handler: Handler, link: LinkSettings): Promise<WanProxy> {
  const { server, port } = await listen(handler);
  const proxy = await startWanProxy({ target: { host: "127.0.0.1", port }, link });
  closers.push(async () => {
    await proxy.close();
    server.close();
  });
  return proxy;
}

describe("WAN emulator (test/bench/wan)", () => {
  it("round trip = up delay + down delay; a new connection pays one more RTT", async () => {
    const link: LinkSettings = {
      up: { delayMs: 12, bitsPerSecond: Number.POSITIVE_INFINITY },
      down: { delayMs: 6, bitsPerSecond: Number.POSITIVE_INFINITY },
      handshake: true,
    };
    const proxy = await proxyTo(echo, link);
    const [, ...rest] = await pings(proxy.port, 16);
    const rtt = median(rest);
    expect(rtt).toBeGreaterThanOrEqual(18 - 1);
    expect(rtt).toBeLessThanOrEqual(18 + LATE_TOLERANCE_MS);
    // Fresh connections: the first round trip also carries SYN and SYN-ACK.
    const firsts: number[] = [];
    for (let i = 0; i < 4; i++) firsts.push((await pings(proxy.port, 1))[0]!);
    expect(median(firsts)).toBeGreaterThanOrEqual(36 - 1);
    expect(median(firsts)).toBeLessThanOrEqual(36 + LATE_TOLERANCE_MS);
    expect(proxy.stats()).toMatchObject({ connections: 5, bytesUp: 80, bytesDown: 80 });
  });

  it("paces each direction at its own rate", async () => {
    const upBytes = 1 << 20;
    const downBytes = 2 << 20;
    const link: LinkSettings = {
      up: { delayMs: 5, bitsPerSecond: 20 * MBIT },
      down: { delayMs: 5, bitsPerSecond: 50 * MBIT },
      handshake: false,
    };
    const arrivals: { first: number; last: number }[] = [];
    const up = await proxyTo(sink(upBytes, arrivals), link);
    const s = await dial(up.port);
    // Timed from the write, not from the first arrival: the emulator paces on its own clock from
    // when the bytes reach it, so a first slice delivered late (a busy machine) must not shorten
    // the measured span and pass for a link faster than its rate.
    const sentAt = performance.now();
    s.write(Buffer.alloc(upBytes, 1));
    await once(s, "data");
    s.destroy();
    const upMs = arrivals[0]!.last - sentAt;
    expectRate(upMs, (upBytes * 8) / (20 * MBIT) / 1e-3 + link.up.delayMs);

    const down = await proxyTo(source(downBytes), link);
    // Timed from the connection (the source starts writing once it is connected), for the same
    // reason: being late can only make it slower.
    const c = await dial(down.port);
    const connectedAt = performance.now();
    let got = 0;
    c.on("data", (d: Buffer) => {
      got += d.length;
    });
    await once(c, "end");
    const downMs = performance.now() - connectedAt;
    expect(got).toBe(downBytes);
    expectRate(downMs, (downBytes * 8) / (50 * MBIT) / 1e-3 + link.down.delayMs);
    c.destroy();
  });

  it("shares one rate between connections", async () => {
    const each = 512 << 10;
    const arrivals: { first: number; last: number }[] = [];
    const proxy = await proxyTo(sink(each, arrivals), symmetricLink(4, 20 * MBIT));
    const sockets = await Promise.all([dial(proxy.port), dial(proxy.port)]);
    const acks = sockets.map((s) => once(s, "data"));
    const sentAt = performance.now(); // from the writes, as above
    for (const s of sockets) s.write(Buffer.alloc(each, 2));
    await Promise.all(acks);
    for (const s of sockets) s.destroy();
    const span = Math.max(...arrivals.map((a) => a.last)) - sentAt;
    expectRate(span, (2 * each * 8) / (20 * MBIT) / 1e-3 + 2);
  });

  it("delivers every byte in order and passes a half-close through", async () => {
    const data = randomBytes(3 << 20);
    const proxy = await proxyTo(echo, symmetricLink(2, 800 * MBIT));
    const s = await dial(proxy.port);
    const chunks: Buffer[] = [];
    s.on("data", (d: Buffer) => chunks.push(d));
    s.end(data);
    await once(s, "end");
    const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
    expect(sha(Buffer.concat(chunks))).toBe(sha(data));
    expect(proxy.stats()).toMatchObject({ bytesUp: data.length, bytesDown: data.length });
  });
});

describe("WAN emulator process (test/bench/wan/process.ts)", () => {
  let server: Server;
  let port: number;
  beforeAll(async () => {
    ({ server, port } = await listen(echo));
  });
  afterAll(() => {
    server.close();
  });

  it("opens a link, counts its bytes and connections, and applies new settings", async () => {
    const wan = await startWanProcess();
    try {
      const link = await wan.open("a", { host: "127.0.0.1", port }, symmetricLink(10, 100 * MBIT));
      const [, ...at10] = await pings(link.port, 8);
      await wan.set("a", { link: symmetricLink(24, 100 * MBIT) });
      const [, ...at24] = await pings(link.port, 8);
      expect(median(at10)).toBeGreaterThanOrEqual(9);
      expect(median(at10)).toBeLessThanOrEqual(10 + LATE_TOLERANCE_MS);
      expect(median(at24)).toBeGreaterThanOrEqual(23);
      expect(median(at24)).toBeLessThanOrEqual(24 + LATE_TOLERANCE_MS);
      const stats = await wan.stats();
      expect(stats.a).toMatchObject({ connections: 2, bytesUp: 64, bytesDown: 64 });
    } finally {
      await wan.stop();
    }
  });
});
