/**
 * Turns of the runtime's event loop between the CPU-bound steps of a request (the in-Worker
 * resizes, one after another on the isolate's thread), so that its network I/O goes on meanwhile.
 *
 * workerd runs setImmediate and 0 ms timers without polling its sockets: resizes separated by
 * them kept a request's gpu-node calls unsent until its last resize was done (the seed's batch of
 * 32 with 8 images a call: the four calls reached the gpu-node together, ~50 ms after the first
 * was made). A timer that must really wait lets it poll them, at ~1 ms a time, so those are
 * taken only for the two turns after a subrequest starts: with one, a busy machine (a busy loop on
 * one of two cores) often had the call still unsent (test/edge-overlap.test.ts). Node polls its
 * sockets on every setImmediate. (workerd defines setImmediate too: hence the user agent.)
 */

const inWorkerd =
  (globalThis as { navigator?: { userAgent?: string } }).navigator?.userAgent ===
  "Cloudflare-Workers";

/** Turns with a socket poll taken after a subrequest starts. */
const POLLS_PER_SUBREQUEST = 2;

let pollsDue = 0;

/** A subrequest was just made: the next turns let the runtime put it on the wire. */
export function subrequestStarted(): void {
  pollsDue = POLLS_PER_SUBREQUEST;
}

/**
 * The caller's steps ran dry and the runtime had nothing else to run: it has polled its sockets
 * on its own since, so a subrequest made before needs no timer.
 */
export function eventLoopWasIdle(): void {
  pollsDue = 0;
}

/** Resolves after the event loop has had a turn (in workerd with a socket poll, if one is due). */
export function turn(): Promise<void> {
  if (!inWorkerd) return new Promise((resolve) => setImmediate(resolve));
  const wait = pollsDue > 0 ? 1 : 0;
  if (pollsDue > 0) pollsDue--;
  return new Promise((resolve) => setTimeout(resolve, wait));
}
