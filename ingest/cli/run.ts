/** What both CLIs do around their work: `--help` first, then the work's exit status; a usage mistake prints the usage (exit 2), a database or other known failure one line (exit 3), anything else its stack. */
import { UsageError } from "../config.ts";
import { StoreError } from "../store.ts";

export function runCli(
  name: string,
  usage: string,
  work: (args: readonly string[]) => Promise<number>,
): void {
  const args = process.argv.slice(2);
  if (args.includes("--help") || args.includes("-h")) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  work(args).then(
    (code) => process.exit(code),
    (error: unknown) => {
      if (error instanceof UsageError) {
        process.stderr.write(`${name}: ${error.message}\n\n${usage}\n`);
        process.exit(2);
      }
      const text = error instanceof StoreError ? error.message : (error as Error).stack;
      process.stderr.write(`${name}: ${text}\n`);
      process.exit(3);
    },
  );
}
