/**
 * Test child: starts the onnxruntime backend with a provider in a process of its own (the Vulkan
 * environment — loader path, driver manifest — must be set before ONNX Runtime loads), runs one
 * batch of eight images, prints one JSON line: the provider and device it got, the rows, or the
 * error. Usage: node ort-probe.ts MODEL PROVIDER [IMAGES], IMAGES a file of packed 224x224x3
 * uint8 images to run instead of the eight generated ones.
 */

import { readFileSync } from "node:fs";

import type { OrtProvider } from "../../config.ts";
import { IMAGE_BYTES } from "../backend.ts";
import { createOnnxRuntimeBackend } from "../onnxruntime.ts";

const [modelPath, provider, imagesPath] = process.argv.slice(2) as [
  string,
  OrtProvider,
  string | undefined,
];
let data: Uint8Array;
if (imagesPath === undefined) {
  data = new Uint8Array(8 * IMAGE_BYTES);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
} else {
  data = new Uint8Array(readFileSync(imagesPath));
}
const count = data.length / IMAGE_BYTES;
const backend = createOnnxRuntimeBackend({
  modelPath,
  name: "probe",
  version: "0",
  threads: 1,
  provider,
});
try {
  const model = await backend.start();
  const rows = await backend.infer({ layout: "uint8-nhwc", data, count });
  process.stdout.write(
    `${JSON.stringify({ provider: model.provider, device: model.device, rows: Array.from(rows) })}\n`,
  );
  await backend.close();
} catch (err) {
  process.stdout.write(
    `${JSON.stringify({ error: err instanceof Error ? err.message : String(err) })}\n`,
  );
}
