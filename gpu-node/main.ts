/** The gpu-node's command line: parses the settings, starts the node, drains it on SIGTERM/SIGINT. */
import { type Config, ConfigError, helpText, parseConfig } from "./config.ts";
import { createLogger } from "./logger.ts";
import { type GpuNode, startGpuNode } from "./node.ts";

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
  // Handlers go in before the start: a container stopped while the model loads must still close
  // what was opened (workers, shared-memory files, ports), not die half-started.
  let node: GpuNode | undefined;
  let stopping: string | undefined;
  let signals = 0;
  const stop = (signal: string) => {
    if (++signals > 1) {
      log.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    stopping = signal;
    if (!node) {
      log.info({ signal }, "signal during start-up: stopping once started");
      return;
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
  // SIGHUP re-reads the TLS certificate (renewals); a bad pair is logged and the old one stays.
  process.on("SIGHUP", () => {
    if (!node || config.tlsCert === "") {
      log.info(node ? "SIGHUP ignored: TLS is off" : "SIGHUP ignored during start-up");
      return;
    }
    node.reloadCertificate().catch((err: unknown) => {
      log.error({ err: err instanceof Error ? err.message : String(err) }, "TLS reload failed");
    });
  });
  node = await startGpuNode(config, { log });
  if (stopping) {
    signals = 0;
    stop(stopping);
  }
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    process.stderr.write(
      `gpu-node: failed to start: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    process.exit(1);
  });
}
