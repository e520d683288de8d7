/** Writes one end-to-end benchmark run as report.json, report.md and chart.svg into its folder. */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { toJson } from "../../support/report.ts";
import type { Row } from "../e2e/measure.ts";
import type { Plan } from "../e2e/plan.ts";
import type { TargetContext, TargetResult } from "../e2e/targets.ts";
import type { LinkProfile, ProfileName } from "../wan/profiles.ts";
import { toMarkdown } from "./markdown.ts";
import { toSvg } from "./svg.ts";

export interface InputSummary {
  readonly name: string;
  readonly description: string;
  readonly count: number;
  readonly meanBytes: number;
  readonly minBytes: number;
  readonly maxBytes: number;
}

export interface Report {
  readonly run: string;
  readonly env: {
    readonly node: string;
    readonly wrangler: string;
    readonly sharp: string;
    readonly onnxruntimeNode: string;
    readonly connectNode: string;
    readonly cpus: number;
    readonly cpuModel: string;
    readonly loadavgAtStart: readonly number[];
    readonly loadavgAtEnd: readonly number[];
    readonly mode: string;
    readonly date: string;
    readonly wallS: number;
    /** RESIZER of the two Workers under wrangler dev. */
    readonly workerResizer: string;
  };
  readonly plan: Plan;
  readonly profiles: Readonly<Record<ProfileName, LinkProfile>>;
  readonly inputs: readonly InputSummary[];
  readonly context: TargetContext;
  readonly rows: readonly Row[];
  readonly targets: readonly TargetResult[];
}

export async function writeReport(
  dir: string,
  report: Report,
): Promise<{ markdown: string; paths: string[] }> {
  const markdown = toMarkdown(report, "chart.svg");
  const paths = [join(dir, "report.json"), join(dir, "report.md"), join(dir, "chart.svg")];
  await writeFile(paths[0]!, toJson(report));
  await writeFile(paths[1]!, markdown);
  await writeFile(paths[2]!, toSvg(report));
  return { markdown, paths };
}
