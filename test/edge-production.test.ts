// The production configuration as `wrangler dev --env production` runs it (the real
// wrangler.toml, workerd), and `npm run deploy`'s checks: a deployed Worker ignores custom ports,
// so such gpu-node URLs are refused before deploying and answered with 503 where they slip by.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { productionProblems } from "../edge/node/deploy.ts";
import { startEdge } from "./support/edge-worker.ts";

const ROOT = resolve(import.meta.dirname, "..");
const TOML = readFileSync(resolve(ROOT, "wrangler.toml"), "utf8");
const run = promisify(execFile);

describe("npm run deploy's checks", () => {
  it("pass the shipped [env.production]", () => {
    expect(productionProblems(TOML)).toEqual([]);
  });

  it("refuse a custom port, cleartext http, a missing ENVIRONMENT and bad values", () => {
    // [env.production] is the file's last table: change the last occurrence.
    const swap = (from: string, to: string) => {
      const at = TOML.lastIndexOf(from);
      return TOML.slice(0, at) + to + TOML.slice(at + from.length);
    };
    const url = 'GPU_NODE_URLS = "https://gpu.example.com"';
    expect(productionProblems(swap(url, 'GPU_NODE_URLS = "http://gpu.example.com:50051"'))).toEqual(
      [
        expect.stringMatching(/port 50051: a deployed Worker ignores it and would call port 80/),
        expect.stringMatching(/cleartext http/),
      ],
    );
    expect(
      productionProblems(swap('ENVIRONMENT = "production"', 'ENVIRONMENT = "development"')),
    ).toEqual([expect.stringMatching(/ENVIRONMENT must be "production"/)]);
    expect(productionProblems(swap('JPEG_QUALITY = "80"', 'JPEG_QUALITY = "800"'))).toEqual([
      expect.stringMatching(/JPEG_QUALITY must be an integer/),
    ]);
    expect(productionProblems('name = "x"')).toEqual(["wrangler.toml has no [env.production]"]);
  });

  it("answer --help, and --check passes on the shipped file", async () => {
    const script = resolve(ROOT, "edge/node/deploy.ts");
    expect((await run(process.execPath, [script, "--help"])).stdout).toMatch(
      /^Usage: npm run deploy/,
    );
    expect((await run(process.execPath, [script, "--check"], { cwd: ROOT })).stdout).toMatch(
      /deploy checks passed/,
    );
  });
});

describe("wrangler dev --env production", () => {
  it("answers /readyz 503 with the reason for a local-only gpu-node URL, and embeds nothing", async () => {
    const edge = await startEdge(
      { GPU_NODE_URLS: "http://127.0.0.1:50051", AUTH_DISABLED: "true" },
      { env: "production", logLevel: "none" },
    );
    try {
      const ready = await fetch(`${edge.url}/readyz`);
      expect(ready.status).toBe(503);
      const body = (await ready.json()) as { status: string; problems: string[] };
      expect(body.status).toBe("misconfigured");
      expect(body.problems[0]).toMatch(/port 50051/);
      const res = await fetch(`${edge.url}/v1/embeddings`, {
        method: "POST",
        headers: { "content-type": "image/jpeg" },
        body: new Uint8Array([0xff, 0xd8, 0xff, 0xd9]),
      });
      expect([400, 415, 422, 503]).toContain(res.status);
    } finally {
      await edge.dispose();
    }
  });
});
