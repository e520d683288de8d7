/**
 * Adaptive admission for one isolate: how many requests may be past validation (resizing or
 * waiting on the gpu-node) at once. Unlimited until a gpu-node refuses work as full; then the
 * limit drops to a little under what was in flight when it refused, and grows by about one for
 * each limit's worth of answered requests (additive increase, multiplicative decrease, as TCP
 * does). A request over the limit is answered 503 at once instead of being resized for a call
 * the gpu-node would refuse — under overload the edge's 503s take milliseconds, not a resize.
 *
 * Written by hand: ~40 lines, and the concurrency-limit libraries on npm are Node-only
 * (timers, process hooks) or wrap promises in ways that cannot see a gpu-node's refusal.
 */

/** What came of an admitted request, as far as the gpu-nodes' capacity goes. */
export type Outcome = "answered" | "full" | "other";

export interface Admission {
  /** Admits one request (a function to call once it is done) or says it is over the limit. */
  enter(): ((outcome: Outcome) => void) | undefined;
  /** The current limit (Infinity until the first refusal) and requests in flight. */
  readonly state: { readonly limit: number; readonly inFlight: number };
}

/**
 * After a refusal the limit becomes this share of what was in flight. 0.75 cost ~15% more of the
 * goodput in the 64-connection overload test (test/overload.test.ts) than 0.9 did.
 */
const DECREASE = 0.9;

export function createAdmission(): Admission {
  let limit = Number.POSITIVE_INFINITY;
  let inFlight = 0;
  // One decrease per window, as TCP does: refusals of requests admitted before the last decrease
  // describe the old limit, and would otherwise shrink it again and again for one overload.
  let epoch = 0;
  return {
    enter() {
      if (inFlight >= limit) return undefined;
      inFlight++;
      const admittedIn = epoch;
      let done = false;
      return (outcome) => {
        if (done) return;
        done = true;
        // What was in flight when this request got its answer, itself included.
        const seen = inFlight;
        inFlight--;
        if (outcome === "full") {
          if (admittedIn === epoch) {
            limit = Math.max(1, Math.floor(seen * DECREASE));
            epoch++;
          }
        } else if (outcome === "answered" && Number.isFinite(limit)) {
          limit += 1 / limit;
        }
      };
    },
    get state() {
      return { limit, inFlight };
    },
  };
}
