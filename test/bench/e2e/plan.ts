/** What the end-to-end benchmark runs in full and in quick mode: which backend, link profile, input and variant combinations, with how many calls. Chosen to fit this 2-core machine: full < 10 min, quick < 1 min. */
import type { ProfileName } from "../wan/profiles.ts";
import type { InputName } from "./inputs.ts";
import type { BackendName, VariantId } from "./measure.ts";

export interface Runs {
  readonly warmupCalls: number;
  readonly calls: number;
}

export interface Scenario {
  readonly backend: BackendName;
  readonly profile: ProfileName;
  readonly input: InputName;
  readonly variants: readonly VariantId[];
  /** Single-image calls (the seed's first table; also the batch-1 row). */
  readonly single: Runs;
  /** Batch sizes above 1 (the seed's second table), and their calls. */
  readonly batches?: readonly number[];
  readonly batchRuns?: Runs;
  /** Per-variant exceptions (slow links make some rows cost tens of seconds). */
  readonly override?: Partial<
    Record<VariantId, { single?: Runs; batches?: readonly number[]; batchRuns?: Runs }>
  >;
}

export interface Plan {
  readonly mode: "full" | "quick";
  readonly seedImages: number;
  readonly phonePhotos: number;
  readonly scenarios: readonly Scenario[];
}

const ALL: readonly VariantId[] = ["edge", "no-edge", "triton"];
const SEED_TABLE: Runs = { warmupCalls: 3, calls: 30 };
const BATCHES = [4, 8, 16, 32] as const;

/**
 * The seed's own workload (vit-tiny, as on a GPU) through the Worker (under wrangler dev, and its
 * production bundle on workerd) and the Node edge.
 */
function seedWorkload(
  profile: ProfileName,
  single: Runs,
  batches: readonly number[],
  batchRuns: Runs,
): Scenario {
  return {
    backend: "vit-tiny",
    profile,
    input: "seed-png",
    variants: ["edge", "worker", "node-edge"],
    single,
    batches,
    batchRuns,
  };
}

export const FULL: Plan = {
  mode: "full",
  seedImages: 32,
  phonePhotos: 3,
  scenarios: [
    // The seed's own benchmark (random-noise PNGs as base64 JSON, a new connection per call)
    // over its link and on loopback: the targets.
    ...(["seed", "loopback"] as const).map((profile) =>
      seedWorkload(profile, SEED_TABLE, BATCHES, { warmupCalls: 1, calls: 5 }),
    ),
    // The earlier targets' scenario: vit-tiny (compute negligible, as on a GPU), the seed's link.
    {
      backend: "vit-tiny",
      profile: "seed",
      input: "seed-224",
      variants: ALL,
      single: SEED_TABLE,
      batches: BATCHES,
      batchRuns: { warmupCalls: 1, calls: 5 },
    },
    {
      backend: "vit-tiny",
      profile: "seed",
      input: "phone-12mp",
      variants: ALL,
      single: { warmupCalls: 1, calls: 10 },
    },
    {
      backend: "vit-tiny",
      profile: "seed",
      input: "phone-real",
      variants: ALL,
      single: { warmupCalls: 1, calls: 10 },
    },
    {
      backend: "vit-tiny",
      profile: "mobile",
      input: "seed-224",
      variants: ALL,
      single: SEED_TABLE,
      batches: BATCHES,
      batchRuns: { warmupCalls: 1, calls: 3 },
      // 602 KB per image at 5 Mbit/s is ~1 s a call: fewer calls, batch 4 only.
      override: {
        triton: {
          single: { warmupCalls: 1, calls: 10 },
          batches: [4],
          batchRuns: { warmupCalls: 0, calls: 2 },
        },
      },
    },
    {
      backend: "vit-tiny",
      profile: "mobile",
      input: "phone-12mp",
      variants: ALL,
      // A 4 MB photo takes ~7 s up a 5 Mbit/s link.
      single: { warmupCalls: 1, calls: 2 },
      override: { triton: { single: { warmupCalls: 1, calls: 5 } } },
    },
    {
      backend: "vit-tiny",
      profile: "mobile",
      input: "phone-real",
      variants: ALL,
      single: { warmupCalls: 1, calls: 5 },
    },
    {
      backend: "vit-tiny",
      profile: "loopback",
      input: "seed-224",
      variants: ALL,
      single: SEED_TABLE,
      batches: BATCHES,
      batchRuns: { warmupCalls: 1, calls: 5 },
    },
    {
      backend: "vit-tiny",
      profile: "loopback",
      input: "phone-12mp",
      variants: ALL,
      single: { warmupCalls: 1, calls: 6 },
    },
    // vit-b32 on the CPU: real model compute on this machine's 2 cores.
    {
      backend: "vit-b32",
      profile: "seed",
      input: "seed-224",
      variants: ALL,
      single: SEED_TABLE,
      batches: BATCHES,
      // A batch of 32 takes 1-2 s of CPU (more when the machine is shared): 2 calls each.
      batchRuns: { warmupCalls: 1, calls: 2 },
    },
  ],
};

export const QUICK: Plan = {
  mode: "quick",
  seedImages: 32,
  phonePhotos: 2,
  scenarios: [
    ...(["seed", "loopback"] as const).map((profile) =>
      seedWorkload(profile, { warmupCalls: 2, calls: 10 }, [32], { warmupCalls: 1, calls: 2 }),
    ),
    {
      backend: "vit-tiny",
      profile: "seed",
      input: "seed-224",
      variants: ALL,
      single: { warmupCalls: 2, calls: 10 },
      batches: [32],
      batchRuns: { warmupCalls: 1, calls: 2 },
    },
    {
      backend: "vit-tiny",
      profile: "seed",
      input: "phone-12mp",
      variants: ALL,
      single: { warmupCalls: 1, calls: 2 },
    },
  ],
};
