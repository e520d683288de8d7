/** A gpu-node stand-in for workerd tests: a real Connect handler served through a fetch function, recording what it receives. Vectors are a fingerprint of the pixels' JPEG bytes, so tests can tell images apart. */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import { createFetchHandler } from "@connectrpc/connect/protocol";
import {
  EmbedderService,
  EmbedResponseSchema,
  GetModelInfoResponseSchema,
} from "../../proto/gen/embedder/v1/embedder_pb.js";

export interface StandIn {
  fetch: typeof fetch;
  /** Every image received, in arrival order. */
  readonly received: Uint8Array[];
  readonly headers: Headers[];
  calls: number;
}

/** Cheap deterministic 512-d unit-ish vector from bytes (not a real embedding). */
export function fingerprint(bytes: Uint8Array): Float32Array {
  const v = new Float32Array(512);
  let h = 2166136261;
  for (let i = 0; i < bytes.length; i++) {
    h = Math.imul(h ^ bytes[i]!, 16777619);
    v[i % 512]! += ((h >>> 8) & 0xff) / 255 - 0.5;
  }
  let n = 0;
  for (const x of v) n += x * x;
  return v.map((x) => x / Math.sqrt(n || 1));
}

export function createStandIn(
  overrides: Partial<ServiceImpl<typeof EmbedderService>> = {},
): StandIn {
  const state: StandIn = {
    fetch: undefined as unknown as typeof fetch,
    received: [],
    headers: [],
    calls: 0,
  };
  const router = createConnectRouter();
  router.service(EmbedderService, {
    async embed(req, ctx) {
      state.calls++;
      state.headers.push(ctx.requestHeader);
      for (const im of req.images) state.received.push(im.data);
      return create(EmbedResponseSchema, {
        embeddings: req.images.map((im, index) => {
          const v = fingerprint(im.data);
          return { id: im.id, index, vector: new Uint8Array(v.buffer) };
        }),
        model: "stand-in",
        modelVersion: "0",
        dimension: 512,
        timings: {
          decodeUs: 1000,
          preprocessUs: 100,
          queueUs: 200,
          inferenceUs: 3000,
          totalUs: 4500,
        },
      });
    },
    embedStream() {
      throw new ConnectError("not in the stand-in", Code.Unimplemented);
    },
    async getModelInfo() {
      return create(GetModelInfoResponseSchema, { model: "stand-in", dimension: 512 });
    },
    ...overrides,
  });
  const handlers = new Map(router.handlers.map((h) => [h.requestPath, createFetchHandler(h)]));
  state.fetch = async (input, init) => {
    const req = new Request(input, init);
    const path = new URL(req.url).pathname;
    // The gpu-node's plain-HTTP readiness probe (the edge's /readyz asks it).
    if (path === "/readyz") return Response.json({ status: "ready", model: "stand-in" });
    const handler = handlers.get(path);
    return handler ? handler(req) : new Response("not found", { status: 404 });
  };
  return state;
}
