/** The gpu-node's command line: parses the settings, starts the node, drains it on SIGTERM/SIGINT. */
import { type Config, ConfigError, helpText, parseConfig } from "./config.ts";
import { createLogger } from "./logger.ts";
import { startGpuNode } from "./node.ts";

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(`${helpText()}\n`);
    return;
  }
  let config: Config;
  try {
    config = parseConfig(argv, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`gpu-node: ${err.message}\nRun with --help for the list of settings.\n`);
      process.exit(2);
    }
    throw err;
  }
  const log = createLogger(config.logLevel);
  const node = await startGpuNode(config, { log });
  let signals = 0;
  const stop = (signal: string) => {
    if (++signals > 1) {
      log.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    const onDraining = (inFlight: number) => log.info({ signal, inFlight }, "draining");
    node.close({ onDraining }).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    process.stderr.write(
      `gpu-node: failed to start: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    process.exit(1);
  });
}
