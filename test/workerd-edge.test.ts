// The benchmark's Worker as deployed (test/bench/e2e/workerd-child.ts): the bundle `wrangler
// deploy` would upload, served by workerd itself from a generated config. The targets of issue 15
// are read on it, so it must be the project's Worker with the project's settings: it embeds a
// seed image through a gpu-node stand-in over real HTTP, wrangler.toml's vars are bound, and the
// caller's vars win over them.
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStandIn } from "../edge/testing/gpu-stand-in.ts";
import { type EdgeDev, startWorkerdEdge } from "./bench/e2e/stack.ts";
import { seedNoisePng } from "./support/images.ts";
import { type StandInServer, serveStandIn } from "./support/stand-in-server.ts";

const KEY = "workerd-key";
const cacheDir = mkdtempSync(join(tmpdir(), "workerd-edge-"));
let gpu: StandInServer;
let edge: EdgeDev;

beforeAll(async () => {
  gpu = await serveStandIn(createStandIn());
  edge = await startWorkerdEdge(
    {
      GPU_NODE_URLS: gpu.url,
      GPU_NODE_TOKEN: "workerd-token",
      API_KEY_HASHES: createHash("sha256").update(KEY).digest("hex"),
      RESIZER: "wasm",
      MAX_IMAGES_PER_REQUEST: "2",
    },
    cacheDir,
  );
}, 120_000);

afterAll(async () => {
  await edge?.stop();
  await gpu?.close();
  rmSync(cacheDir, { recursive: true, force: true });
});

const post = (images: readonly Buffer[]) =>
  fetch(`${edge.url}/embed/base64`, {
    method: "POST",
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ images: images.map((i) => i.toString("base64")) }),
  });

describe("the Worker's production bundle on workerd", () => {
  it("embeds the seed's image through the gpu-node, with its stage times", async () => {
    const res = await post([await seedNoisePng(1)]);
    const body = (await res.json()) as { count: number; embeddings: number[][] };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.count).toBe(1);
    expect(body.embeddings[0]).toHaveLength(512);
    expect(res.headers.get("server-timing")).toMatch(/(?:^|,)\s*gpu;dur=/);
    expect(gpu.embedArrivals.length).toBeGreaterThanOrEqual(1);
  });

  it("takes the caller's settings over wrangler.toml's", async () => {
    // wrangler.toml allows 32 images a request; the caller set 2.
    const res = await post(await Promise.all([2, 3, 4].map(seedNoisePng)));
    expect(res.status).toBe(413);
    const config = readFileSync(join(cacheDir, "bench/edge/workerd/config.capnp"), "utf8");
    expect(config).toContain('(name = "MAX_IMAGES_PER_REQUEST", text = "2")');
    // A var only wrangler.toml sets.
    expect(config).toContain('(name = "MODEL_NAME", text = "openclip-vit-b32")');
  });

  it("answers a no-op request", async () => {
    const res = await fetch(`${edge.url}/healthz`);
    expect(res.status).toBe(200);
  });
});
