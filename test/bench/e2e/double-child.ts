/**
 * Runs the KServe v2 test double (test/support/kserve-double.ts) as the benchmark's Triton, with
 * one change to its HTTP/2 transport: each session's connection-level flow-control window is
 * opened to 16 MiB.
 *
 * Why: Node's http2 keeps the connection window at the protocol's default 64 KiB (refilled when
 * half is used), so over an emulated 14 ms RTT a client can move only ~32 KiB per round trip
 * (~19 Mbit/s): 602 KB took 245 ms and a 19.3 MB batch 8 s here. Triton's gRPC server (gRPC
 * C-core) grows its windows by BDP probing, and the seed's own Triton figure (19.3 MB per batch at
 * 32.3 img/s) shows its link was not window-bound. Without this, variant (3) would be measured
 * against a flow-control artefact of the double rather than against the link.
 *
 *   node test/bench/e2e/double-child.ts --port 0 --threads 2 --model name=…,path=…,layout=float32-nchw
 * prints {"port": N} once listening (like the double's own CLI).
 */
import http2 from "node:http2";
import { syncBuiltinESMExports } from "node:module";

const WINDOW = 16 * 1024 * 1024;

const original = http2.createServer;
http2.createServer = ((...args: Parameters<typeof original>) => {
  const server = original(...args);
  server.on("session", (session) => session.setLocalWindowSize(WINDOW));
  return server;
}) as typeof original;
// The double imports createServer as a named binding: make it see the wrapped one.
syncBuiltinESMExports();

const { runKServeDoubleCli } = await import("../../support/kserve-double.ts");
await runKServeDoubleCli(process.argv.slice(2), { connectionWindow: WINDOW });
