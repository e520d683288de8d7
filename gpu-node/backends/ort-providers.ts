/**
 * Which ONNX Runtime execution provider the embedded backend can use on this machine: looks for
 * the CUDA provider's library, the Vulkan loader and the Vulkan drivers (ICDs) that WebGPU (Dawn)
 * would run on, and says in words what is missing and how to get it.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";

export type GpuProvider = "webgpu" | "cuda";
export type ProviderName = "cpu" | GpuProvider;

/** A Vulkan driver manifest (ICD) and whether it drives real hardware. */
export interface VulkanDriver {
  readonly manifest: string;
  readonly library: string;
  /** lavapipe, llvmpipe or SwiftShader: Vulkan on the CPU, slower than ONNX Runtime's CPU provider. */
  readonly software: boolean;
}

/** What this machine offers ONNX Runtime, read from files (no GPU call). */
export interface ProviderSurvey {
  /** The CUDA provider's library, when onnxruntime-node's install script fetched it. */
  readonly cudaLibrary: string | undefined;
  /** Whether libvulkan.so.1 (the loader Dawn opens) can be loaded. */
  readonly vulkanLoader: boolean;
  readonly vulkanDrivers: readonly VulkanDriver[];
  /** The NVIDIA GPUs the kernel driver lists (their model names), for logs and /readyz. */
  readonly nvidiaGpus: readonly string[];
}

const SOFTWARE_ICD = /lvp|lavapipe|llvmpipe|swiftshader|swrast/i;

/** The folder that holds onnxruntime-node's native files (its binding and provider libraries). */
function ortBinaryDir(): string | undefined {
  try {
    const pkg = createRequire(import.meta.url).resolve("onnxruntime-node/package.json");
    const dir = join(dirname(pkg), "bin", "napi-v6", process.platform, process.arch);
    return existsSync(dir) ? dir : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether the dynamic loader finds `library`. process.dlopen loads any shared object; one that
 * is not a Node addon then fails to register, which proves it was found.
 */
export function canLoadLibrary(library: string): boolean {
  try {
    process.dlopen({ exports: {} } as NodeJS.Module, library);
    return true;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    return !/cannot open shared object|no such file|not found/i.test(message);
  }
}

/** Manifests named by VK_DRIVER_FILES / VK_ICD_FILENAMES, else the loader's standard folders. */
function driverManifests(env: Readonly<Record<string, string | undefined>>): string[] {
  const listed = env.VK_DRIVER_FILES ?? env.VK_ICD_FILENAMES;
  if (listed) return listed.split(":").filter((p) => p !== "");
  const dirs = [
    ...(env.XDG_CONFIG_DIRS ?? "/etc/xdg").split(":").map((d) => join(d, "vulkan/icd.d")),
    "/etc/vulkan/icd.d",
    ...(env.XDG_DATA_DIRS ?? "/usr/local/share:/usr/share")
      .split(":")
      .map((d) => join(d, "vulkan/icd.d")),
    // The NVIDIA container toolkit mounts its driver's files here.
    "/usr/local/nvidia/share/vulkan/icd.d",
  ];
  const found: string[] = [];
  for (const dir of dirs) {
    try {
      for (const f of readdirSync(dir)) if (f.endsWith(".json")) found.push(join(dir, f));
    } catch {
      // an absent folder is the common case
    }
  }
  return [...new Set(found)];
}

function readDriver(manifest: string): VulkanDriver | undefined {
  try {
    const json = JSON.parse(readFileSync(manifest, "utf8")) as { ICD?: { library_path?: string } };
    const library = json.ICD?.library_path ?? "";
    const software = SOFTWARE_ICD.test(basename(library)) || SOFTWARE_ICD.test(basename(manifest));
    return { manifest, library, software };
  } catch {
    return undefined;
  }
}

function nvidiaGpus(): string[] {
  const root = "/proc/driver/nvidia/gpus";
  try {
    return readdirSync(root).flatMap((bus) => {
      const info = readFileSync(join(root, bus, "information"), "utf8");
      const model = /^Model:\s*(.+)$/m.exec(info)?.[1]?.trim();
      return model ? [model] : [];
    });
  } catch {
    return [];
  }
}

export function surveyProviders(
  env: Readonly<Record<string, string | undefined>> = process.env,
): ProviderSurvey {
  const dir = ortBinaryDir();
  const cuda = dir ? join(dir, "libonnxruntime_providers_cuda.so") : undefined;
  return {
    cudaLibrary: cuda && existsSync(cuda) ? cuda : undefined,
    vulkanLoader: canLoadLibrary("libvulkan.so.1"),
    vulkanDrivers: driverManifests(env).flatMap((m) => readDriver(m) ?? []),
    nvidiaGpus: nvidiaGpus(),
  };
}

/** The providers `auto` tries, best first; cpu always ends the list. */
export function autoCandidates(survey: ProviderSurvey): ProviderName[] {
  const out: ProviderName[] = [];
  if (survey.cudaLibrary) out.push("cuda");
  // A software Vulkan driver gives Dawn an adapter too, one far slower than the CPU provider:
  // auto takes WebGPU only where a hardware driver is installed.
  if (survey.vulkanLoader && survey.vulkanDrivers.some((d) => !d.software)) out.push("webgpu");
  out.push("cpu");
  return out;
}

/** Why `provider` cannot run here before trying it, with what to install; undefined if it may. */
export function missingFor(provider: GpuProvider, survey: ProviderSurvey): string | undefined {
  if (provider === "cuda" && !survey.cudaLibrary) {
    return (
      "ONNX Runtime's CUDA provider is not installed: onnxruntime-node fetches it at install time " +
      "where internet is available (ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci, or the Dockerfile's " +
      "ONNXRUNTIME_NODE_INSTALL build argument); it also needs the CUDA 12 and cuDNN 9 libraries"
    );
  }
  if (provider === "webgpu" && !survey.vulkanLoader) {
    return (
      "no Vulkan loader (libvulkan.so.1): ONNX Runtime's WebGPU provider runs on Vulkan. Install " +
      "Debian's libvulkan1 (or your distribution's Vulkan loader); in a container the NVIDIA " +
      "runtime must also mount the driver's Vulkan files (NVIDIA_DRIVER_CAPABILITIES including graphics)"
    );
  }
  if (provider === "webgpu" && survey.vulkanDrivers.length === 0) {
    return (
      "no Vulkan driver (ICD manifest) found: install the GPU driver's Vulkan part (NVIDIA: the " +
      "driver's nvidia_icd.json; in a container NVIDIA_DRIVER_CAPABILITIES must include graphics), " +
      "or point VK_DRIVER_FILES at its manifest"
    );
  }
  return undefined;
}

/** What the device is called, for logs, GetModelInfo and /readyz. */
export function deviceName(provider: ProviderName, survey: ProviderSurvey): string {
  if (provider === "cpu") return "cpu";
  if (provider === "cuda") return survey.nvidiaGpus[0] ?? "CUDA device 0";
  const hardware = survey.vulkanDrivers.filter((d) => !d.software);
  if (hardware.length > 0) {
    const nvidia = hardware.some((d) => /nvidia/i.test(d.library) || /nvidia/i.test(d.manifest));
    if (nvidia && survey.nvidiaGpus[0]) return `${survey.nvidiaGpus[0]} (Vulkan)`;
    return `Vulkan: ${basename(hardware[0]!.library) || basename(hardware[0]!.manifest)}`;
  }
  const soft = survey.vulkanDrivers[0];
  return soft ? `software Vulkan: ${basename(soft.library)}` : "unknown";
}
