/** The gRPC client of Triton's KServe v2 API: one long-lived cleartext HTTP/2 session, reopened on demand, counting the bytes it moves. */
import { connect as netConnect, type Socket } from "node:net";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { GRPCInferenceService } from "../../../proto/gen/inference/grpc_service_pb.js";

export type TritonRpc = Client<typeof GRPCInferenceService>;

export interface TritonConnection {
  readonly rpc: TritonRpc;
  /** Bytes written to and read from Triton's socket(s) since creation: frames, headers and all. */
  wireBytes(): { readonly sent: number; readonly received: number };
  /** Closes the session; in-flight calls fail. */
  close(): void;
}

export interface TritonConnectionOptions {
  /** host:port */
  readonly url: string;
  /** Gives up connecting after this long (a refused connection on localhost fails at once). */
  readonly connectTimeoutMs: number;
}

export function connectTriton(opts: TritonConnectionOptions): TritonConnection {
  const baseUrl = `http://${opts.url}`;
  const { hostname, port } = new URL(baseUrl);
  const host = hostname.replace(/^\[|\]$/g, "");
  const sockets = new Set<Socket>();
  let closedSent = 0;
  let closedReceived = 0;
  const sessions = new Http2SessionManager(
    baseUrl,
    {
      connectTimeoutMs: opts.connectTimeoutMs,
      // A dead peer on a quiet connection is found by the health checks and the next call;
      // PINGs catch a half-open connection while calls are in flight.
      pingIntervalMs: 10_000,
      pingTimeoutMs: 5_000,
      idleConnectionTimeoutMs: 24 * 3600_000,
    },
    {
      // Our own socket so that the bytes on the wire can be counted (what shared memory saves).
      createConnection: () => {
        const socket = netConnect({ host, port: Number(port), noDelay: true });
        sockets.add(socket);
        socket.once("close", () => {
          closedSent += socket.bytesWritten;
          closedReceived += socket.bytesRead;
          sockets.delete(socket);
        });
        return socket;
      },
      // Tensors of a batch of 32 FP32 images are 19 MB: a large window keeps them flowing.
      settings: { initialWindowSize: 16 * 1024 * 1024 },
      // Several such batches may be queued at once; node's 10 MB default would refuse them.
      maxSessionMemory: 512,
    },
  );
  const transport = createGrpcTransport({ baseUrl, sessionManager: sessions });
  return {
    rpc: createClient(GRPCInferenceService, transport),
    wireBytes() {
      let sent = closedSent;
      let received = closedReceived;
      for (const s of sockets) {
        sent += s.bytesWritten;
        received += s.bytesRead;
      }
      return { sent, received };
    },
    close() {
      sessions.abort();
      for (const s of sockets) s.destroy();
    },
  };
}
