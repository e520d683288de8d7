import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// One project per runtime: Node (gpu-node, end-to-end, the edge's Node-only files in edge/node/,
// *.node.test.ts, the docs generator) and workerd (the edge Worker with the real wrangler.toml,
// and the portable imaging core).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "node",
          environment: "node",
          include: [
            "gpu-node/**/*.test.ts",
            "test/**/*.test.ts",
            "edge/node/**/*.test.ts",
            "edge/**/*.node.test.ts",
            "imaging/**/*.node.test.ts",
            "docs/**/*.test.ts",
            "ingest/**/*.test.ts",
          ],
          exclude: ["test/bench/**"],
          testTimeout: 60_000,
          hookTimeout: 180_000,
        },
      },
      {
        plugins: [cloudflareTest({ wrangler: { configPath: "./wrangler.toml" } })],
        test: {
          name: "workers",
          globalSetup: [
            "./test/support/edge-fixtures.setup.ts",
            "./test/support/hostile-fixtures.setup.ts",
          ],
          include: ["edge/**/*.test.ts", "imaging/**/*.test.ts"],
          exclude: ["edge/node/**", "edge/**/*.node.test.ts", "imaging/**/*.node.test.ts"],
          testTimeout: 30_000,
        },
      },
    ],
  },
});
