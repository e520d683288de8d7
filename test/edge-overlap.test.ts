// The Worker's gpu-node calls go out while the request's later images are still resizing, in
// workerd itself (wrangler's startWorker): workerd polls its sockets only on a timer that has to
// wait, so resizes separated by free turns held every call back until the last one
// (edge/event-loop.ts). A stand-in gpu-node over real HTTP records when each call arrives.
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStandIn } from "../edge/testing/gpu-stand-in.ts";
import { type EdgeWorker, startEdge } from "./support/edge-worker.ts";
import { seedNoisePng } from "./support/images.ts";
import { type StandInServer, serveStandIn } from "./support/stand-in-server.ts";

const KEY = "overlap-key";
const IMAGES = 32;
const PER_CALL = 8;

let gpu: StandInServer;
let edge: EdgeWorker;

beforeAll(async () => {
  gpu = await serveStandIn(createStandIn());
  edge = await startEdge({
    GPU_NODE_URLS: gpu.url,
    GPU_NODE_TOKEN: "overlap-token",
    API_KEY_HASHES: createHash("sha256").update(KEY).digest("hex"),
    RESIZER: "wasm",
    GPU_CALL_MAX_IMAGES: String(PER_CALL),
  });
}, 120_000);

afterAll(async () => {
  await edge?.dispose();
  await gpu?.close();
});

describe("the Worker sends each gpu-node call while later images resize", () => {
  it("spreads a 32-image request's four calls over its resize stage", async () => {
    // The seed's own images: 224x224 noise PNGs, ~2 ms of in-Worker resize each.
    const pngs = await Promise.all(Array.from({ length: IMAGES }, (_, i) => seedNoisePng(i + 1)));
    const res = await fetch(`${edge.url}/embed/base64`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ images: pngs.map((p) => p.toString("base64")) }),
    });
    const body = (await res.json()) as { count: number };
    expect(res.status).toBe(200);
    expect(body.count).toBe(IMAGES);
    expect(gpu.embedArrivals).toHaveLength(IMAGES / PER_CALL);
    const resizeMs = Number(
      /(?:^|,)\s*resize;dur=([\d.]+)/.exec(res.headers.get("server-timing")!)![1],
    );
    // Sent as their images are ready, the calls arrive over the last 3/4 of the resize stage
    // (measured 0.53–0.73 of it, with a busy loop on one core too); held back, within 0.18–0.32
    // of it (the PNGs' inflate streams give workerd a few polls of their own).
    const arrivals = gpu.embedArrivals;
    const spread = arrivals.at(-1)! - arrivals[0]!;
    expect(
      spread,
      `calls arrived over ${spread.toFixed(1)} ms of a ${resizeMs} ms resize`,
    ).toBeGreaterThan(resizeMs * 0.4);
  });
});
