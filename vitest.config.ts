import { defineConfig } from "vitest/config";

// One project per runtime. The edge's workerd project joins when the edge exists.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "node",
          environment: "node",
          include: ["gpu-node/**/*.test.ts", "test/**/*.test.ts"],
          exclude: ["test/bench/**"],
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
