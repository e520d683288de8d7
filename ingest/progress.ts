/** Counts of a run in, what the user sees out: on a terminal one bar redrawn in place (done/total, img/s, ETA, errors), elsewhere a plain log line every interval, so that CI logs and `nohup` files stay readable. Warnings go to stderr without tearing the bar. */

export interface Counts {
  /** Files found by the walk (known once it has finished). */
  total: number;
  /** Files finished, whatever the outcome. */
  done: number;
  /** Embedded by the server in this run. */
  sent: number;
  /** Not sent: unchanged since a previous run, or the same content as a file already embedded. */
  unchanged: number;
  /** Files that ended with an error (unreadable, not an image, refused, retries exhausted). */
  errors: number;
}

export interface Writer {
  write(text: string): void;
}

export type Mode = "bar" | "log" | "none";

/** img/s over the last `windowMs` of answers (a lifetime average would hide a slowdown). */
class Rate {
  readonly #marks: number[] = [];
  readonly windowMs: number;
  constructor(windowMs: number) {
    this.windowMs = windowMs;
  }
  mark(now: number): void {
    this.#marks.push(now);
  }
  perSecond(now: number, since: number): number {
    while (this.#marks.length > 0 && this.#marks[0]! < now - this.windowMs) this.#marks.shift();
    const span = Math.min(this.windowMs, now - since);
    return span <= 0 ? 0 : (this.#marks.length * 1000) / span;
  }
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

export class Progress {
  readonly counts: Counts = { total: 0, done: 0, sent: 0, unchanged: 0, errors: 0 };
  readonly #rate = new Rate(10_000);
  #t0 = 0;
  #timer: NodeJS.Timeout | undefined;
  #drawn = false;

  readonly mode: Mode;
  readonly out: Writer;
  readonly err: Writer;
  readonly intervalMs: number;
  readonly now: () => number;

  constructor(
    mode: Mode,
    out: Writer,
    err: Writer,
    intervalMs: number,
    now: () => number = () => performance.now(),
  ) {
    this.mode = mode;
    this.out = out;
    this.err = err;
    this.intervalMs = intervalMs;
    this.now = now;
  }

  start(): void {
    this.#t0 = this.now();
    if (this.mode === "none") return;
    const period = this.mode === "bar" ? 200 : this.intervalMs;
    this.#timer = setInterval(() => this.draw(), period);
    this.#timer.unref();
  }

  /** One photo answered by the server (the rate counts only these). */
  sent(): void {
    this.counts.sent++;
    this.counts.done++;
    this.#rate.mark(this.now());
  }

  unchanged(): void {
    this.counts.unchanged++;
    this.counts.done++;
  }

  failed(): void {
    this.counts.errors++;
    this.counts.done++;
  }

  /** A problem with one path: on stderr, with the bar cleared first and redrawn after. */
  warn(text: string): void {
    this.#clear();
    this.err.write(`${text}\n`);
    if (this.mode === "bar" && this.#drawn) this.draw();
  }

  /** The line as shown: `4213/10000 42% 812.3 img/s ETA 0:07 errors 3 unchanged 120`. */
  line(): string {
    const c = this.counts;
    const now = this.now();
    const rate = this.#rate.perSecond(now, this.#t0);
    const left = c.total - c.done;
    const eta = rate > 0 ? formatDuration(left / rate) : "?";
    const pct = c.total > 0 ? Math.floor((100 * c.done) / c.total) : 0;
    return `${c.done}/${c.total} ${pct}% ${rate.toFixed(1)} img/s ETA ${eta} errors ${c.errors} unchanged ${c.unchanged}`;
  }

  draw(): void {
    if (this.mode === "log") {
      this.out.write(`progress ${this.line()}\n`);
    } else if (this.mode === "bar") {
      const c = this.counts;
      const width = 24;
      const filled = c.total > 0 ? Math.round((width * c.done) / c.total) : 0;
      const bar = `${"#".repeat(filled)}${"-".repeat(width - filled)}`;
      this.out.write(`\r\x1b[2K[${bar}] ${this.line()}`);
      this.#drawn = true;
    }
  }

  #clear(): void {
    if (this.mode === "bar" && this.#drawn) this.out.write("\r\x1b[2K");
  }

  /** The last figures are always shown, however short the run. */
  stop(): void {
    clearInterval(this.#timer);
    if (this.mode === "none") return;
    this.draw();
    if (this.mode === "bar") this.out.write("\n");
  }

  elapsedMs(): number {
    return this.now() - this.#t0;
  }
}
