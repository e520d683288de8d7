/** `npm run ingest`: parses the settings, opens the database and the source, wires signals and progress to the pipeline, prints the summary and exits with a code that says how it went. */
import { INGEST_OPTIONS, parseIngestConfig, usageText } from "../config.ts";
import { runIngest } from "../pipeline.ts";
import { type Mode, Progress } from "../progress.ts";
import { Gate } from "../retry.ts";
import { createEdgeSource } from "../sources/edge.ts";
import { createGpuNodeSource } from "../sources/gpu-node.ts";
import { Store } from "../store.ts";
import { runCli } from "./run.ts";

const USAGE = usageText(
  `usage: npm run ingest -- [--edge URL --key KEY | --gpu-node URL [--token TOKEN]] --db FILE <folders or files…>

Embeds every photo (JPEG, HEIC, PNG, WebP, TIFF, AVIF, GIF — recognised by content) under the
folders and files given, through the edge or straight to a gpu-node, into one SQLite row per file.
Running it again resumes: unchanged files are not sent again. Exit status: 0 all done, 1 some
files failed (their rows say why), 2 bad usage, 3 stopped early (unreachable server, refused key,
full disk, unusable database), 130/143 interrupted (everything answered so far is saved).`,
  INGEST_OPTIONS,
);

/** Exit statuses, as the usage text lists them (2, bad usage, comes from run.ts). */
const EXIT = { ok: 0, someFailed: 1, fatal: 3 } as const;

async function main(args: readonly string[]): Promise<number> {
  const config = parseIngestConfig(args);
  const store = Store.open(config.db, { maxPages: config.dbMaxPages });
  const source =
    config.source.kind === "edge"
      ? createEdgeSource({
          url: config.source.url,
          key: config.source.key,
          timeoutMs: config.timeoutMs,
        })
      : createGpuNodeSource({
          url: config.source.url,
          token: config.source.token,
          timeoutMs: config.timeoutMs,
        });
  const mode: Mode =
    config.progress === "auto" ? (process.stdout.isTTY ? "bar" : "log") : config.progress;
  const progress = new Progress(mode, process.stdout, process.stderr, config.progressIntervalMs);

  const stop = new AbortController();
  let signalled: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalled) {
      // A second signal: leave now. Every saved row is a committed transaction already.
      store.close();
      process.exit(128 + (sig === "SIGINT" ? 2 : 15));
    }
    signalled = sig;
    progress.warn(
      `${sig}: finishing the photos in flight (up to ${config.drainMs} ms; again to stop at once)`,
    );
    stop.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  try {
    const result = await runIngest(config, {
      source,
      store,
      progress,
      gate: new Gate(),
      stop: stop.signal,
    });
    const c = result.counts;
    const seconds = result.elapsedMs / 1000;
    const model = result.model ? `${result.model.model} version ${result.model.version}` : "none";
    process.stdout.write(
      `${result.interrupted ? "interrupted" : "done"}: ${c.done}/${c.total} files in ${seconds.toFixed(1)} s — ${c.sent} embedded (${(c.sent / Math.max(seconds, 1e-9)).toFixed(1)} img/s), ${c.unchanged} unchanged, ${c.errors} errors, ${result.skippedPaths} paths skipped; model ${model}; database ${config.db}\n`,
    );
    if (result.fatal) {
      process.stderr.write(`photo-ingest: stopped: ${result.fatal}\n`);
      return EXIT.fatal;
    }
    if (signalled) return 128 + (signalled === "SIGINT" ? 2 : 15);
    return c.errors > 0 ? EXIT.someFailed : EXIT.ok;
  } finally {
    await source.close();
    store.close();
  }
}

runCli("photo-ingest", USAGE, main);
