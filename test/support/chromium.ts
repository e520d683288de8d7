/** Headless Chromium for tests: finds the system's (Debian's) binary and launches it through playwright-core, which downloads nothing. */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { type Browser, chromium } from "playwright-core";

/** $CHROMIUM or Debian's chromium, when it runs; undefined otherwise. */
export function findChromium(): string | undefined {
  const candidates = [process.env.CHROMIUM, "/usr/bin/chromium", "/usr/lib/chromium/chromium"];
  for (const c of candidates) {
    if (!c || !existsSync(c)) continue;
    const r = spawnSync(c, ["--version"], { timeout: 20_000, encoding: "utf8" });
    if (r.status === 0 && /Chromium|Chrome/.test(r.stdout)) return c;
  }
  return undefined;
}

/** Headless, no sandbox (root in CI), and nothing that talks to the network by itself. Playwright gives it a fresh profile directory. */
export function launchChromium(executablePath: string): Promise<Browser> {
  return chromium.launch({
    executablePath,
    headless: true,
    timeout: 60_000,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
}
