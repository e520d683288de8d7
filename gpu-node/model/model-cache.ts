/** ensureModel: resolve a model spec to a file on disk, generating built-in ViTs once per cache. */

import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, rename, stat, unlink, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { DEFAULT_SEED, GENERATOR_VERSION, generateVitModel } from "./generate.ts";
import { BUILT_IN_MODEL_NAMES, parseBuiltInModel } from "./vit-config.ts";

export interface ResolvedModel {
  /** Absolute path of the .onnx file. */
  readonly path: string;
  /** The built-in model's name ("vit-b32", "vit-tiny-fp16", ...) or the file's basename. */
  readonly name: string;
  /** Hex SHA-256 of the file's bytes. */
  readonly sha256: string;
}

export interface EnsureModelOptions {
  /** Weight seed for built-in configs. Default 0. */
  readonly seed?: number;
}

/** Where a built-in config's generated file lives in a cache directory. */
export function cachedModelPath(cacheDir: string, name: string, seed = DEFAULT_SEED): string {
  return resolve(cacheDir, "models", `${name}-seed${seed}.onnx`);
}

/**
 * `spec` is a built-in model, "vit-b32", "vit-tiny" or either with "-fp16" (generated into
 * `<cacheDir>/models/` when missing, reused after) or the path of an existing .onnx file (used
 * in place).
 */
export async function ensureModel(
  spec: string,
  cacheDir: string,
  options: EnsureModelOptions = {},
): Promise<ResolvedModel> {
  const builtIn = parseBuiltInModel(spec);
  if (builtIn !== undefined) {
    const seed = options.seed ?? DEFAULT_SEED;
    const path = cachedModelPath(cacheDir, spec, seed);
    if (!(await isFile(path)) || (await producerVersion(path)) !== GENERATOR_VERSION) {
      const { config, precision } = builtIn;
      await writeFileAtomic(path, await generateVitModel(config, { seed, precision }));
    }
    return { path, name: spec, sha256: await sha256File(path) };
  }
  const path = resolve(spec);
  if (!(await isFile(path))) {
    const builtIns = BUILT_IN_MODEL_NAMES.join(", ");
    throw new Error(
      `model "${spec}" not found: not a built-in config (${builtIns}) and no file at ${path}`,
    );
  }
  return { path, name: basename(path), sha256: await sha256File(path) };
}

/**
 * Writes to a unique temporary file beside the target, then renames it over the target:
 * rename is atomic on one filesystem, so a concurrent reader sees no file or the whole file,
 * never half of one. Two processes generating at once both write the same bytes; the last
 * rename wins.
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temp = join(
    dirname(path),
    `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`,
  );
  try {
    await writeFile(temp, bytes, { flag: "wx" });
    await rename(temp, path);
  } catch (error) {
    await unlink(temp).catch(() => {});
    throw error;
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}

/**
 * ModelProto.producer_version of a file we generated, read from its first bytes only:
 * serialiseModel writes the header fields first and the graph (the weights) last. A cached
 * file from an older recipe, or one that is not ours, gives something else and is replaced.
 */
async function producerVersion(path: string): Promise<string | null> {
  const file = await open(path, "r");
  try {
    const head = new Uint8Array(64 * 1024);
    const { bytesRead } = await file.read(head, 0, head.length, 0);
    const reader = new BinaryReader(head.subarray(0, bytesRead));
    while (reader.pos < reader.len) {
      const [field, wireType] = reader.tag();
      if (field === MODEL_PRODUCER_VERSION) return reader.string();
      if (field === MODEL_GRAPH) return null;
      reader.skip(wireType);
    }
    return null;
  } catch {
    return null; // not a protobuf we can read: treat as stale
  } finally {
    await file.close();
  }
}

const MODEL_PRODUCER_VERSION = 3;
const MODEL_GRAPH = 7;

/** Streams the file (a vit-b32 is 351 MB: no need to hold it in memory to hash it). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
  }
  return hash.digest("hex");
}
