/**
 * One TCP port for HTTP/1.1 and HTTP/2: cleartext (h2c prior knowledge, told apart by each
 * connection's first bytes) or TLS (told apart by ALPN), each connection handed to the matching
 * Node server. TLS certificates can be swapped while serving.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import * as tls from "node:tls";

// Browsers and the Workers runtime speak HTTP/1.1; gRPC needs HTTP/2. Without TLS there is no
// ALPN, so the HTTP/2 client preface ("PRI * HTTP/2.0...") is what tells them apart.
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export type RequestHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

export interface DualListener {
  readonly port: number;
  /** Stops accepting connections and asks open ones to finish (GOAWAY / Connection: close). */
  stopAccepting(): void;
  /** Resolves once every connection has closed by itself, or at `deadline` (performance.now()). */
  drained(deadline: number): Promise<boolean>;
  /** Destroys every remaining connection. */
  destroyAll(): void;
  /** TLS only: new connections use this certificate and key; open ones keep theirs. */
  setCertificate(pem: TlsPem): void;
}

/** A PEM certificate chain and its private key. */
export interface TlsPem {
  readonly cert: Buffer;
  readonly key: Buffer;
}

export interface ListenOptions {
  readonly host: string;
  readonly port: number;
  /** Closes connections that send nothing for this long (slow-loris guard). */
  readonly idleTimeoutMs?: number;
  /** An HTTP/1.1 request's headers must be complete within this long (slow-loris guard). */
  readonly headersTimeoutMs?: number;
  /** Serve HTTPS (ALPN h2 and http/1.1) with this certificate instead of cleartext. */
  readonly tls?: TlsPem;
  /** Hears TLS handshakes that failed (garbage, an old protocol, a client that gave up). */
  readonly onTlsError?: (err: Error) => void;
}

export async function listenDual(
  handler: RequestHandler,
  opts: ListenOptions,
): Promise<DualListener> {
  const idle = opts.idleTimeoutMs ?? 120_000;
  let closing = false;
  const headersTimeout = opts.headersTimeoutMs ?? 30_000;
  const h1Options = {
    keepAliveTimeout: 65_000,
    headersTimeout,
    // How often Node checks headersTimeout: often enough to act within ~1.25x of it.
    connectionsCheckingInterval: Math.max(50, Math.min(30_000, headersTimeout / 4)),
  };
  const h1 = http.createServer(h1Options, (req, res) => {
    // Draining: answer, then close the connection. A keep-alive client (the edge) would otherwise
    // go on sending calls down it, each refused, and the drain would wait its full timeout for a
    // connection that never turns idle.
    if (closing) res.setHeader("connection", "close");
    handler(req, res);
  });
  h1.requestTimeout = 0; // deadlines are the RPC layer's job; streams may run long
  // h1 never listens itself (its connections come from `tcp` below), and Node starts tracking an
  // HTTP server's connections on "listening": without it closeIdleConnections() did nothing (a
  // drain waited for clients' keep-alive timeouts, up to --drain-timeout-ms) and headersTimeout
  // was never enforced (a slow-loris client could hold a connection forever).
  h1.emit("listening");
  const h2 = http2.createServer({}, handler);
  h2.setTimeout(idle);
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  };
  const hand = (socket: net.Socket, isH2: boolean) => {
    if (isH2) {
      // The HTTP/2 session takes over the native handle and first consumes what is buffered
      // in JS; resuming the JS stream here would steal its bytes.
      h2.emit("connection", socket);
    } else {
      h1.emit("connection", socket);
      socket.resume();
    }
  };

  let tcp: net.Server;
  if (opts.tls) {
    // TLS ends here; ALPN says which server gets the decrypted stream. The handshake must finish
    // within the headers timeout (a client that opens connections and never completes one is
    // the slow-loris of TLS).
    const secure = tls.createServer({
      cert: opts.tls.cert,
      key: opts.tls.key,
      ALPNProtocols: ["h2", "http/1.1"],
      handshakeTimeout: headersTimeout,
      minVersion: "TLSv1.2",
    });
    secure.on("connection", (socket: net.Socket) => {
      track(socket);
      socket.setTimeout(idle, () => socket.destroy());
    });
    secure.on("secureConnection", (socket: tls.TLSSocket) => {
      socket.setTimeout(0);
      socket.on("error", () => socket.destroy());
      hand(socket, socket.alpnProtocol === "h2");
    });
    // Garbage, wrong versions and abandoned handshakes end that connection only.
    secure.on("tlsClientError", (err, socket) => {
      opts.onTlsError?.(err);
      socket.destroy();
    });
    tcp = secure;
  } else {
    tcp = net.createServer((socket) => {
      track(socket);
      socket.setTimeout(idle, () => socket.destroy());
      let head = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        head = Buffer.concat([head, chunk]);
        const n = Math.min(head.length, PREFACE.length);
        const isH2 = head.subarray(0, n).equals(PREFACE.subarray(0, n));
        if (isH2 && head.length < PREFACE.length) return; // need more bytes to be sure
        socket.off("data", onData);
        socket.pause();
        socket.setTimeout(0);
        socket.unshift(head);
        hand(socket, isH2);
      };
      socket.on("data", onData);
      socket.on("error", () => socket.destroy());
    });
  }

  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(opts.port, opts.host, () => {
      tcp.off("error", reject);
      resolve();
    });
  });
  const address = tcp.address() as net.AddressInfo;

  return {
    port: address.port,
    stopAccepting() {
      closing = true;
      tcp.close();
      h1.close(); // stops keep-alive reuse; idle sockets are closed below
      h1.closeIdleConnections();
      for (const s of sessions) s.close(); // GOAWAY: in-flight streams finish, no new ones
    },
    async drained(deadline) {
      while (sockets.size > 0 && performance.now() < deadline) {
        // Keep-alive HTTP/1.1 connections turn idle once their response is out: close them.
        h1.closeIdleConnections();
        await new Promise((r) => setTimeout(r, 10));
      }
      return sockets.size === 0;
    },
    destroyAll() {
      h1.closeAllConnections();
      for (const s of sessions) s.destroy();
      for (const s of sockets) s.destroy();
    },
    setCertificate(pem) {
      if (!(tcp instanceof tls.Server)) throw new Error("this listener serves cleartext");
      tcp.setSecureContext({ cert: pem.cert, key: pem.key });
    },
  };
}
