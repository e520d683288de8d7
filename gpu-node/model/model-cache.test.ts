import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, describe, expect, it } from "vitest";
import { ModelProtoSchema } from "../../proto/gen/onnx/onnx_pb.js";
import { cachedModelPath, ensureModel, sha256File } from "./model-cache.ts";

describe("ensureModel", async () => {
  const cacheDir = await mkdtemp(join(tmpdir(), "model-cache-"));
  afterAll(() => rm(cacheDir, { recursive: true, force: true }));

  it("generates a built-in config once, then reuses the file", async () => {
    const first = await ensureModel("vit-tiny", cacheDir);
    expect(first.path).toBe(join(cacheDir, "models", "vit-tiny-seed0.onnx"));
    expect(first.path).toBe(cachedModelPath(cacheDir, "vit-tiny"));
    expect(first.name).toBe("vit-tiny");
    expect(first.sha256).toMatch(/^[0-9a-f]{64}$/);
    const { mtimeMs } = await stat(first.path);

    const second = await ensureModel("vit-tiny", cacheDir);
    expect(second).toEqual(first);
    expect((await stat(second.path)).mtimeMs).toBe(mtimeMs);
    // No temporary files left behind.
    expect(await readdir(join(cacheDir, "models"))).toEqual(["vit-tiny-seed0.onnx"]);
  });

  it("replaces a cached file from another generator version (or not a model at all)", async () => {
    const dir = join(cacheDir, "stale");
    const path = cachedModelPath(dir, "vit-tiny");
    await mkdir(dirname(path), { recursive: true });
    const old = create(ModelProtoSchema, { irVersion: 8n, producerVersion: "0" });
    for (const content of [toBinary(ModelProtoSchema, old), new TextEncoder().encode("junk")]) {
      await writeFile(path, content);
      const model = await ensureModel("vit-tiny", dir);
      expect(model.sha256).toBe((await ensureModel("vit-tiny", cacheDir)).sha256);
    }
  });

  it("keys the file by seed", async () => {
    const seeded = await ensureModel("vit-tiny", cacheDir, { seed: 3 });
    expect(seeded.path).toBe(join(cacheDir, "models", "vit-tiny-seed3.onnx"));
    expect(seeded.sha256).not.toBe((await ensureModel("vit-tiny", cacheDir)).sha256);
  });

  it("keys the file by precision: vit-tiny-fp16 is its own file, half the size", async () => {
    const half = await ensureModel("vit-tiny-fp16", cacheDir);
    expect(half.path).toBe(join(cacheDir, "models", "vit-tiny-fp16-seed0.onnx"));
    expect(half.name).toBe("vit-tiny-fp16");
    const full = await ensureModel("vit-tiny", cacheDir);
    expect((await stat(half.path)).size).toBeLessThan(0.6 * (await stat(full.path)).size);
    // fp32 goes without a suffix: one name per model.
    await expect(ensureModel("vit-tiny-fp32", cacheDir)).rejects.toThrow(/not a built-in config/);
  });

  it("survives concurrent generation into the same cache", async () => {
    const dir = join(cacheDir, "concurrent");
    const results = await Promise.all([1, 2, 3].map(() => ensureModel("vit-tiny", dir)));
    expect(new Set(results.map((r) => r.sha256)).size).toBe(1);
    expect(await readdir(join(dir, "models"))).toEqual(["vit-tiny-seed0.onnx"]);
  });

  it("accepts the path of an existing file", async () => {
    const path = join(cacheDir, "custom.onnx");
    await writeFile(path, "not really a model");
    const model = await ensureModel(path, cacheDir);
    expect(model).toEqual({ path, name: "custom.onnx", sha256: await sha256File(path) });
  });

  it("explains a spec that is neither a config nor a file", async () => {
    const missing = join(cacheDir, "nope.onnx");
    await expect(ensureModel(missing, cacheDir)).rejects.toThrow(
      `model "${missing}" not found: not a built-in config (vit-b32, vit-tiny, vit-b32-fp16, vit-tiny-fp16) and no file at ${missing}`,
    );
    await expect(ensureModel("vit-huge", cacheDir)).rejects.toThrow(/not a built-in config/);
  });
});
