/** Vitest globalSetup (Node) for the workerd tests: provides the hostile files and the fuzzer's seed corpus and settings, base64, as `inject("hostile")` and `inject("fuzz")`. */
import type { TestProject } from "vitest/node";
import { formatFuzzSources, fuzzSettings, fuzzSources } from "./fuzz-sources.ts";
import { type HostileFileJson, hostileFiles, toJson } from "./hostile.ts";

export interface FuzzFixture {
  readonly iterations: number;
  readonly seed: number;
  /** The fuzz test's timeout, from the iterations (fuzzTimeoutMs). */
  readonly timeoutMs: number;
  readonly sources: { readonly name: string; readonly base64: string }[];
  /** HEIC, PNG and WebP seeds for the RESIZER=wasm pass. */
  readonly formatSources: { readonly name: string; readonly base64: string }[];
}

declare module "vitest" {
  export interface ProvidedContext {
    hostile: HostileFileJson[];
    fuzz: FuzzFixture;
  }
}

export default async function setup(project: TestProject): Promise<void> {
  const [files, sources, formatSources] = await Promise.all([
    hostileFiles(),
    fuzzSources(),
    formatFuzzSources(),
  ]);
  project.provide("hostile", files.map(toJson));
  project.provide("fuzz", {
    ...fuzzSettings(),
    sources: sources.map((s) => ({ name: s.name, base64: s.bytes.toString("base64") })),
    formatSources: formatSources.map((s) => ({ name: s.name, base64: s.bytes.toString("base64") })),
  });
}
