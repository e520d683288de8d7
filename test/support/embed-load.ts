/** A bounded load for a running gpu-node: concurrent Embed calls of 1–4 images, some EmbedStreams, and a steady trickle of bad images so that error series exist too. Stops by itself. */
import { embedderClient } from "./gpu-node-client.ts";
import { randomBytes } from "./images.ts";

export interface EmbedLoadOptions {
  readonly url: string;
  readonly images: readonly Uint8Array[];
  /** Calls in flight at once. */
  readonly concurrency: number;
  /** Hard stop: calls still in flight then are cancelled. */
  readonly maxMs: number;
  /** Every n-th call carries a corrupt image (invalid_argument); 0 = never. */
  readonly badEvery?: number;
  /** Every n-th call is an EmbedStream of 3 images (one of them corrupt); 0 = never. */
  readonly streamEvery?: number;
}

export interface EmbedLoad {
  /** Starts no more calls, lets those in flight finish, and resolves with what it did. */
  stop(): Promise<EmbedLoadResult>;
  readonly done: Promise<EmbedLoadResult>;
}

export interface EmbedLoadResult {
  readonly calls: number;
  readonly failedCalls: number;
  readonly imagesEmbedded: number;
}

export function startEmbedLoad(opts: EmbedLoadOptions): EmbedLoad {
  const client = embedderClient(opts.url);
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), opts.maxMs);
  let stopping = false;
  let n = 0;
  const result = { calls: 0, failedCalls: 0, imagesEmbedded: 0 };
  const pick = (i: number) => opts.images[i % opts.images.length]!;

  const one = async (i: number) => {
    if (opts.streamEvery && i % opts.streamEvery === opts.streamEvery - 1) {
      async function* items() {
        yield { image: { id: `s${i}a`, data: pick(i) } };
        yield { image: { id: `s${i}b`, data: randomBytes(400, i + 1) } };
        yield { image: { id: `s${i}c`, data: pick(i + 1) } };
      }
      for await (const r of client.embedStream(items(), { signal: stop.signal })) {
        if (r.result.case === "vector") result.imagesEmbedded++;
      }
      return;
    }
    const count = 1 + (i % 4);
    const images = Array.from({ length: count }, (_, k) => ({
      id: `${i}-${k}`,
      data: pick(i + k),
    }));
    if (opts.badEvery && i % opts.badEvery === opts.badEvery - 1) {
      images[count - 1] = { id: "corrupt", data: randomBytes(500, i + 1) };
    }
    const res = await client.embed({ images }, { signal: stop.signal });
    result.imagesEmbedded += res.embeddings.length;
  };

  const worker = async () => {
    while (!stopping && !stop.signal.aborted) {
      const i = n++;
      result.calls++;
      await one(i).catch(() => {
        result.failedCalls++;
      });
    }
  };
  const done = Promise.all(Array.from({ length: opts.concurrency }, worker)).then(() => {
    clearTimeout(timer);
    return { ...result };
  });
  return {
    done,
    stop() {
      stopping = true;
      return done;
    },
  };
}
