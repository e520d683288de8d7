import { availableParallelism } from "node:os";
import { describe, expect, it } from "vitest";
import { autoBatchWaitMs } from "./batching/model-batcher.ts";
import { ConfigError, helpText, parseConfig, SETTINGS, testConfig } from "./config.ts";

describe("parseConfig", () => {
  it("has safe defaults", () => {
    const c = parseConfig([], {});
    expect(c).toMatchObject({
      host: "127.0.0.1",
      port: 50051,
      backend: "onnxruntime",
      model: "vit-b32",
      ortProvider: "auto",
      maxBatchSize: "auto",
      maxBatchWaitMs: "auto",
      maxImagesPerRequest: 64,
      maxImageBytes: 20 * 1024 * 1024,
      maxImagePixels: 100_000_000,
      token: "",
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it("waits longer for decoding images only when inference shares the CPU", () => {
    const model = {
      name: "m",
      version: "1",
      dimension: 512,
      layout: "uint8-nhwc",
      maxBatchSize: 32,
    } as const;
    expect(autoBatchWaitMs({ ...model, backend: "noop" })).toBe(2);
    expect(autoBatchWaitMs({ ...model, backend: "triton" })).toBe(2);
    expect(autoBatchWaitMs({ ...model, backend: "onnxruntime", provider: "cpu" })).toBe(100);
    expect(autoBatchWaitMs({ ...model, backend: "onnxruntime", provider: "webgpu" })).toBe(2);
    expect(autoBatchWaitMs({ ...model, backend: "onnxruntime", provider: "cuda" })).toBe(2);
    expect(parseConfig(["--max-batch-wait-ms", "7"], {}).maxBatchWaitMs).toBe(7);
  });

  it("takes an ONNX Runtime provider by name, or auto", () => {
    expect(parseConfig(["--ort-provider", "webgpu"], {}).ortProvider).toBe("webgpu");
    expect(parseConfig([], { GPU_NODE_ORT_PROVIDER: "cuda" }).ortProvider).toBe("cuda");
    expect(() => parseConfig(["--ort-provider", "tensorrt"], {})).toThrow(
      /--ort-provider \(GPU_NODE_ORT_PROVIDER\) must be one of auto, cpu, webgpu, cuda/,
    );
    expect(parseConfig(["--max-batch-size", "128"], {}).maxBatchSize).toBe(128);
  });

  it("runs one process per core by default; tests and --processes 1 get a single process", () => {
    expect(parseConfig([], {}).processes).toBe(availableParallelism());
    expect(parseConfig(["--processes", "1"], {}).processes).toBe(1);
    expect(parseConfig([], { GPU_NODE_PROCESSES: "16" }).processes).toBe(16);
    expect(testConfig().processes).toBe(1);
    expect(() => parseConfig(["--processes", "0"], {})).toThrow(
      /--processes \(GPU_NODE_PROCESSES\)/,
    );
  });

  it("reads the environment, and flags win over it", () => {
    const env = { GPU_NODE_PORT: "6000", GPU_NODE_MODEL: "vit-tiny" };
    expect(parseConfig([], env)).toMatchObject({ port: 6000, model: "vit-tiny" });
    expect(parseConfig(["--port", "7000"], env)).toMatchObject({ port: 7000, model: "vit-tiny" });
  });

  it.each([
    [
      ["--port", "70000"],
      /--port \(GPU_NODE_PORT\) must be an integer from 0 to 65535, got "70000"/,
    ],
    [["--max-batch-size", "abc"], /--max-batch-size/],
    [["--backend", "tensorflow"], /--backend \(GPU_NODE_BACKEND\) must be one of onnxruntime, /],
    [["--bogus", "1"], /bogus/],
    [["--max-images-per-request", "1000"], /must not exceed --max-queued-images/],
  ])("rejects %j with a clear message", (argv, message) => {
    expect(() => parseConfig(argv, {})).toThrow(ConfigError);
    expect(() => parseConfig(argv, {})).toThrow(message);
  });

  it("documents every setting in --help", () => {
    const text = helpText();
    for (const s of Object.values(SETTINGS)) {
      expect(text).toContain(`--${s.flag}`);
      expect(text).toContain(s.env);
    }
  });
});
