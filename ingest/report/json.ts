/** The groups and how they were found in; the JSON report out: a top-level `groups` list, each with its files' paths and their similarity to the first. */
import type { Group } from "../duplicates/groups.ts";
import type { Recall } from "../duplicates/neighbours.ts";
import type { Model } from "../store.ts";

export interface Report {
  readonly model: Model | null;
  readonly threshold: number;
  readonly vectors: number;
  readonly index: "exact" | "hnsw";
  readonly recall: Recall | null;
  readonly groups: readonly Group[];
}

export function toJson(report: Report): string {
  return `${JSON.stringify(
    {
      groups: report.groups,
      model: report.model,
      threshold: report.threshold,
      vectors: report.vectors,
      index: { kind: report.index, recall: report.recall },
    },
    null,
    2,
  )}\n`;
}
