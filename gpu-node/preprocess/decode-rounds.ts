/**
 * Schedules decodes in rounds: every decode asked for during one turn of the event loop starts
 * together, in that turn's check phase (setImmediate), after the turn's network callbacks.
 *
 * Why: decoding a 256-px photo (libjpeg-turbo, the resize) runs through ~0.6 MB of buffers and a
 * lot of branchy native code, and the JavaScript that follows it (Connect, protobuf, the batcher)
 * then ran with cold caches. Started from each call's own continuation, decodes alternated with
 * that JavaScript one call at a time: the gpu-node spent ~0.87 ms of CPU per call with 8 calls in
 * flight on the 2-core dev machine, of which the decode itself was ~0.4 ms. In rounds, the calls
 * of a turn are parsed together, decoded together and answered together: 0.71-0.75 ms per call.
 * With the AVX-512 resize passes, `npm run bench:gpu-host` went from 0.87-0.94 to 0.65-0.70 ms
 * per 256-px photo at one photo per call (docs/benchmarks.md, "Decodes in rounds"). A lone call
 * waits one hop of the event loop (microseconds).
 */

/** A decoder as the embed service calls it: encoded bytes and limits in, pixels out. */
export type RoundDecoder<L, R> = (data: Uint8Array, limits: L, signal?: AbortSignal) => Promise<R>;

/**
 * `decode` run in rounds (see above). A call whose signal has aborted by the time its round comes
 * is not decoded: it rejects with the signal's reason. `schedule` runs a round later (tests pass
 * their own; setImmediate in production).
 */
export function decodeInRounds<L, R>(
  decode: RoundDecoder<L, R>,
  schedule: (round: () => void) => void = setImmediate,
): RoundDecoder<L, R> {
  let queue: (() => void)[] = [];
  const runRound = () => {
    // Decodes asked for while this round runs (none today: the decoders' continuations are
    // asynchronous) go to the next one.
    const round = queue;
    queue = [];
    for (const start of round) start();
  };
  return (data, limits, signal) =>
    new Promise<R>((resolve, reject) => {
      if (queue.length === 0) schedule(runRound);
      queue.push(() => {
        if (signal?.aborted) {
          reject(signal.reason);
          return;
        }
        try {
          decode(data, limits, signal).then(resolve, reject);
        } catch (err) {
          reject(err);
        }
      });
    });
}
