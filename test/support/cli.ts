/** Command lines of the bench and test tools: `--help` (or `-h`) prints the tool's usage and exits 0 before any work; the rest goes to node:util's parseArgs (an unknown option prints the usage and exits 2). */
import { type ParseArgsConfig, parseArgs } from "node:util";

/** True when the arguments ask for help. */
export function wantsHelp(args: readonly string[] = process.argv.slice(2)): boolean {
  return args.includes("--help") || args.includes("-h");
}

/** Prints `usage` and exits 0 if the arguments ask for help; returns otherwise. */
export function exitOnHelp(usage: string, args: readonly string[] = process.argv.slice(2)): void {
  if (!wantsHelp(args)) return;
  process.stdout.write(`${usage.trim()}\n`);
  process.exit(0);
}

/** parseArgs with `--help` answered first and parse errors shown with the usage. */
export function parseCli<const T extends ParseArgsConfig>(
  usage: string,
  config: T,
): ReturnType<typeof parseArgs<T>> {
  exitOnHelp(usage, config.args ?? process.argv.slice(2));
  try {
    return parseArgs(config);
  } catch (error) {
    process.stderr.write(
      `${error instanceof Error ? error.message : String(error)}\n\n${usage.trim()}\n`,
    );
    process.exit(2);
  }
}
