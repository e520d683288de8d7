// The patches/ on @connectrpc/connect and @connectrpc/connect-node are applied: a call that ends
// without an error aborts its signals with one shared AbortError instead of building a new
// DOMException (and its stack trace) per call, on the server (handler context, HTTP/1.1 and
// HTTP/2 requests) and on the client. Cancellation still reads as Canceled.
import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createClient,
  type HandlerContext,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import {
  connectNodeAdapter,
  createConnectTransport,
  createGrpcTransport,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  EmbedderService,
  GetModelInfoResponseSchema,
} from "../proto/gen/embedder/v1/embedder_pb.js";

/** The reason a finished call's signal carries; fails when the signal was never aborted. */
function reasonOf(signal: AbortSignal): unknown {
  expect(signal.aborted).toBe(true);
  return signal.reason;
}

function expectSharedAbortError(reasons: unknown[]): void {
  for (const r of reasons) {
    expect(r).toBeInstanceOf(DOMException);
    expect((r as DOMException).name).toBe("AbortError");
  }
  // Unpatched, every call builds its own DOMException.
  expect(new Set(reasons).size).toBe(1);
}

describe("connect patches", () => {
  const handlerSignals: AbortSignal[] = [];
  const clientSignals: AbortSignal[] = [];
  let slowCall: ((ctx: HandlerContext) => void) | undefined;
  let h1: http.Server;
  let h2: http2.Http2Server;
  let h1Url: string;
  let h2Url: string;

  const handler = connectNodeAdapter({
    routes: (router) =>
      router.service(EmbedderService, {
        async getModelInfo(_req, ctx) {
          handlerSignals.push(ctx.signal);
          if (slowCall) {
            slowCall(ctx);
            // Held until the client gives up: the signal's abort is the cancellation.
            await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
            throw new ConnectError("cancelled", Code.Canceled);
          }
          return create(GetModelInfoResponseSchema, { model: "m" });
        },
      }),
  });
  const recordClient: Interceptor = (next) => async (req) => {
    clientSignals.push(req.signal);
    return next(req);
  };

  beforeAll(async () => {
    h1 = http.createServer(handler);
    h2 = http2.createServer(handler);
    await Promise.all([
      new Promise<void>((r) => h1.listen(0, "127.0.0.1", r)),
      new Promise<void>((r) => h2.listen(0, "127.0.0.1", r)),
    ]);
    h1Url = `http://127.0.0.1:${(h1.address() as AddressInfo).port}`;
    h2Url = `http://127.0.0.1:${(h2.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    h1.closeAllConnections();
    await new Promise((r) => h1.close(r));
    await new Promise((r) => h2.close(r));
  });

  const transports = (): [string, Transport][] => [
    [
      "Connect over HTTP/1.1",
      createConnectTransport({
        baseUrl: h1Url,
        httpVersion: "1.1",
        interceptors: [recordClient],
      }),
    ],
    ["gRPC over h2c", createGrpcTransport({ baseUrl: h2Url, interceptors: [recordClient] })],
  ];

  it("a served call aborts its handler, request and client signals with one shared reason", async () => {
    for (const [name, transport] of transports()) {
      handlerSignals.length = 0;
      clientSignals.length = 0;
      const client = createClient(EmbedderService, transport);
      for (let i = 0; i < 3; i++) {
        const res = await client.getModelInfo({});
        expect(res.model, name).toBe("m");
      }
      expect(handlerSignals, name).toHaveLength(3);
      expectSharedAbortError(handlerSignals.map(reasonOf));
      expectSharedAbortError(clientSignals.map(reasonOf));
    }
  });

  it("the request's own signal, on HTTP/1.1 and HTTP/2, ends with the shared reason too", async () => {
    const { universalRequestFromNodeRequest } = await import("@connectrpc/connect-node");
    const seen: Promise<unknown>[] = [];
    const probe = (
      req: http.IncomingMessage | http2.Http2ServerRequest,
      res: http.ServerResponse | http2.Http2ServerResponse,
    ) => {
      const u = universalRequestFromNodeRequest(
        req as http.IncomingMessage,
        res as never,
        undefined,
        undefined,
      );
      seen.push(
        new Promise((resolve) =>
          u.signal.addEventListener("abort", () => resolve(u.signal.reason), { once: true }),
        ),
      );
      res.end("ok");
    };
    const s1 = http.createServer(probe);
    const s2 = http2.createServer(probe);
    await new Promise<void>((r) => s1.listen(0, "127.0.0.1", r));
    await new Promise<void>((r) => s2.listen(0, "127.0.0.1", r));
    try {
      for (let i = 0; i < 2; i++) {
        const res = await fetch(`http://127.0.0.1:${(s1.address() as AddressInfo).port}/`);
        expect(await res.text()).toBe("ok");
      }
      const session = http2.connect(`http://127.0.0.1:${(s2.address() as AddressInfo).port}`);
      for (let i = 0; i < 2; i++) {
        await new Promise<void>((resolve, reject) => {
          const stream = session.request({ ":path": "/" });
          stream.on("data", () => {});
          stream.on("end", resolve);
          stream.on("error", reject);
          stream.end();
        });
      }
      session.close();
      expectSharedAbortError(await Promise.all(seen));
    } finally {
      s1.closeAllConnections();
      await new Promise((r) => s1.close(r));
      await new Promise((r) => s2.close(r));
    }
  });

  it("a call the client abandons still reads as Canceled on both sides", async () => {
    for (const [name, transport] of transports()) {
      const client = createClient(EmbedderService, transport);
      const controller = new AbortController();
      const arrived = new Promise<HandlerContext>((resolve) => {
        slowCall = resolve;
      });
      const call = client.getModelInfo({}, { signal: controller.signal });
      const ctx = await arrived;
      controller.abort();
      const err = await call.then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      expect(err?.code, name).toBe(Code.Canceled);
      await new Promise((resolve) =>
        ctx.signal.aborted ? resolve(undefined) : ctx.signal.addEventListener("abort", resolve),
      );
      expect(ConnectError.from(ctx.signal.reason).code, name).toBe(Code.Canceled);
      slowCall = undefined;
    }
  });
});
