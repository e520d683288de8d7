import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { EDGE_SETTINGS } from "../edge/config.ts";
import { SETTINGS } from "../gpu-node/config.ts";
import { readSources, renderConfiguration } from "./generate-config.ts";

describe("docs/configuration.md generator", () => {
  const text = renderConfiguration(readSources());

  it("documents every gpu-node setting: flag, env var and help", () => {
    for (const s of Object.values(SETTINGS)) {
      const row = text.split("\n").find((l) => l.startsWith(`| \`--${s.flag}\``));
      expect(row, s.flag).toBeDefined();
      expect(row).toContain(`\`${s.env}\``);
      expect(row).toContain(s.help.replaceAll("|", "\\|"));
    }
  });

  it("documents every edge setting with its default", () => {
    for (const [name, [fallback]] of Object.entries(EDGE_SETTINGS)) {
      const row = text.split("\n").find((l) => l.startsWith(`| \`${name}\` |`));
      expect(row, name).toBeDefined();
      if (fallback !== "") expect(row).toContain(`\`${fallback}\``);
    }
  });

  it("lists the secrets of .dev.vars.example and the bindings of wrangler.toml", () => {
    for (const name of ["API_KEY_HASHES", "GPU_NODE_TOKEN", "IMAGES", "ANALYTICS"]) {
      expect(text).toContain(`| \`${name}\` |`);
    }
  });

  it("refuses a variable that no settings table knows", () => {
    const sources = readSources();
    expect(() =>
      renderConfiguration({
        ...sources,
        devVarsExample: `${sources.devVarsExample}\nNOT_A_SETTING=1\n`,
      }),
    ).toThrow(/NOT_A_SETTING/);
  });

  it("matches the committed docs/configuration.md", () => {
    expect(readFileSync(join(import.meta.dirname, "configuration.md"), "utf8")).toBe(text);
  });
});
