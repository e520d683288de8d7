// The test double must reject what Triton rejects, or tests against it prove nothing.
import { closeSync, ftruncateSync, openSync, unlinkSync, writeSync } from "node:fs";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectTriton, type TritonConnection } from "../../gpu-node/backends/triton/client.ts";
import { testConfig } from "../../gpu-node/config.ts";
import type { ModelInferRequestSchema } from "../../proto/gen/inference/grpc_service_pb.js";
import { DataType } from "../../proto/gen/inference/model_config_pb.js";
import { type KServeDouble, startKServeDouble, tinyModelFiles } from "./kserve-double.ts";

let double: KServeDouble;
let conn: TritonConnection;
const IMAGE = 224 * 224 * 3;

beforeAll(async () => {
  const files = await tinyModelFiles(testConfig().cacheDir);
  double = await startKServeDouble({
    models: [
      { name: "u8", path: files.uint8, layout: "uint8-nhwc", maxBatchSize: 4 },
      { name: "f32", path: files.float32, layout: "float32-nchw", maxBatchSize: 32 },
    ],
  });
  conn = connectTriton({ url: double.url, connectTimeoutMs: 1000 });
});
afterAll(async () => {
  conn?.close();
  await double?.close();
});

type InferInit = MessageInitShape<typeof ModelInferRequestSchema>;

const u8Request = (n: number, extra: InferInit = {}): InferInit => ({
  modelName: "u8",
  inputs: [{ name: "image", datatype: "UINT8", shape: [BigInt(n), 224n, 224n, 3n] }],
  rawInputContents: [new Uint8Array(n * IMAGE)],
  ...extra,
});

async function rejection(p: Promise<unknown>): Promise<[string, string]> {
  try {
    await p;
  } catch (err) {
    const ce = ConnectError.from(err);
    return [Code[ce.code], ce.rawMessage];
  }
  throw new Error("expected a rejection");
}

describe("KServe v2 double", () => {
  it("serves metadata and config for both layouts as Triton does (batch dimension -1 in metadata only)", async () => {
    const u8 = await conn.rpc.modelMetadata({ name: "u8" });
    expect(u8.inputs.map((i) => [i.name, i.datatype, i.shape.map(Number)])).toEqual([
      ["image", "UINT8", [-1, 224, 224, 3]],
    ]);
    expect(u8.outputs.map((o) => [o.name, o.datatype, o.shape.map(Number)])).toEqual([
      ["embedding", "FP32", [-1, 512]],
    ]);
    const f32 = (await conn.rpc.modelConfig({ name: "f32" })).config!;
    expect(f32.maxBatchSize).toBe(32);
    expect(f32.input.map((i) => [i.name, i.dataType, i.dims.map(Number)])).toEqual([
      ["image", DataType.TYPE_FP32, [3, 224, 224]],
    ]);
    expect((await conn.rpc.serverReady({})).ready).toBe(true);
    expect((await conn.rpc.modelReady({ name: "f32" })).ready).toBe(true);
    expect((await conn.rpc.modelReady({ name: "nope" })).ready).toBe(false);
  });

  it("answers an inference with raw FP32 rows and the request's id", async () => {
    const res = await conn.rpc.modelInfer({ ...u8Request(2), id: "abc" });
    expect(res.id).toBe("abc");
    expect(res.outputs[0]!.shape.map(Number)).toEqual([2, 512]);
    expect(res.rawOutputContents[0]!.byteLength).toBe(2 * 512 * 4);
  });

  it.each<[string, () => unknown, string, RegExp]>([
    [
      "an unknown model",
      () => u8Request(1, { modelName: "vit_h14" }),
      "NotFound",
      /^Request for unknown model: 'vit_h14' is not found$/,
    ],
    [
      "an unknown version",
      () => u8Request(1, { modelVersion: "7" }),
      "NotFound",
      /'u8' version 7 is not found/,
    ],
    [
      "a wrong byte size",
      () => ({ ...u8Request(2), rawInputContents: [new Uint8Array(IMAGE)] }),
      "InvalidArgument",
      /^unexpected total byte size 150528 for input 'image', expecting 301056$/,
    ],
    [
      "a wrong datatype",
      () => ({
        ...u8Request(1),
        inputs: [{ name: "image", datatype: "FP32", shape: [1n, 224n, 224n, 3n] }],
      }),
      "InvalidArgument",
      /data-type is 'FP32', but model 'u8' expects 'UINT8'/,
    ],
    [
      "a batch above max_batch_size",
      () => u8Request(5),
      "InvalidArgument",
      /batch-size must be <= 4 for 'u8'/,
    ],
    [
      "a wrong shape",
      () => ({
        ...u8Request(1),
        inputs: [{ name: "image", datatype: "UINT8", shape: [1n, 3n, 224n, 224n] }],
      }),
      "InvalidArgument",
      /unexpected shape for input 'image' for model 'u8'\. Expected \[-1,224,224,3\], got \[1,3,224,224\]/,
    ],
    [
      "a wrong input name",
      () => ({
        ...u8Request(1),
        inputs: [{ name: "pixels", datatype: "UINT8", shape: [1n, 224n, 224n, 3n] }],
      }),
      "InvalidArgument",
      /unexpected inference input 'pixels'/,
    ],
    [
      "a missing raw input",
      () => ({ ...u8Request(1), rawInputContents: [] }),
      "InvalidArgument",
      /expected 1 raw input contents but got 0/,
    ],
    [
      "an unknown output",
      () => ({ ...u8Request(1), outputs: [{ name: "logits" }] }),
      "InvalidArgument",
      /unexpected inference output 'logits'/,
    ],
    [
      "an unregistered shm region",
      () => ({
        ...u8Request(1),
        rawInputContents: [],
        inputs: [
          {
            name: "image",
            datatype: "UINT8",
            shape: [1n, 224n, 224n, 3n],
            parameters: {
              shared_memory_region: {
                parameterChoice: { case: "stringParam" as const, value: "nope" },
              },
            },
          },
        ],
      }),
      "InvalidArgument",
      /Unable to find shared memory region: 'nope'/,
    ],
  ])("rejects %s", async (_name, request, code, message) => {
    const [c, m] = await rejection(conn.rpc.modelInfer(request() as InferInit));
    expect(c).toBe(code);
    expect(m).toMatch(message);
  });

  it("reads inputs from registered /dev/shm regions, checks their size, and forgets them on restart", async () => {
    const name = `kserve-double-test-${process.pid}`;
    const fd = openSync(`/dev/shm/${name}`, "w+");
    try {
      ftruncateSync(fd, 2 * IMAGE);
      writeSync(fd, new Uint8Array(2 * IMAGE).fill(90), 0, 2 * IMAGE, 0);
      expect(
        await rejection(
          conn.rpc.systemSharedMemoryRegister({ name, key: "/missing-file", byteSize: 10n }),
        ),
      ).toEqual(["InvalidArgument", "Unable to open shared memory region: '/missing-file'"]);
      await conn.rpc.systemSharedMemoryRegister({
        name,
        key: `/${name}`,
        byteSize: BigInt(2 * IMAGE),
      });
      expect(
        (
          await rejection(
            conn.rpc.systemSharedMemoryRegister({ name, key: `/${name}`, byteSize: 1n }),
          )
        )[0],
      ).toBe("AlreadyExists");
      expect(Object.keys((await conn.rpc.systemSharedMemoryStatus({})).regions)).toContain(name);
      const viaShm = (bytes: number) => ({
        ...u8Request(2),
        rawInputContents: [],
        inputs: [
          {
            name: "image",
            datatype: "UINT8",
            shape: [2n, 224n, 224n, 3n],
            parameters: {
              shared_memory_region: {
                parameterChoice: { case: "stringParam" as const, value: name },
              },
              shared_memory_byte_size: {
                parameterChoice: { case: "int64Param" as const, value: BigInt(bytes) },
              },
            },
          },
        ],
      });
      const shm = await conn.rpc.modelInfer(viaShm(2 * IMAGE) as InferInit);
      const raw = await conn.rpc.modelInfer({
        ...u8Request(2),
        rawInputContents: [new Uint8Array(2 * IMAGE).fill(90)],
      });
      expect(
        Buffer.from(shm.rawOutputContents[0]!).equals(Buffer.from(raw.rawOutputContents[0]!)),
      ).toBe(true);
      expect((await rejection(conn.rpc.modelInfer(viaShm(IMAGE) as InferInit)))[1]).toMatch(
        /unexpected total byte size 150528/,
      );
      expect(double.requests.filter((r) => r.viaShm && r.outcome === "ok").length).toBe(1);

      await double.restart();
      expect(double.regions().size).toBe(0);
      // The first call may still meet the old, dead session (refused stream): a client retries.
      await conn.rpc.serverReady({}).catch(() => undefined);
      const stats = await conn.rpc.modelStatistics({ name: "u8" });
      expect(stats.modelStats[0]!.inferenceCount).toBe(0n);
    } finally {
      closeSync(fd);
      unlinkSync(`/dev/shm/${name}`);
    }
  });

  it("counts statistics like Triton: requests, inferences (images), phases", async () => {
    const before = (await conn.rpc.modelStatistics({ name: "u8" })).modelStats[0]!;
    await conn.rpc.modelInfer(u8Request(3));
    await conn.rpc.modelInfer(u8Request(1));
    await rejection(conn.rpc.modelInfer(u8Request(9)));
    const after = (await conn.rpc.modelStatistics({ name: "u8" })).modelStats[0]!;
    const s = after.inferenceStats!;
    expect(after.inferenceCount - before.inferenceCount).toBe(4n);
    expect(after.executionCount - before.executionCount).toBe(2n);
    expect(s.success!.count - before.inferenceStats!.success!.count).toBe(2n);
    expect(s.fail!.count - before.inferenceStats!.fail!.count).toBe(1n);
    expect(s.computeInfer!.ns).toBeGreaterThan(before.inferenceStats!.computeInfer!.ns);
  });
});
