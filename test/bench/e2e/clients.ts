/** The benchmark's clients: the edge's HTTP API (variants 1 and 2), the seed benchmark's own base64 JSON client (a new connection per call) and a Triton-style KServe v2 gRPC client that preprocesses locally and sends FP32 tensors (variant 3). Each call returns its stage times in ms. */
import { type IncomingHttpHeaders, request } from "node:http";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { packFloat32Nchw } from "../../../gpu-node/batching/tensor-pack.ts";
import { decodeForClip } from "../../../gpu-node/preprocess/decode.ts";
import {
  GRPCInferenceService,
  ModelInferRequestSchema,
} from "../../../proto/gen/inference/grpc_service_pb.js";

export type Stages = Readonly<Record<string, number>>;
export type Call = (images: readonly Buffer[]) => Promise<Stages>;

const LIMITS = { maxPixels: 100_000_000, maxBytes: 20 * 1024 * 1024 } as const;

/** `name;dur=1.2` entries of a Server-Timing header, in ms. */
export function parseServerTiming(header: string | null): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of (header ?? "").matchAll(/([\w-]+)(?:;[^,]*?)?;dur=([\d.]+)/g)) {
    out[m[1]!] = Number(m[2]);
  }
  return out;
}

interface EmbeddingsBody {
  readonly data?: readonly { readonly embedding: string | readonly number[] }[];
}

/**
 * POST /v1/embeddings with the photos as they are: one image as the raw body, several as
 * multipart `image` parts; vectors come back base64 (half the bytes of JSON floats). fetch keeps
 * the connection alive between calls (undici's pool).
 */
export function edgeClient(baseUrl: string, apiKey: string): Call {
  const url = `${baseUrl}/v1/embeddings?encoding_format=base64`;
  return async (images) => {
    let body: Buffer | FormData;
    const headers: Record<string, string> = { authorization: `Bearer ${apiKey}` };
    if (images.length === 1) {
      body = images[0]!;
      headers["content-type"] = "image/jpeg";
    } else {
      const form = new FormData();
      images.forEach((img, i) => {
        form.append("image", new Blob([img], { type: "image/jpeg" }), `${i}.jpg`);
      });
      body = form;
    }
    const res = await fetch(url, { method: "POST", headers, body });
    const text = await res.text();
    if (!res.ok) throw new Error(`edge answered ${res.status}: ${text.slice(0, 300)}`);
    const parsed = JSON.parse(text) as EmbeddingsBody;
    if (parsed.data?.length !== images.length || typeof parsed.data[0]?.embedding !== "string") {
      throw new Error(`edge returned ${parsed.data?.length} embeddings for ${images.length}`);
    }
    return edgeStages(res.headers.get("server-timing"));
  };
}

/** The edge's and the gpu-node's stages from the edge's Server-Timing header. */
function edgeStages(serverTiming: string | null | undefined): Stages {
  const t = parseServerTiming(serverTiming ?? null);
  return {
    "edge-validate": t.validate ?? Number.NaN,
    "edge-resize": t.resize ?? Number.NaN,
    "edge-gpu-call": t.gpu ?? Number.NaN,
    "gpu-decode": t["gpu-node-decode"] ?? Number.NaN,
    "gpu-pack": t["gpu-node-preprocess"] ?? Number.NaN,
    "gpu-queue": t["gpu-node-queue"] ?? Number.NaN,
    "gpu-inference": t["gpu-node-inference"] ?? Number.NaN,
    "gpu-total": t["gpu-node-total"] ?? Number.NaN,
    "edge-total": t.total ?? Number.NaN,
  };
}

interface SeedResponse {
  readonly embeddings?: readonly (readonly number[])[];
  readonly count?: number;
}

/** How many distinct request bodies a seed client keeps encoded (the bench reuses a few). */
const SEED_BODIES = 256;

/**
 * The seed's own benchmark client, as Python `requests` without a session does it: each call a
 * NEW TCP connection (no agent, `Connection: close`), `POST /embed/base64` with
 * `{"images": [base64, ...]}` as JSON, the JSON answer parsed in full. The seed's script encodes
 * its test images before timing; here each distinct body is built once: building the ~200 KB
 * body on every call made this client (Node, unlike Python) run a full GC every ~40 calls,
 * 3-17 ms of the shared machine's CPU in the middle of the edge's calls.
 */
export function seedClient(baseUrl: string, apiKey: string): Call {
  const url = new URL("/embed/base64", baseUrl);
  const ids = new WeakMap<Buffer, number>();
  let nextId = 0;
  const bodies = new Map<string, Buffer>();
  const bodyOf = (images: readonly Buffer[]) => {
    const key = images
      .map((img) => {
        let id = ids.get(img);
        if (id === undefined) {
          id = nextId++;
          ids.set(img, id);
        }
        return id;
      })
      .join(",");
    const known = bodies.get(key);
    if (known) return known;
    const body = Buffer.from(JSON.stringify({ images: images.map((i) => i.toString("base64")) }));
    if (bodies.size < SEED_BODIES) bodies.set(key, body);
    return body;
  };
  return async (images) => {
    const body = bodyOf(images);
    const { status, headers, text } = await new Promise<{
      status: number;
      headers: IncomingHttpHeaders;
      text: string;
    }>((resolve, reject) => {
      const req = request(
        url,
        {
          method: "POST",
          agent: false,
          headers: {
            authorization: `Bearer ${apiKey}`,
            "content-type": "application/json",
            "content-length": body.length,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              text: Buffer.concat(chunks).toString("utf8"),
            }),
          );
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(body);
    });
    if (status !== 200) throw new Error(`edge answered ${status}: ${text.slice(0, 300)}`);
    const parsed = JSON.parse(text) as SeedResponse;
    if (parsed.count !== images.length || parsed.embeddings?.[0]?.length !== 512) {
      throw new Error(`edge returned ${parsed.count} embeddings for ${images.length}`);
    }
    const timing = headers["server-timing"];
    return edgeStages(Array.isArray(timing) ? timing.join(", ") : timing);
  };
}

export interface KServeClient {
  readonly call: Call;
  close(): void;
}

/**
 * What a Triton client of the seed does: decode and CLIP-preprocess each photo here (sharp, the
 * gpu-node's own exact resize and crop), normalise into one FP32 [N,3,224,224] tensor (reused
 * buffer) and send it as raw_input_contents of one ModelInfer over one long-lived HTTP/2
 * connection (gRPC).
 */
export function kserveClient(baseUrl: string, model: string, maxBatch: number): KServeClient {
  const sessionManager = new Http2SessionManager(baseUrl);
  const transport = createGrpcTransport({ baseUrl, sessionManager });
  const rpc = createClient(GRPCInferenceService, transport);
  const buffer = new Float32Array(maxBatch * 3 * 224 * 224);
  return {
    async call(images) {
      const t0 = performance.now();
      const pixels = await Promise.all(images.map((img) => decodeForClip(img, LIMITS)));
      const t1 = performance.now();
      const tensor = packFloat32Nchw(
        pixels.map((p) => p.pixels),
        buffer,
      );
      const t2 = performance.now();
      const n = BigInt(images.length);
      const res = await rpc.modelInfer(
        create(ModelInferRequestSchema, {
          modelName: model,
          inputs: [{ name: "image", datatype: "FP32", shape: [n, 3n, 224n, 224n] }],
          outputs: [{ name: "embedding" }],
          rawInputContents: [new Uint8Array(tensor.buffer, tensor.byteOffset, tensor.byteLength)],
        }),
        { timeoutMs: 300_000 },
      );
      const t3 = performance.now();
      const out = res.rawOutputContents[0];
      const dim = Number(res.outputs[0]?.shape.at(-1) ?? 0);
      if (!out || dim <= 0 || out.byteLength !== images.length * dim * 4) {
        throw new Error(`ModelInfer returned ${out?.byteLength} bytes for ${images.length} images`);
      }
      return {
        "client-decode": t1 - t0,
        "client-pack": t2 - t1,
        "client-rpc": t3 - t2,
      };
    },
    close() {
      sessionManager.abort();
    },
  };
}
