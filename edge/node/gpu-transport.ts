/** The Node edge's Connect transport to a gpu-node: connect-node over node:http(s), HTTP/1.1, binary protobuf. Per call it cost ~0.5 ms and ~0.3 ms of CPU less than connect-web over Node's built-in fetch: 150 one-image Embed calls on loopback, p50 3.0–3.8 vs 3.4–4.7 ms. */
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";

export function nodeGpuTransport(baseUrl: string): Transport {
  return createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true });
}
