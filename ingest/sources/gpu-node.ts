/** The gpu-node as a Source: one long-lived EmbedStream (bidirectional, HTTP/2) carries every photo in flight; answers come back by id in any order. The server stops reading at its --max-stream-in-flight and HTTP/2 flow control holds our writes; our own bound is the pipeline's concurrency. A broken stream fails the photos in it as transient, and the next photo opens a new one. */

import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
} from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  EmbedderService,
  type EmbedStreamRequestSchema,
  type EmbedStreamResponse,
} from "../../proto/gen/embedder/v1/embedder_pb.js";
import type { Model } from "../store.ts";
import { type Answer, failureOfConnectCode, ownCopy, type Source, SourceError } from "./source.ts";

/** An async iterable that is written to: the request side of the stream. */
class Pushable<T> implements AsyncIterable<T> {
  readonly #queue: T[] = [];
  #wake: (() => void) | undefined;
  #ended = false;

  push(value: T): void {
    this.#queue.push(value);
    this.#wake?.();
  }

  end(): void {
    this.#ended = true;
    this.#wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      const next = this.#queue.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.#ended) return;
      await new Promise<void>((wake) => {
        this.#wake = wake;
      });
      this.#wake = undefined;
    }
  }
}

type StreamRequest = MessageInitShape<typeof EmbedStreamRequestSchema>;

interface Pending {
  resolve(answer: Answer): void;
  reject(error: SourceError): void;
}

interface Stream {
  readonly requests: Pushable<StreamRequest>;
  readonly pending: Map<string, Pending>;
  readonly abort: AbortController;
  dead: boolean;
}

const connectCodeName = (code: Code) =>
  Code[code]!.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();

function fromConnect(error: unknown): SourceError {
  const ce = ConnectError.from(error);
  const code = connectCodeName(ce.code);
  const hint = ce.code === Code.Unauthenticated ? " (check --token / INGEST_GPU_NODE_TOKEN)" : "";
  return new SourceError(
    failureOfConnectCode(code),
    code,
    `gpu-node: ${code}: ${ce.rawMessage}${hint}`,
  );
}

export function createGpuNodeSource(opts: {
  readonly url: string;
  readonly token: string;
  readonly timeoutMs: number;
}): Source {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${opts.token}`);
    return next(req);
  };
  const client: Client<typeof EmbedderService> = createClient(
    EmbedderService,
    createGrpcTransport({
      baseUrl: opts.url,
      interceptors: opts.token ? [auth] : [],
      // Bound what one answer may make us buffer: 512 floats are 2 KiB.
      readMaxBytes: 16 * 1024 * 1024,
    }),
  );
  let stream: Stream | undefined;
  let nextId = 0;

  function open(): Stream {
    const s: Stream = {
      requests: new Pushable<StreamRequest>(),
      pending: new Map(),
      abort: new AbortController(),
      dead: false,
    };
    const failAll = (error: SourceError) => {
      s.dead = true;
      for (const p of s.pending.values()) p.reject(error);
      s.pending.clear();
    };
    void (async () => {
      try {
        for await (const res of client.embedStream(s.requests, { signal: s.abort.signal })) {
          settle(s, res);
        }
        failAll(new SourceError("transient", "unavailable", "gpu-node: the stream ended early"));
      } catch (error) {
        failAll(fromConnect(error));
      }
    })();
    return s;
  }

  function settle(s: Stream, res: EmbedStreamResponse): void {
    const p = s.pending.get(res.id);
    if (!p) return; // an attempt we gave up on (its deadline passed)
    s.pending.delete(res.id);
    if (res.result.case === "error") {
      const { code, message } = res.result.value;
      p.reject(new SourceError(failureOfConnectCode(code), code, `gpu-node: ${message}`));
      return;
    }
    if (res.result.case !== "vector") {
      p.reject(
        new SourceError(
          "transient",
          "unknown",
          "gpu-node: an answer with neither vector nor error",
        ),
      );
      return;
    }
    const t = res.timings;
    p.resolve({
      vector: ownCopy(res.result.value),
      dimension: res.dimension,
      model: model!,
      timings: t
        ? {
            decodeUs: t.decodeUs,
            preprocessUs: t.preprocessUs,
            queueUs: t.queueUs,
            inferenceUs: t.inferenceUs,
            totalUs: t.totalUs,
          }
        : null,
    });
  }

  let model: Model | undefined;

  return {
    kind: "gpu-node",
    needsProbe: false,
    async describe() {
      try {
        const info = await client.getModelInfo({}, { timeoutMs: opts.timeoutMs });
        model = { model: info.model, version: info.modelVersion };
        return model;
      } catch (error) {
        throw fromConnect(error);
      }
    },
    embed(data, signal) {
      if (!model) throw new Error("describe() first");
      if (!stream || stream.dead) stream = open();
      const s = stream;
      const id = String(nextId++);
      return new Promise<Answer>((resolve, reject) => {
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener("abort", onAbort);
        };
        const onAbort = () => {
          s.pending.delete(id);
          done();
          reject(new SourceError("transient", "canceled", "cancelled"));
        };
        const timer = setTimeout(() => {
          s.pending.delete(id);
          done();
          reject(
            new SourceError(
              "transient",
              "deadline_exceeded",
              `gpu-node: no answer in ${opts.timeoutMs} ms`,
            ),
          );
        }, opts.timeoutMs);
        signal.addEventListener("abort", onAbort, { once: true });
        s.pending.set(id, {
          resolve: (a) => {
            done();
            resolve(a);
          },
          reject: (e) => {
            done();
            reject(e);
          },
        });
        s.requests.push({ image: { id, data } });
      });
    },
    async close() {
      if (!stream) return;
      stream.requests.end();
      stream.abort.abort();
    },
  };
}
