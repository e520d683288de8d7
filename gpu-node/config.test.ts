import { availableParallelism } from "node:os";
import { describe, expect, it } from "vitest";
import { ConfigError, helpText, parseConfig, SETTINGS, testConfig } from "./config.ts";

describe("parseConfig", () => {
  it("has safe defaults", () => {
    const c = parseConfig([], {});
    expect(c).toMatchObject({
      host: "127.0.0.1",
      port: 50051,
      backend: "onnxruntime",
      model: "vit-b32",
      maxBatchSize: 32,
      maxBatchWaitMs: 100,
      maxImagesPerRequest: 64,
      maxImageBytes: 20 * 1024 * 1024,
      maxImagePixels: 100_000_000,
      token: "",
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it("waits longer for decoding images only when inference shares the CPU", () => {
    expect(parseConfig(["--backend", "noop"], {}).maxBatchWaitMs).toBe(2);
    expect(parseConfig(["--backend", "onnxruntime"], {}).maxBatchWaitMs).toBe(100);
    expect(parseConfig(["--max-batch-wait-ms", "7"], {}).maxBatchWaitMs).toBe(7);
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
