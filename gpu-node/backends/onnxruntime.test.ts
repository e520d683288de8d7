// The embedded backend's providers: which one `auto` takes (real CPU provider, real failures of
// providers that cannot run here), what a provider asked for by name says when it cannot load, and
// a GPU that fails mid-run (a real CPU session behind a stand-in "GPU" session that we break).
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import { beforeAll, describe, expect, it } from "vitest";
import { until } from "../../test/support/wait.ts";
import { ensureModel } from "../model/index.ts";
import type { BatchTensor } from "./backend.ts";
import { IMAGE_BYTES } from "./backend.ts";
import {
  createOnnxRuntimeBackend,
  type OnnxRuntimeOptions,
  ProviderUnavailableError,
} from "./onnxruntime.ts";
import {
  autoCandidates,
  missingFor,
  type ProviderSurvey,
  surveyProviders,
} from "./ort-providers.ts";

const NONE: ProviderSurvey = {
  cudaLibrary: undefined,
  vulkanLoader: false,
  vulkanDrivers: [],
  nvidiaGpus: [],
};
const NVIDIA = {
  manifest: "/usr/share/vulkan/icd.d/nvidia_icd.json",
  library: "libGLX_nvidia.so.0",
  software: false,
};
const LAVAPIPE = {
  manifest: "/usr/share/vulkan/icd.d/lvp_icd.x86_64.json",
  library: "/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so",
  software: true,
};

let modelPath: string;
/** The backend on the generated vit-tiny, one thread, with a test's provider and stand-ins. */
const backendWith = (o: Pick<OnnxRuntimeOptions, "provider"> & Partial<OnnxRuntimeOptions>) =>
  createOnnxRuntimeBackend({ modelPath, name: "t", version: "1", threads: 1, ...o });
const batch = (count: number, fill = 7): BatchTensor => ({
  layout: "uint8-nhwc",
  data: new Uint8Array(count * IMAGE_BYTES).fill(fill),
  count,
});

beforeAll(async () => {
  modelPath = (await ensureModel("vit-tiny", join(tmpdir(), "gpu-node-ort-test-cache"))).path;
});

describe("provider survey", () => {
  it("auto tries cuda, then WebGPU on a hardware Vulkan driver, then cpu", () => {
    expect(autoCandidates(NONE)).toEqual(["cpu"]);
    expect(autoCandidates({ ...NONE, vulkanLoader: true, vulkanDrivers: [NVIDIA] })).toEqual([
      "webgpu",
      "cpu",
    ]);
    expect(
      autoCandidates({
        ...NONE,
        cudaLibrary: "/x/libonnxruntime_providers_cuda.so",
        vulkanLoader: true,
        vulkanDrivers: [NVIDIA],
      }),
    ).toEqual(["cuda", "webgpu", "cpu"]);
  });

  it("never lets auto take a software Vulkan driver (lavapipe), nor WebGPU without a loader", () => {
    expect(autoCandidates({ ...NONE, vulkanLoader: true, vulkanDrivers: [LAVAPIPE] })).toEqual([
      "cpu",
    ]);
    expect(autoCandidates({ ...NONE, vulkanLoader: false, vulkanDrivers: [NVIDIA] })).toEqual([
      "cpu",
    ]);
  });

  it("says what is missing and how to get it", () => {
    expect(missingFor("cuda", NONE)).toMatch(
      /CUDA provider is not installed.*ONNXRUNTIME_NODE_INSTALL=cuda12/,
    );
    expect(missingFor("webgpu", NONE)).toMatch(/no Vulkan loader \(libvulkan\.so\.1\).*libvulkan1/);
    expect(missingFor("webgpu", { ...NONE, vulkanLoader: true })).toMatch(
      /no Vulkan driver.*NVIDIA_DRIVER_CAPABILITIES/,
    );
    expect(
      missingFor("webgpu", { ...NONE, vulkanLoader: true, vulkanDrivers: [LAVAPIPE] }),
    ).toBeUndefined();
  });

  it("reads this machine without failing", () => {
    const survey = surveyProviders();
    expect(typeof survey.vulkanLoader).toBe("boolean");
    expect(autoCandidates(survey).at(-1)).toBe("cpu");
  });
});

describe("the onnxruntime backend's provider", () => {
  it("runs the real CPU provider by name, with the CPU batch default", async () => {
    const b = backendWith({
      provider: "cpu",
      survey: NONE,
    });
    const model = await b.start();
    expect(model).toMatchObject({
      provider: "cpu",
      device: "cpu",
      maxBatchSize: 32,
      dimension: 512,
    });
    expect((await b.infer(batch(2))).length).toBe(2 * 512);
    await b.close();
  });

  it("auto on a machine with no GPU provider takes the CPU", async () => {
    const b = backendWith({
      provider: "auto",
      survey: NONE,
    });
    expect((await b.start()).provider).toBe("cpu");
    await b.close();
  });

  it.each(["webgpu", "cuda"] as const)(
    "%s by name stops the start when it cannot load",
    async (p) => {
      const b = backendWith({
        provider: p,
        survey: NONE,
      });
      await expect(b.start()).rejects.toThrow(ProviderUnavailableError);
      await expect(b.start()).rejects.toThrow(new RegExp(`--ort-provider ${p}: `));
    },
  );

  it("WebGPU by name where the files look right but ONNX Runtime finds no adapter: ORT's own error, explained", async () => {
    const survey = surveyProviders();
    // Whatever this machine has, claim a hardware driver so that ONNX Runtime itself is asked.
    const claimed = { ...survey, vulkanLoader: true, vulkanDrivers: [NVIDIA] };
    const b = backendWith({
      provider: "webgpu",
      survey: claimed,
    });
    const started = await b.start().then(
      (m) => ({ ok: true as const, m }),
      (err: unknown) => ({ ok: false as const, err }),
    );
    if (started.ok) {
      // A machine with a real (or software) adapter: then it must have run on it.
      expect(started.m.provider).toBe("webgpu");
      await b.close();
      return;
    }
    expect(started.err).toBeInstanceOf(ProviderUnavailableError);
    expect(String(started.err)).toMatch(/--ort-provider webgpu failed to start: /);
  });

  it("auto falls back to the CPU when a GPU provider that looked available fails to start", async () => {
    const claimed = { ...NONE, vulkanLoader: true, vulkanDrivers: [NVIDIA] };
    let tried: string[] = [];
    const b = backendWith({
      provider: "auto",
      survey: claimed,
      openSession: async (p) => {
        tried = [...tried, p];
        if (p !== "cpu") throw new Error("Failed to get a WebGPU adapter: No supported adapters");
        return ort.InferenceSession.create(modelPath, {
          executionProviders: ["cpu"],
          intraOpNumThreads: 1,
        });
      },
    });
    expect((await b.start()).provider).toBe("cpu");
    expect(tried).toEqual(["webgpu", "cpu"]);
    await b.close();
  });
});

/** A "GPU" session: a real CPU session whose runs we can make fail or hang. */
function breakableGpu() {
  const state = { mode: "ok" as "ok" | "throw" | "hang" | "nan", opened: 0, refuseOpen: false };
  const open = async () => {
    if (state.refuseOpen) throw new Error("device lost");
    state.opened++;
    const real = await ort.InferenceSession.create(modelPath, {
      executionProviders: ["cpu"],
      intraOpNumThreads: 1,
    });
    return new Proxy(real, {
      get(target, prop, receiver) {
        if (prop !== "run") return Reflect.get(target, prop, receiver);
        return async (...args: Parameters<ort.InferenceSession["run"]>) => {
          if (state.mode === "throw")
            throw new Error("GPU device lost (D3D12/Vulkan: device removed)");
          if (state.mode === "hang") return new Promise(() => {});
          const out = await target.run(...args);
          if (state.mode === "nan") (Object.values(out)[0]!.data as Float32Array)[3] = Number.NaN;
          return out;
        };
      },
    });
  };
  return { state, open };
}

describe("a GPU that fails mid-run", () => {
  const gpuSurvey: ProviderSurvey = {
    ...NONE,
    vulkanLoader: true,
    vulkanDrivers: [NVIDIA],
    nvidiaGpus: ["NVIDIA H100 80GB HBM3"],
  };

  it.each(["throw", "hang", "nan"] as const)(
    "(%s): its calls fail, the node is not ready, then it recovers",
    async (mode) => {
      const gpu = breakableGpu();
      const b = backendWith({
        provider: "webgpu",
        survey: gpuSurvey,
        runTimeoutMs: 300,
        openSession: gpu.open,
      });
      const model = await b.start();
      expect(model).toMatchObject({
        provider: "webgpu",
        device: "NVIDIA H100 80GB HBM3 (Vulkan)",
        maxBatchSize: 256,
      });
      const good = await b.infer(batch(1));
      gpu.state.mode = mode;
      await expect(b.infer(batch(1))).rejects.toThrow();
      expect(await b.ready()).toBe(false);
      expect(b.notReadyReason?.()).toMatch(/webgpu device failed/);
      gpu.state.mode = "ok";
      // Recovery opens a fresh session in the background; wait for readiness to come back.
      await until(() => b.ready(), { timeoutMs: 5000 }).catch(() => {});
      expect(await b.ready()).toBe(true);
      expect(gpu.state.opened).toBe(2);
      expect(Array.from(await b.infer(batch(1)))).toEqual(Array.from(good));
      await b.close();
    },
  );

  it("exits through onFatal when the device does not come back", async () => {
    const gpu = breakableGpu();
    let fatal: Error | undefined;
    const died = new Promise<void>((done) => {
      void (async () => {
        const b = backendWith({
          provider: "webgpu",
          survey: gpuSurvey,
          openSession: gpu.open,
          onFatal: (err) => {
            fatal = err;
            done();
          },
        });
        await b.start();
        gpu.state.mode = "throw";
        gpu.state.refuseOpen = true;
        await b.infer(batch(1)).catch(() => {});
      })();
    });
    await died;
    expect(fatal?.message).toMatch(/webgpu device is lost and did not come back: device lost/);
  });
});
