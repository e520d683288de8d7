/**
 * A one-process gpu-node whose decoder returns the same 224x224 pixels without reading the file
 * (`bench:gpu-host --stub-decoder`). What is left of the CPU per image is what a call costs —
 * HTTP, Connect, protobuf, the interceptors, admission, the micro-batcher, metrics — plus the
 * no-op backend, so the bench can show the call's share apart from decoding. Takes the gpu-node's
 * own flags and environment; not for serving.
 */
import { IMAGE_BYTES } from "../../gpu-node/backends/backend.ts";
import { parseConfig } from "../../gpu-node/config.ts";
import { startGpuNode } from "../../gpu-node/node.ts";

const config = parseConfig(process.argv.slice(2), process.env);
// The decoder override cannot cross into cluster workers.
if (config.processes !== 1) throw new Error("--stub-decoder runs one process only");
// Mid-grey: the no-op backend's vectors stay well defined.
const pixels = new Uint8Array(IMAGE_BYTES).fill(128);
const node = await startGpuNode(config, { decode: async () => ({ pixels }) });
const stop = () => void node.close().then(() => process.exit(0));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
