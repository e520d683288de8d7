/** CLI: generate a seeded ViT ONNX model. Prints its path, size, SHA-256 and the time taken. */

import { stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { generateVitModel } from "./generate.ts";
import { ensureModel, sha256File, writeFileAtomic } from "./model-cache.ts";
import {
  builtInModelName,
  isPrecision,
  isVitConfigName,
  PRECISIONS,
  VIT_CONFIGS,
} from "./vit-config.ts";

const USAGE = `usage: generate-model.ts <${Object.keys(VIT_CONFIGS).join("|")}> [options]
  --out PATH        write exactly there (replaced if present)
  --cache-dir DIR   otherwise: generate into DIR/models/<model>-seed<seed>.onnx if missing
                    (default: the repository's .cache); <model> is the config, with
                    -fp16 for --precision fp16 (the name the gpu-node's --model takes)
  --seed N          weight seed (default 0)
  --precision P     ${PRECISIONS.join(" | ")} (default fp32, the reference): fp16 computes the
                    transformer body in half with the same weights rounded to half; input
                    (UINT8) and output (FLOAT) stay as they are
  --no-calibrate    skip the centring step (only with --out)`;

const DEFAULT_CACHE_DIR = fileURLToPath(new URL("../../.cache", import.meta.url));

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      out: { type: "string" },
      "cache-dir": { type: "string" },
      seed: { type: "string" },
      precision: { type: "string" },
      "no-calibrate": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  const config = positionals[0];
  if (values.help || positionals.length !== 1 || config === undefined) {
    console.log(USAGE);
    process.exitCode = values.help ? 0 : 2;
    return;
  }
  if (!isVitConfigName(config)) throw new Error(`unknown config ${config}\n${USAGE}`);
  const seed = values.seed === undefined ? undefined : Number(values.seed);
  const precision = values.precision ?? "fp32";
  if (!isPrecision(precision)) throw new Error(`unknown precision ${precision}\n${USAGE}`);
  if (values["no-calibrate"] && values.out === undefined) {
    // The cache must only ever hold the calibrated models its callers expect.
    throw new Error("--no-calibrate needs --out");
  }

  const started = performance.now();
  let path: string;
  let sha256: string;
  if (values.out !== undefined) {
    const bytes = await generateVitModel(config, {
      ...(seed === undefined ? {} : { seed }),
      calibrate: !values["no-calibrate"],
      precision,
    });
    path = values.out;
    await writeFileAtomic(path, bytes);
    sha256 = await sha256File(path);
  } else {
    const name = builtInModelName({ config, precision });
    const model = await ensureModel(name, values["cache-dir"] ?? DEFAULT_CACHE_DIR, {
      ...(seed === undefined ? {} : { seed }),
    });
    ({ path, sha256 } = model);
  }
  const seconds = (performance.now() - started) / 1000;
  const { size } = await stat(path);
  console.log(
    `${path}\n  ${(size / 1e6).toFixed(1)} MB (${size} bytes), sha256 ${sha256}, ${seconds.toFixed(2)} s`,
  );
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
