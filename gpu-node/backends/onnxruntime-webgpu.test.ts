// ONNX Runtime's real WebGPU provider without a GPU: Dawn on Mesa's lavapipe (a software Vulkan
// driver that .ci/lavapipe.sh unpacks). By name it runs and gives the CPU provider's vectors;
// `auto` refuses the software adapter and takes the CPU; a driver manifest whose library is
// missing gives ONNX Runtime's own "no adapter" failure, reported with what to check. The fp16
// model runs there in half precision (lavapipe has shaderFloat16), within 0.999 cosine of fp32.
import { execFile } from "node:child_process";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { beforeAll, describe, expect, it } from "vitest";
import { ensureModel, syntheticBatch } from "../model/index.ts";
import { rowCosines } from "../model/testing/cosine.ts";

const ROOT = resolve(import.meta.dirname, "../..");
const LAVAPIPE = resolve(ROOT, process.env.LAVAPIPE_DIR ?? ".cache/lavapipe");
const PROBE = resolve(import.meta.dirname, "testing/ort-probe.ts");
const run = promisify(execFile);
const present = existsSync(join(LAVAPIPE, "env.json"));
if (!present && process.env.CI) {
  throw new Error(
    `no software Vulkan driver in ${LAVAPIPE}: .ci/run unpacks one with .ci/lavapipe.sh`,
  );
}
if (!present) {
  console.warn(
    `skipping the WebGPU provider tests: run 'bash .ci/lavapipe.sh' to unpack lavapipe into ${LAVAPIPE}`,
  );
}

interface Probe {
  provider?: string;
  device?: string;
  rows?: number[];
  error?: string;
}

let modelPath: string;
let vulkan: Record<string, string>;

async function probe(
  provider: string,
  env: Record<string, string>,
  model = modelPath,
  images?: string,
): Promise<Probe> {
  const args = [PROBE, model, provider, ...(images === undefined ? [] : [images])];
  const { stdout } = await run(process.execPath, args, {
    env: { ...process.env, ...env },
    timeout: 240_000,
    maxBuffer: 64 << 20,
  });
  return JSON.parse(stdout.trim().split("\n").at(-1)!) as Probe;
}

describe.skipIf(!present)("the WebGPU provider on a software adapter (lavapipe)", () => {
  beforeAll(async () => {
    modelPath = (await ensureModel("vit-tiny", join(tmpdir(), "gpu-node-ort-test-cache"))).path;
    vulkan = JSON.parse(readFileSync(join(LAVAPIPE, "env.json"), "utf8")) as Record<string, string>;
  });

  it("runs by name and gives the CPU provider's vectors", { timeout: 300_000 }, async () => {
    const [gpu, cpu] = await Promise.all([probe("webgpu", vulkan), probe("cpu", {})]);
    expect(gpu.error).toBeUndefined();
    expect(gpu.provider).toBe("webgpu");
    expect(gpu.device).toMatch(/^software Vulkan: libvulkan_lvp\.so$/);
    expect(gpu.rows).toHaveLength(8 * 512);
    let worst = 0;
    for (let i = 0; i < gpu.rows!.length; i++)
      worst = Math.max(worst, Math.abs(gpu.rows![i]! - cpu.rows![i]!));
    expect(worst).toBeLessThan(1e-4);
  });

  it("runs vit-tiny-fp16 in half precision: cosine to fp32 >= 0.999 per image", {
    timeout: 300_000,
  }, async () => {
    const half = (await ensureModel("vit-tiny-fp16", join(tmpdir(), "gpu-node-ort-test-cache")))
      .path;
    const images = join(tmpdir(), `fp16-probe-${process.pid}.u8`);
    writeFileSync(images, syntheticBatch(0xf16, 16));
    const [gpu, cpu] = await Promise.all([
      probe("webgpu", vulkan, half, images),
      probe("cpu", {}, modelPath, images),
    ]).finally(() => rmSync(images, { force: true }));
    expect(gpu.error).toBeUndefined();
    expect(gpu.provider).toBe("webgpu");
    const worst = Math.min(...rowCosines(gpu.rows!, cpu.rows!, 512));
    console.log(`vit-tiny fp16 (WebGPU, lavapipe) vs fp32 (CPU), 16 images: worst cosine ${worst}`);
    expect(worst).toBeGreaterThanOrEqual(0.999);
    // Half arithmetic really happened: the vectors are not the CPU provider's to float precision.
    expect(worst).toBeLessThan(0.999999);
  });

  it("auto never takes the software adapter", async () => {
    const got = await probe("auto", vulkan);
    expect(got.provider).toBe("cpu");
  });

  it("a driver whose library is missing: ONNX Runtime's own no-adapter failure, explained", async () => {
    const got = await probe("webgpu", {
      ...vulkan,
      VK_DRIVER_FILES: join(LAVAPIPE, "no-adapter.json"),
    });
    expect(got.error).toMatch(/--ort-provider webgpu failed to start: /);
    expect(got.error).toMatch(/adapter/i);
  });
});
