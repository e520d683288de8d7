/** The node's own recent history for /dashboard: receives per-call stage times, image outcomes and batch sizes, keeps one summary per second for the last minutes, and answers percentiles and throughput without Prometheus. */

/** The per-call stages, in pipeline order (the Timings of an Embed response). */
export const STAGES = ["decode", "preprocess", "queue", "inference", "total"] as const;
export type Stage = (typeof STAGES)[number];

/** Seconds of each stage for one call (or one EmbedStream item). */
export type StageSeconds = Readonly<Record<Stage, number>>;

/** Percentiles in milliseconds. */
export interface Percentiles {
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
}

/** One second of history (`t` = Unix seconds). Latency in ms; null where nothing was measured. */
export interface SecondSummary {
  readonly t: number;
  readonly calls: number;
  readonly images: number;
  readonly failedImages: number;
  readonly errors: number;
  readonly batches: number;
  readonly meanBatchSize: number | null;
  readonly stages: Readonly<Record<Stage, Percentiles | null>>;
}

export interface WindowSummary {
  /** Seconds covered (shorter than asked while the node is younger than that). */
  readonly seconds: number;
  readonly calls: number;
  readonly images: number;
  readonly failedImages: number;
  readonly errors: number;
  readonly imagesPerSecond: number;
  readonly callsPerSecond: number;
  readonly meanBatchSize: number | null;
  readonly stages: Readonly<Record<Stage, (Percentiles & { count: number; mean: number }) | null>>;
}

/**
 * Latencies go into log-spaced buckets, 8 per doubling from 1 µs (each bucket ±4.4% wide), so a
 * second costs a fixed, small array per stage and any span of seconds merges exactly; a
 * percentile is the geometric middle of its bucket.
 */
const PER_DOUBLING = 8;
const BUCKETS = 30 * PER_DOUBLING + 1; // 1 µs … ~18 min; bucket 0 holds everything under 1 µs
const bucketOf = (us: number): number =>
  us < 1 ? 0 : Math.min(BUCKETS - 1, 1 + Math.floor(Math.log2(us) * PER_DOUBLING));
const msOfBucket = (b: number): number =>
  b === 0 ? 0 : 2 ** ((b - 1 + 0.5) / PER_DOUBLING) / 1000;

interface Slot {
  t: number;
  calls: number;
  images: number;
  failedImages: number;
  errors: number;
  batches: number;
  batchImages: number;
  /** Per stage: bucket counts (allocated on first use), count and sum of ms. */
  readonly hist: (Uint32Array | undefined)[];
  readonly count: number[];
  readonly sumMs: number[];
}

const emptySlot = (t: number): Slot => ({
  t,
  calls: 0,
  images: 0,
  failedImages: 0,
  errors: 0,
  batches: 0,
  batchImages: 0,
  hist: STAGES.map(() => undefined),
  count: STAGES.map(() => 0),
  sumMs: STAGES.map(() => 0),
});

function percentiles(hist: Uint32Array, count: number): Percentiles {
  const at = (q: number) => {
    const rank = Math.max(1, Math.ceil(q * count));
    let seen = 0;
    for (let b = 0; b < hist.length; b++) {
      seen += hist[b]!;
      if (seen >= rank) return msOfBucket(b);
    }
    return msOfBucket(hist.length - 1);
  };
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

/**
 * A history's seconds in a form that crosses processes (JSON): cluster workers send theirs to
 * the primary, which merges them into one view. Histograms are sparse [bucket, count] pairs.
 */
export interface HistorySnapshot {
  readonly slots: readonly {
    readonly t: number;
    readonly calls: number;
    readonly images: number;
    readonly failedImages: number;
    readonly errors: number;
    readonly batches: number;
    readonly batchImages: number;
    readonly hist: readonly (readonly (readonly [number, number])[] | null)[];
    readonly count: readonly number[];
    readonly sumMs: readonly number[];
  }[];
}

export interface RecentOptions {
  /** Seconds of history kept. */
  readonly seconds: number;
  /** Wall clock in ms (Date.now in production). */
  readonly now?: () => number;
}

export class RecentHistory {
  readonly seconds: number;
  readonly #now: () => number;
  readonly #slots: Slot[];

  constructor(opts: RecentOptions) {
    if (!Number.isSafeInteger(opts.seconds) || opts.seconds < 2) {
      throw new RangeError(`history must keep at least 2 seconds, got ${opts.seconds}`);
    }
    this.seconds = opts.seconds;
    this.#now = opts.now ?? Date.now;
    this.#slots = Array.from({ length: opts.seconds }, () => emptySlot(-1));
  }

  /** The slot of the current second, reset if it last held an older second. */
  #slot(): Slot {
    const t = Math.floor(this.#now() / 1000);
    const i = t % this.seconds;
    let s = this.#slots[i]!;
    if (s.t !== t) {
      s = emptySlot(t);
      this.#slots[i] = s;
    }
    return s;
  }

  /** One finished call (or stream item) and its stage times. */
  call(stages: StageSeconds, images: number): void {
    const s = this.#slot();
    s.calls++;
    s.images += images;
    STAGES.forEach((stage, k) => {
      const ms = stages[stage] * 1000;
      const hist = s.hist[k] ?? new Uint32Array(BUCKETS);
      s.hist[k] = hist;
      hist[bucketOf(ms * 1000)]!++;
      s.count[k]!++;
      s.sumMs[k]! += ms;
    });
  }

  /** Images that were not embedded (bad image, overload, deadline…). */
  failedImages(n: number): void {
    this.#slot().failedImages += n;
  }

  /** A call that ended with an error code. */
  error(): void {
    this.#slot().errors++;
  }

  batch(size: number): void {
    const s = this.#slot();
    s.batches++;
    s.batchImages += size;
  }

  /** The seconds this history still holds, for another process to merge (see `merge`). */
  snapshot(): HistorySnapshot {
    const oldest = Math.floor(this.#now() / 1000) - this.seconds + 1;
    return {
      slots: this.#slots
        .filter((s) => s.t >= oldest)
        .map((s) => ({
          t: s.t,
          calls: s.calls,
          images: s.images,
          failedImages: s.failedImages,
          errors: s.errors,
          batches: s.batches,
          batchImages: s.batchImages,
          hist: s.hist.map((h) => {
            if (!h) return null;
            const pairs: [number, number][] = [];
            for (let b = 0; b < h.length; b++) if (h[b]! > 0) pairs.push([b, h[b]!]);
            return pairs;
          }),
          count: [...s.count],
          sumMs: [...s.sumMs],
        })),
    };
  }

  /** Adds another history's seconds (a snapshot) to this one's; exact, as buckets add up. */
  merge(snapshot: HistorySnapshot): void {
    const oldest = Math.floor(this.#now() / 1000) - this.seconds + 1;
    for (const o of snapshot.slots) {
      if (o.t < oldest) continue;
      const i = o.t % this.seconds;
      let s = this.#slots[i]!;
      if (s.t !== o.t) {
        if (s.t > o.t) continue;
        s = emptySlot(o.t);
        this.#slots[i] = s;
      }
      s.calls += o.calls;
      s.images += o.images;
      s.failedImages += o.failedImages;
      s.errors += o.errors;
      s.batches += o.batches;
      s.batchImages += o.batchImages;
      STAGES.forEach((_, k) => {
        const pairs = o.hist[k];
        if (!pairs) return;
        const h = s.hist[k] ?? new Uint32Array(BUCKETS);
        s.hist[k] = h;
        for (const [b, n] of pairs) if (b >= 0 && b < BUCKETS) h[b]! += n;
        s.count[k]! += o.count[k] ?? 0;
        s.sumMs[k]! += o.sumMs[k] ?? 0;
      });
    }
  }

  /** The last `seconds` completed seconds, oldest first, one entry per second (idle ones too) since `since` (ms). */
  series(since = 0): SecondSummary[] {
    const current = Math.floor(this.#now() / 1000);
    const first = Math.max(current - this.seconds + 1, Math.floor(since / 1000));
    const out: SecondSummary[] = [];
    for (let t = first; t < current; t++) {
      const s = this.#at(t);
      out.push({
        t,
        calls: s.calls,
        images: s.images,
        failedImages: s.failedImages,
        errors: s.errors,
        batches: s.batches,
        meanBatchSize: s.batches > 0 ? s.batchImages / s.batches : null,
        stages: Object.fromEntries(
          STAGES.map((stage, k) => {
            const h = s.hist[k];
            return [stage, h ? percentiles(h, s.count[k]!) : null];
          }),
        ) as Record<Stage, Percentiles | null>,
      });
    }
    return out;
  }

  /** Totals and merged percentiles over the last `seconds` completed seconds (not before `since`, ms). */
  summary(seconds: number, since = 0): WindowSummary {
    const current = Math.floor(this.#now() / 1000);
    const first = Math.max(current - Math.min(seconds, this.seconds - 1), Math.floor(since / 1000));
    const span = Math.max(0, current - first);
    const hist = STAGES.map(() => new Uint32Array(BUCKETS));
    const count = STAGES.map(() => 0);
    const sumMs = STAGES.map(() => 0);
    let calls = 0;
    let images = 0;
    let failedImages = 0;
    let errors = 0;
    let batches = 0;
    let batchImages = 0;
    for (let t = first; t < current; t++) {
      const s = this.#at(t);
      calls += s.calls;
      images += s.images;
      failedImages += s.failedImages;
      errors += s.errors;
      batches += s.batches;
      batchImages += s.batchImages;
      STAGES.forEach((_, k) => {
        const h = s.hist[k];
        if (!h) return;
        for (let b = 0; b < BUCKETS; b++) hist[k]![b]! += h[b]!;
        count[k]! += s.count[k]!;
        sumMs[k]! += s.sumMs[k]!;
      });
    }
    return {
      seconds: span,
      calls,
      images,
      failedImages,
      errors,
      imagesPerSecond: span > 0 ? images / span : 0,
      callsPerSecond: span > 0 ? calls / span : 0,
      meanBatchSize: batches > 0 ? batchImages / batches : null,
      stages: Object.fromEntries(
        STAGES.map((stage, k) => [
          stage,
          count[k]! > 0
            ? { ...percentiles(hist[k]!, count[k]!), count: count[k]!, mean: sumMs[k]! / count[k]! }
            : null,
        ]),
      ) as WindowSummary["stages"],
    };
  }

  #at(t: number): Slot {
    const s = this.#slots[t % this.seconds]!;
    return s.t === t ? s : emptySlot(t);
  }
}
