/** Main-thread side of HEIC decoding: queues HEIF bytes for one worker thread, hands back RGB pixels. */
import { Worker } from "node:worker_threads";
import type { HeicReply, HeicRequest } from "./heic-decode-worker.ts";
import { ImageError } from "./image-errors.ts";

export interface HeicPixels {
  readonly width: number;
  readonly height: number;
  /** 8-bit RGB, row-major, width * height * 3 bytes. */
  readonly rgb: Uint8Array;
}

// libheif in WASM decodes synchronously and single-threaded: one worker keeps HEIC off the event
// loop without competing with sharp's threads for the cores. Scale out with processes, not here.
const MAX_QUEUED = 32;
// A 12 MP HEIC takes about a second in WASM; far longer means a hostile or broken file.
const DECODE_TIMEOUT_MS = 30_000;
// WASM memory only grows, and heic-decode leaks its parse context when a file fails to parse:
// a worker is replaced after a failed decode, and after this many good ones.
const DECODES_PER_WORKER = 256;
const WORKER_URL = new URL("./heic-decode-worker.ts", import.meta.url);

interface Job {
  readonly request: HeicRequest;
  readonly resolve: (pixels: HeicPixels) => void;
  readonly reject: (error: Error) => void;
}

let worker: Worker | undefined;
/** Whether `worker` loaded the decoder: a crash before that is ours, not the image's. */
let workerReady = false;
let workerDecodes = 0;
let current: { job: Job; timer: NodeJS.Timeout } | undefined;
const queue: Job[] = [];
let nextId = 1;

/**
 * Decodes the first image of a HEIC/HEIF file. Rejects with ImageError for undecodable input or
 * more than `maxPixels` pixels (checked from the header before decoding), with a plain Error
 * when too many decodes are already waiting.
 */
export function decodeHeic(bytes: Uint8Array, maxPixels: number): Promise<HeicPixels> {
  if (queue.length >= MAX_QUEUED) {
    return Promise.reject(new Error(`HEIC decoder busy: ${MAX_QUEUED} images already waiting`));
  }
  return new Promise((resolve, reject) => {
    queue.push({ request: { id: nextId++, bytes, maxPixels }, resolve, reject });
    pump();
  });
}

/** Stops the worker (pending decodes fail); the next decode starts a fresh one. */
export async function closeHeicDecoder(): Promise<void> {
  const closing = worker;
  worker = undefined;
  for (const job of queue.splice(0)) job.reject(new Error("HEIC decoder closed"));
  finishCurrent()?.reject(new Error("HEIC decoder closed"));
  await closing?.terminate();
}

function pump(): void {
  if (current || queue.length === 0) return;
  const job = queue.shift()!;
  const active = ensureWorker();
  const timer = setTimeout(() => fail(active, timeoutError()), DECODE_TIMEOUT_MS);
  current = { job, timer };
  active.ref();
  // Structured clone copies the bytes: the caller's buffer may be a view into a shared pool.
  active.postMessage(job.request);
}

function ensureWorker(): Worker {
  if (worker) return worker;
  const created = new Worker(WORKER_URL);
  created.on("message", (reply: HeicReply) => worker === created && onReply(reply));
  created.on("error", (error) => fail(created, crashError(error)));
  created.on("exit", (code) => fail(created, crashError(new Error(`worker exited (${code})`))));
  worker = created;
  workerReady = false;
  workerDecodes = 0;
  return created;
}

function onReply(reply: HeicReply): void {
  if (reply.ok === "ready") {
    workerReady = true;
    return;
  }
  if (current?.job.request.id !== reply.id) return;
  const job = finishCurrent()!;
  if (reply.ok) job.resolve({ width: reply.width, height: reply.height, rgb: reply.rgb });
  else job.reject(replyError(reply.reason, reply.message));
  workerDecodes++;
  if (!reply.ok || workerDecodes >= DECODES_PER_WORKER) retire();
  pump();
}

/** Lets the current worker go; the next decode starts a fresh one. */
function retire(): void {
  const retiring = worker;
  worker = undefined;
  void retiring?.terminate();
}

/** The worker is unusable (crashed, hung): fail its job, drop it, let the queue start another. */
function fail(failed: Worker, error: Error): void {
  if (worker !== failed) return;
  retire();
  finishCurrent()?.reject(error);
  pump();
}

function finishCurrent(): Job | undefined {
  if (!current) return undefined;
  const { job, timer } = current;
  clearTimeout(timer);
  current = undefined;
  // An idle worker must not keep the process alive.
  worker?.unref();
  return job;
}

function replyError(reason: "too_many_pixels" | "corrupt", detail: string): ImageError {
  if (reason === "too_many_pixels") {
    return new ImageError(reason, `The HEIC image (${detail}) has more pixels than allowed`);
  }
  return new ImageError(reason, `The HEIC image could not be decoded (${printable(detail)})`);
}

function timeoutError(): ImageError {
  const seconds = DECODE_TIMEOUT_MS / 1000;
  return new ImageError("corrupt", `The HEIC image did not decode within ${seconds} s`);
}

function crashError(cause: unknown): Error {
  if (!workerReady) return new Error("HEIC decoder failed to start", { cause });
  return new ImageError("corrupt", "The HEIC decoder failed on this image", { cause });
}

/** Keeps decoder messages safe to show: printable ASCII, one line, bounded length. */
function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]+/g, " ").slice(0, 160);
}
