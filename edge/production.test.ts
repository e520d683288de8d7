// The edge as a deployed Worker (ENVIRONMENT=production, what [env.production] sets): gpu-node
// URLs that only work under `wrangler dev` (a custom port, which a deployed Worker's fetch
// ignores; cleartext http across the internet) make /readyz answer 503 with the reason and
// embedding calls fail with a clear configuration error, never a call to the wrong port. The
// Cloudflare Access service token reaches the gpu-node when configured.
import { describe, expect, inject, it } from "vitest";
import type { EdgeFixture } from "../test/support/edge-fixtures.setup.ts";
import { gpuNodeUrlProblems, parseEdgeConfig } from "./config.ts";
import { createStandIn } from "./testing/gpu-stand-in.ts";
import { testApp } from "./testing/test-app.ts";

const fixtures = inject("edgeFixtures") as Record<string, EdgeFixture>;
const photo = () => Uint8Array.from(atob(fixtures.photoWithGps!.base64), (c) => c.charCodeAt(0));
const post = () => ({ method: "POST", headers: { "content-type": "image/jpeg" }, body: photo() });

type Body = { status?: string; problems?: string[]; error?: { code: string; message: string } };

describe("gpuNodeUrlProblems", () => {
  it("names a custom port, with the port a deployed Worker would call instead", () => {
    expect(gpuNodeUrlProblems(["http://gpu.example.com:50051"])[0]).toMatch(
      /names port 50051: a deployed Worker ignores it and would call port 80/,
    );
    expect(gpuNodeUrlProblems(["https://gpu.example.com:8443"])[0]).toMatch(/would call port 443/);
  });

  it("refuses cleartext http to a host that is not loopback, and allows https on 443", () => {
    expect(gpuNodeUrlProblems(["http://gpu.example.com"])[0]).toMatch(/cleartext http/);
    expect(gpuNodeUrlProblems(["http://127.0.0.1", "http://localhost", "http://[::1]"])).toEqual(
      [],
    );
    expect(gpuNodeUrlProblems(["https://gpu.example.com", "https://gpu.example.com:443"])).toEqual(
      [],
    );
  });

  it("applies only in production; development keeps wrangler dev's ports", () => {
    const dev = parseEdgeConfig({ GPU_NODE_URLS: "http://127.0.0.1:50051" });
    expect(dev.problems).toEqual([]);
    const prod = parseEdgeConfig({
      GPU_NODE_URLS: "http://127.0.0.1:50051",
      ENVIRONMENT: "production",
    });
    expect(prod.problems).toHaveLength(1);
    expect(() => parseEdgeConfig({ ENVIRONMENT: "staging" })).toThrow(/ENVIRONMENT must be/);
    expect(() => parseEdgeConfig({ CF_ACCESS_CLIENT_ID: "id" })).toThrow(/go together/);
  });
});

describe("a production edge with a local-only gpu-node URL", () => {
  it.each([
    ["a custom port", "https://gpu-0.test:8443", /port 8443/],
    ["cleartext http", "http://gpu-0.test", /cleartext http/],
  ])(
    "(%s): /readyz says why; embeddings fail clearly; the gpu-node is never called",
    async (_, url, why) => {
      const standIn = createStandIn();
      const { request } = await testApp({
        standIns: [standIn],
        vars: { ENVIRONMENT: "production", GPU_NODE_URLS: url },
      });
      const ready = await request("/readyz");
      expect(ready.status).toBe(503);
      const readyBody = (await ready.json()) as Body;
      expect(readyBody.status).toBe("misconfigured");
      expect(readyBody.problems?.[0]).toMatch(why);
      const res = await request("/v1/embeddings", post());
      expect(res.status).toBe(503);
      const body = (await res.json()) as Body;
      expect(body.error?.code).toBe("misconfigured");
      expect(body.error?.message).toMatch(why);
      expect(standIn.calls).toBe(0);
    },
  );

  it("the same URL under development (wrangler dev) is served", async () => {
    const { request } = await testApp({ vars: { GPU_NODE_URLS: "https://gpu-0.test:8443" } });
    expect((await request("/readyz")).status).toBe(200);
  });
});

describe("a production edge behind Cloudflare Access", () => {
  it("sends the service token on every gpu-node call, and serves", async () => {
    const standIn = createStandIn();
    const { request } = await testApp({
      standIns: [standIn],
      vars: {
        ENVIRONMENT: "production",
        GPU_NODE_URLS: "https://gpu-0.test",
        CF_ACCESS_CLIENT_ID: "abc.access",
        CF_ACCESS_CLIENT_SECRET: "s3cret",
      },
    });
    expect((await request("/v1/embeddings", post())).status).toBe(200);
    const sent = standIn.headers.at(-1)!;
    expect(sent.get("cf-access-client-id")).toBe("abc.access");
    expect(sent.get("cf-access-client-secret")).toBe("s3cret");
  });
});
