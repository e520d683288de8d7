// End to end: a real gpu-node with --backend triton against the KServe v2 double gives the same
// embeddings as the embedded ONNX Runtime backend, for both model layouts, with shared memory on
// and off, splitting batches above Triton's max_batch_size.
import { readdirSync } from "node:fs";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SHM_PREFIX } from "../gpu-node/backends/triton/shm.ts";
import { type Config, ConfigError, parseConfig, testConfig } from "../gpu-node/config.ts";
import { type GpuNode, startGpuNode } from "../gpu-node/node.ts";
import { embedderClient, maxAbsDiff, type Protocol, toFloats } from "./support/gpu-node-client.ts";
import { photo } from "./support/images.ts";
import { type KServeDouble, startKServeDouble, tinyModelFiles } from "./support/kserve-double.ts";

let double: KServeDouble;
let files: { uint8: string; float32: string };
let images: Buffer[];
const ort: Partial<Record<"uint8" | "float32", GpuNode>> = {};
const reference: Partial<Record<"uint8" | "float32", Float32Array[]>> = {};

const tritonConfig = (overrides: Partial<Config>): Config =>
  testConfig({
    port: 0,
    backend: "triton",
    tritonUrl: double.url,
    tritonHealthIntervalMs: 200,
    tritonStatsIntervalMs: 0,
    tritonStartTimeoutMs: 5000,
    // Clients keep their HTTP/2 connections open: don't wait 10 s for them on close.
    drainTimeoutMs: 300,
    ...overrides,
  });

async function embedAll(node: GpuNode, data: Buffer[], protocol: Protocol = "grpc") {
  const res = await embedderClient(node.url, protocol).embed({
    images: data.map((d, i) => ({ id: `img-${i}`, data: d })),
  });
  return res.embeddings.map((e) => toFloats(e.vector));
}

beforeAll(async () => {
  files = await tinyModelFiles(testConfig().cacheDir);
  double = await startKServeDouble({
    models: [
      { name: "openclip_vit_b32_uint8", path: files.uint8, layout: "uint8-nhwc", maxBatchSize: 32 },
      { name: "tiny_b4", path: files.uint8, layout: "uint8-nhwc", maxBatchSize: 4 },
      // The seed's model as it is deployed: FP32 [3,224,224] `image` → `embedding`, batch 32.
      { name: "openclip_vit_b32", path: files.float32, layout: "float32-nchw", maxBatchSize: 32 },
    ],
  });
  images = await Promise.all(
    Array.from({ length: 10 }, (_, i) => photo(240 + 12 * i, 256 + 8 * (i % 3), 40 + i)),
  );
  for (const layout of ["uint8", "float32"] as const) {
    ort[layout] = await startGpuNode(
      testConfig({ port: 0, model: files[layout], threads: 1, drainTimeoutMs: 300 }),
    );
    reference[layout] = await embedAll(ort[layout]!, images);
  }
});
afterAll(async () => {
  await Promise.all(Object.values(ort).map((n) => n?.close()));
  await double?.close();
});

describe("gpu-node --backend triton end to end", () => {
  it.each([
    ["UINT8 NHWC, bytes", "openclip_vit_b32_uint8", false, "uint8"],
    ["UINT8 NHWC, shared memory", "openclip_vit_b32_uint8", true, "uint8"],
    ["the seed's FP32 NCHW model, bytes", "openclip_vit_b32", false, "float32"],
    ["the seed's FP32 NCHW model, shared memory", "openclip_vit_b32", true, "float32"],
    ["UINT8 with max_batch_size 4 (split)", "tiny_b4", false, "uint8"],
    ["UINT8 with max_batch_size 4 (split), shared memory", "tiny_b4", true, "uint8"],
  ] as const)(
    "%s: the same embeddings as the onnxruntime backend, in one call and concurrently",
    async (_name, model, shm, layout) => {
      const split = model === "tiny_b4";
      const node = await startGpuNode(
        // Splitting: let the 10 images of one call meet in one gpu-node batch.
        tritonConfig({ tritonModel: model, tritonShm: shm, maxBatchWaitMs: split ? 150 : 2 }),
      );
      try {
        double.requests.length = 0;
        const ref = reference[layout]!;
        const all = await embedAll(node, images);
        if (split) expect(double.requests.map((r) => r.images).sort()).toEqual([2, 4, 4]);
        const concurrent = await Promise.all(
          Array.from({ length: 24 }, async (_, k) => {
            const i = (k * 7) % images.length;
            return {
              i,
              v: (await embedAll(node, [images[i]!], k % 2 ? "grpc" : "connect-h1"))[0]!,
            };
          }),
        );
        for (let i = 0; i < images.length; i++) {
          expect(maxAbsDiff(all[i]!, ref[i]!), `image ${i}`).toBeLessThanOrEqual(1e-5);
        }
        for (const { i, v } of concurrent) expect(maxAbsDiff(v, ref[i]!)).toBeLessThanOrEqual(1e-5);
        expect(double.requests.length).toBeGreaterThan(0);
        expect(double.requests.every((r) => r.outcome === "ok" && r.viaShm === shm)).toBe(true);
        if (split) expect(Math.max(...double.requests.map((r) => r.images))).toBe(4);
        const info = await embedderClient(node.url).getModelInfo({});
        expect(info).toMatchObject({ model, backend: "triton", dimension: 512 });
        expect((await fetch(`${node.url}/readyz`)).status).toBe(200);
      } finally {
        await node.close();
      }
      expect(
        readdirSync("/dev/shm").filter((f) => f.startsWith(`${SHM_PREFIX}-${process.pid}-`)),
      ).toEqual([]);
    },
  );

  it("the FP32 variant is the same model: UINT8 and FP32 embeddings agree", () => {
    for (let i = 0; i < images.length; i++) {
      expect(maxAbsDiff(reference.uint8![i]!, reference.float32![i]!)).toBeLessThan(1e-4);
    }
  });

  it("works when Triton refuses shared memory: bytes instead", async () => {
    double.faults.refuseShm = true;
    try {
      const node = await startGpuNode(
        tritonConfig({ tritonModel: "openclip_vit_b32_uint8", tritonShm: true }),
      );
      try {
        double.requests.length = 0;
        const v = await embedAll(node, images.slice(0, 4));
        for (let i = 0; i < 4; i++)
          expect(maxAbsDiff(v[i]!, reference.uint8![i]!)).toBeLessThanOrEqual(1e-5);
        expect(double.requests.some((r) => r.viaShm)).toBe(false);
      } finally {
        await node.close();
      }
    } finally {
      double.faults.refuseShm = false;
    }
  });

  it("refuses to start for a model Triton does not have, with a clear error", async () => {
    await expect(
      startGpuNode(tritonConfig({ tritonModel: "openclip_vit_l14", tritonStartTimeoutMs: 300 })),
    ).rejects.toThrow(/triton model 'openclip_vit_l14' is not ready at 127\.0\.0\.1:\d+/);
  });

  it("passes Triton's rejection on as Internal with its message, and stays ready", async () => {
    const node = await startGpuNode(tritonConfig({ tritonModel: "openclip_vit_b32_uint8" }));
    try {
      double.faults.reject = {
        code: Code.InvalidArgument,
        message: "unexpected shape for input 'image' for model 'openclip_vit_b32_uint8'",
      };
      const err = await embedAll(node, [images[0]!]).then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
      expect(err?.code).toBe(Code.Internal);
      expect(err?.rawMessage).toBe(
        "triton rejected the request: unexpected shape for input 'image' for model 'openclip_vit_b32_uint8'",
      );
      double.faults.reject = undefined;
      expect((await fetch(`${node.url}/readyz`)).status).toBe(200);
      expect((await embedAll(node, [images[0]!]))[0]!.length).toBe(512);
    } finally {
      double.faults.reject = undefined;
      await node.close();
    }
  });
});

describe("triton settings", () => {
  it("parses the triton flags and environment, --triton-shm as a switch", () => {
    const c = parseConfig(
      [
        "--backend",
        "triton",
        "--triton-url",
        "http://localhost:9001",
        "--triton-model",
        "m",
        "--triton-shm",
      ],
      { GPU_NODE_TRITON_CONCURRENCY: "8" },
    );
    expect(c).toMatchObject({
      backend: "triton",
      tritonUrl: "localhost:9001",
      tritonModel: "m",
      tritonShm: true,
      tritonConcurrency: 8,
    });
    expect(parseConfig([], { GPU_NODE_TRITON_SHM: "1" }).tritonShm).toBe(true);
    expect(parseConfig([]).tritonShm).toBe(false);
  });

  it.each([
    [["--triton-url", "https://triton:8001"], /--triton-url .* must be host:port/],
    [["--triton-url", "triton"], /--triton-url/],
    [["--backend", "triton", "--triton-model", " "], /--triton-model .* must not be empty/],
    [["--triton-concurrency", "0"], /--triton-concurrency/],
  ])("refuses %j", (argv, message) => {
    expect(() => parseConfig(argv)).toThrow(ConfigError);
    expect(() => parseConfig(argv)).toThrow(message);
  });
  it("refuses a bad switch value from the environment", () => {
    expect(() => parseConfig([], { GPU_NODE_TRITON_SHM: "yes please" })).toThrow(/true or false/);
  });
});
