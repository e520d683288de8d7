/**
 * A WAN link in user space: a TCP proxy (node:net) that takes bytes from one side, paces them at
 * a bandwidth and delays them by a one-way latency per direction, and hands them to the other
 * side. This kernel has no netem, so delay cannot come from `tc`.
 *
 * What it models: per direction, one serialisation queue shared by every connection through the
 * proxy (a real access link is shared too), store-and-forward per ~1 ms of link time (or one
 * 1448-byte segment, whichever is larger), then the propagation delay; the TCP handshake as one
 * extra RTT before a new connection's first byte; a receive window (the source is paused while
 * more than max(1 MiB, 2 × bandwidth-delay product) waits in the link); orderly close.
 * What it does NOT model: see WAN_NOT_MODELLED below — it splits TCP, so slow start, loss,
 * retransmission and the real window dynamics of the long link are not reproduced.
 */
import { connect, createServer, type Server, type Socket } from "node:net";
import { createPreciseTimer, nowMs } from "./clock.ts";

export interface Direction {
  /** One-way propagation delay, ms. */
  readonly delayMs: number;
  /** Link rate in bits per second (TCP payload; headers are not charged); Infinity = unlimited. */
  readonly bitsPerSecond: number;
}

export interface LinkSettings {
  /** Client → server (the side that connects → the proxy's target). */
  readonly up: Direction;
  /** Server → client. */
  readonly down: Direction;
  /** Hold a new connection's first byte for one RTT (SYN, SYN-ACK) before it enters the link. */
  readonly handshake: boolean;
}

/** No delay, no rate limit, no handshake: the proxy only copies bytes. */
export const PASS_THROUGH: LinkSettings = Object.freeze({
  up: { delayMs: 0, bitsPerSecond: Number.POSITIVE_INFINITY },
  down: { delayMs: 0, bitsPerSecond: Number.POSITIVE_INFINITY },
  handshake: false,
});

/** What the report must say the emulator leaves out. */
export const WAN_NOT_MODELLED: readonly string[] = [
  "The proxy terminates TCP on both sides (split TCP): the endpoints' TCP runs over loopback, so " +
    "slow start (initial window 10 segments, doubling per RTT), slow-start restart after idle, " +
    "congestion control, loss and retransmission on the long link are not reproduced. A fresh or " +
    "idle connection moving a large request would need several extra RTTs on a real link.",
  "No packet loss, jitter, reordering or bufferbloat beyond the modelled queue; the rate applies " +
    "to TCP payload only (IP/TCP headers, ~3%, and TLS are not charged; all traffic is cleartext).",
  "Delays come from a timer thread (Atomics.wait): typically within 0.1–0.3 ms, later when the " +
    "machine is busy (each run records the proxy's measured lateness).",
  "The handshake is modelled as one RTT before a new connection's first byte; TLS handshakes, " +
    "DNS and HTTP/2 SETTINGS exchanges are not.",
];

export interface LinkStats {
  /** Payload bytes delivered client → server and server → client. */
  readonly bytesUp: number;
  readonly bytesDown: number;
  /** Connections accepted since the proxy started, and open now. */
  readonly connections: number;
  readonly open: number;
  /** How late deliveries were against their schedule (ms): count, mean, max. */
  readonly deliveries: number;
  readonly latenessMeanMs: number;
  readonly latenessMaxMs: number;
}

export interface Target {
  readonly host: string;
  readonly port: number;
}

export interface WanProxy {
  readonly port: number;
  readonly url: string;
  settings(): LinkSettings;
  /** Applies to bytes that enter the link from now on (bytes already queued keep their schedule). */
  setLink(settings: LinkSettings): void;
  /** New connections go to `target`; open ones stay where they are. */
  setTarget(target: Target): void;
  stats(): LinkStats;
  /** Stops accepting and destroys every open connection. */
  close(): Promise<void>;
}

export function rttMs(link: LinkSettings): number {
  return link.up.delayMs + link.down.delayMs;
}

/** Same delay and rate both ways. */
export function symmetricLink(rtt: number, bitsPerSecond: number): LinkSettings {
  const d = { delayMs: rtt / 2, bitsPerSecond };
  return { up: d, down: d, handshake: true };
}

const SEGMENT = 1448;
const MIN_WINDOW = 1 << 20;
const UNLIMITED_WINDOW = 4 << 20;
/** A delivery this close to its time goes now (the clock thread's wake-up costs about as much). */
const EARLY_MS = 0.05;

/** One direction of one connection. */
interface Flow {
  readonly src: Socket;
  readonly dest: Socket;
  queued: number;
  paused: boolean;
  held: boolean;
  destBlocked: boolean;
  dead: boolean;
}

interface Entry {
  readonly flow: Flow;
  /** undefined = the source ended: end the destination. */
  readonly data: Buffer | undefined;
  readonly at: number;
}

/** One direction of the link: a serialisation queue, then a delay line, shared by all flows. */
async function createPipe(
  direction: () => Direction,
  onDelivered: (bytes: number, late: number) => void,
) {
  let linkFreeAt = 0;
  let lastAt = 0;
  const queue: Entry[] = [];
  let head = 0;
  /** Flows held back until a time (new connections: the handshake). */
  const holds: { flow: Flow; at: number }[] = [];
  let armedAt = Number.POSITIVE_INFINITY;
  const timer = await createPreciseTimer(() => {
    armedAt = Number.POSITIVE_INFINITY;
    deliver();
  });

  const window = () => {
    const d = direction();
    const bdp = (d.bitsPerSecond / 8) * (2 * d.delayMs) * 1e-3;
    return Number.isFinite(bdp) ? Math.max(MIN_WINDOW, 2 * bdp) : UNLIMITED_WINDOW;
  };

  const maybeResume = (flow: Flow) => {
    if (flow.paused && !flow.held && !flow.dead && !flow.destBlocked) {
      if (flow.queued < window() / 2) {
        flow.paused = false;
        flow.src.resume();
      }
    }
  };

  function deliver() {
    const now = nowMs();
    for (let i = holds.length - 1; i >= 0; i--) {
      if (holds[i]!.at <= now + EARLY_MS) {
        const { flow } = holds.splice(i, 1)[0]!;
        flow.held = false;
        maybeResume(flow);
      }
    }
    const touched = new Set<Socket>();
    while (head < queue.length && queue[head]!.at <= now + EARLY_MS) {
      const { flow, data, at } = queue[head]!;
      queue[head++] = undefined as unknown as Entry; // let the buffer go
      if (flow.dead || flow.dest.destroyed) continue;
      if (data === undefined) {
        flow.dest.end();
        continue;
      }
      if (!touched.has(flow.dest)) {
        touched.add(flow.dest);
        flow.dest.cork();
      }
      flow.queued -= data.length;
      onDelivered(data.length, now - at);
      if (!flow.dest.write(data) && !flow.destBlocked) {
        flow.destBlocked = true;
        flow.dest.once("drain", () => {
          flow.destBlocked = false;
          maybeResume(flow);
        });
      }
      maybeResume(flow);
    }
    for (const s of touched) s.uncork();
    if (head === queue.length) {
      queue.length = 0;
      head = 0;
    } else if (head > 4096) {
      queue.splice(0, head);
      head = 0;
    }
    arm();
  }

  function arm() {
    let next = head < queue.length ? queue[head]!.at : Number.POSITIVE_INFINITY;
    for (const h of holds) next = Math.min(next, h.at);
    if (next < armedAt) {
      armedAt = next;
      timer.set(next);
    }
  }

  return {
    window,
    maybeResume,
    hold(flow: Flow, ms: number) {
      flow.held = true;
      flow.paused = true;
      flow.src.pause();
      holds.push({ flow, at: nowMs() + ms });
      arm();
    },
    send(flow: Flow, chunk: Buffer) {
      const d = direction();
      const bytesPerMs = d.bitsPerSecond / 8000;
      let t = Math.max(nowMs(), linkFreeAt);
      const slice = Number.isFinite(bytesPerMs)
        ? Math.max(SEGMENT, Math.floor(bytesPerMs))
        : chunk.length;
      for (let off = 0; off < chunk.length; off += slice) {
        const part = chunk.subarray(off, off + slice);
        t += part.length / bytesPerMs;
        // Settings changed mid-flight must not reorder the queue.
        lastAt = Math.max(lastAt, t + d.delayMs);
        queue.push({ flow, data: part, at: lastAt });
      }
      linkFreeAt = t;
      flow.queued += chunk.length;
      arm();
    },
    end(flow: Flow) {
      lastAt = Math.max(lastAt, linkFreeAt + direction().delayMs);
      queue.push({ flow, data: undefined, at: lastAt });
      arm();
    },
    async close() {
      queue.length = 0;
      head = 0;
      holds.length = 0;
      await timer.close();
    },
  };
}

export async function startWanProxy(opts: {
  readonly target: Target;
  readonly link: LinkSettings;
  /** Listen address (loopback by default) and port (0 = any free). */
  readonly host?: string;
  readonly port?: number;
}): Promise<WanProxy> {
  let link = opts.link;
  let target = opts.target;
  let bytesUp = 0;
  let bytesDown = 0;
  let connections = 0;
  let deliveries = 0;
  let lateSum = 0;
  let lateMax = 0;
  const sockets = new Set<Socket>();
  const delivered = (up: boolean) => (bytes: number, late: number) => {
    if (up) bytesUp += bytes;
    else bytesDown += bytes;
    deliveries++;
    lateSum += late;
    lateMax = Math.max(lateMax, late);
  };
  const [upPipe, downPipe] = await Promise.all([
    createPipe(() => link.up, delivered(true)),
    createPipe(() => link.down, delivered(false)),
  ]);

  const wire = (
    src: Socket,
    dest: Socket,
    pipe: Awaited<ReturnType<typeof createPipe>>,
    holdMs: number,
  ): Flow => {
    const flow: Flow = {
      src,
      dest,
      queued: 0,
      paused: false,
      held: false,
      destBlocked: false,
      dead: false,
    };
    // The handshake: nothing the client sends can leave before SYN and SYN-ACK have crossed.
    if (holdMs > 0) pipe.hold(flow, holdMs);
    src.on("data", (chunk: Buffer) => {
      pipe.send(flow, chunk);
      if (flow.queued > pipe.window() && !flow.paused) {
        flow.paused = true;
        src.pause();
      }
    });
    src.on("end", () => pipe.end(flow));
    return flow;
  };

  const server: Server = createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
    connections++;
    const upstream = connect({ host: target.host, port: target.port, allowHalfOpen: true });
    upstream.setNoDelay(true);
    sockets.add(client);
    sockets.add(upstream);
    const up = wire(client, upstream, upPipe, link.handshake ? rttMs(link) : 0);
    const down = wire(upstream, client, downPipe, 0);
    const kill = () => {
      up.dead = true;
      down.dead = true;
      client.destroy();
      upstream.destroy();
    };
    client.on("error", kill);
    upstream.on("error", kill);
    // An orderly close travels as an end through the link (after the bytes before it); an abort
    // (error, or closed before its peer finished sending) takes the other side down at once.
    client.on("close", (hadError) => {
      sockets.delete(client);
      if (hadError || !client.readableEnded) kill();
    });
    upstream.on("close", (hadError) => {
      sockets.delete(upstream);
      if (hadError || !upstream.readableEnded) kill();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, opts.host ?? "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no TCP address");
  const port = address.port;
  return {
    port,
    url: `http://${address.address}:${port}`,
    settings: () => link,
    setLink(next) {
      link = next;
    },
    setTarget(next) {
      target = next;
    },
    stats: () => ({
      bytesUp,
      bytesDown,
      connections,
      open: sockets.size / 2,
      deliveries,
      latenessMeanMs: deliveries ? lateSum / deliveries : 0,
      latenessMaxMs: lateMax,
    }),
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await Promise.all([upPipe.close(), downPipe.close(), closed]);
    },
  };
}
