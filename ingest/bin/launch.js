#!/usr/bin/env node
// The `photo-ingest` and `photo-duplicates` commands (package.json "bin"). Plain JavaScript so that
// any Node on PATH can start it: it runs the TypeScript entry with the project's own Node 24 (the
// "node" dependency), which strips types, forwarding arguments, signals and the exit status.
import { spawn } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(realpathSync(fileURLToPath(import.meta.url)));
const root = join(here, "..", "..");
const entry = basename(process.argv[1] ?? "").includes("duplicates")
  ? "duplicates.ts"
  : "ingest.ts";
const node24 = join(root, "node_modules", "node", "bin", "node");
const node = existsSync(node24) ? node24 : process.execPath;
const child = spawn(node, [join(root, "ingest", "cli", entry), ...process.argv.slice(2)], {
  stdio: "inherit",
});
// The child gets Ctrl-C from the terminal itself; other signals are passed on.
for (const sig of ["SIGTERM", "SIGHUP"]) process.on(sig, () => child.kill(sig));
process.on("SIGINT", () => {});
child.on("exit", (code, signal) => process.exit(code ?? 128 + (signal === "SIGKILL" ? 9 : 15)));
