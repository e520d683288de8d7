/**
 * Turns of the runtime's event loop between the CPU-bound steps of a request (the in-Worker
 * resizes, one after another on the isolate's thread), so that its network I/O goes on meanwhile.
 *
 * workerd runs setImmediate and 0 ms timers without polling its sockets: resizes separated by
 * them kept a request's gpu-node calls unsent until its last resize was done (the seed's batch of
 * 32 with 8 images a call: the four calls reached the gpu-node together, ~50 ms after the first
 * was made). A timer that must really wait lets it poll them, at ~1 ms a time, so those are
 * taken only for the two turns after a subrequest starts: with one, a busy machine (a busy loop on
 * one of two cores) often had the call still unsent (test/edge-overlap.test.ts). Such a timer
 * takes 2.1 ms in workerd, not 1 (its clock moves in whole milliseconds): where the caller tells
 * when the runtime has read the subrequest's body to send it (gpu-client.ts), those turns end
 * then instead: the seed's batch of 32 over the seed link went from 181–199 to 215–219 img/s.
 * Node polls its sockets on every setImmediate. (workerd defines setImmediate too: hence the
 * user agent.)
 */

const inWorkerd =
  (globalThis as { navigator?: { userAgent?: string } }).navigator?.userAgent ===
  "Cloudflare-Workers";

/** Turns with a socket poll taken after a subrequest starts. */
const POLLS_PER_SUBREQUEST = 2;

let pollsDue = 0;
/** Settles once the runtime has read the latest subrequest's body, where the caller said so. */
let bodyRead: Promise<void> | undefined;

/** A subrequest was just made: the next turns let the runtime put it on the wire. */
export function subrequestStarted(): void {
  pollsDue = POLLS_PER_SUBREQUEST;
  bodyRead = undefined;
}

/**
 * The subrequest just started hands its body over through `read`, which settles once the
 * runtime has read it to send it: the turns due for it need wait no longer than that.
 */
export function subrequestBodyRead(read: Promise<unknown>): void {
  bodyRead = read.then(
    () => {},
    () => {},
  );
}

/**
 * The caller's steps ran dry and the runtime had nothing else to run: it has polled its sockets
 * on its own since, so a subrequest made before needs no timer.
 */
export function eventLoopWasIdle(): void {
  pollsDue = 0;
}

/**
 * Resolves after the event loop has had a turn: in workerd with a socket poll if one is due,
 * which ends early once the subrequest's body has been read.
 */
export function turn(): Promise<void> {
  if (!inWorkerd) return new Promise((resolve) => setImmediate(resolve));
  if (pollsDue === 0) return new Promise((resolve) => setTimeout(resolve, 0));
  pollsDue--;
  const read = bodyRead;
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 1);
    read?.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
