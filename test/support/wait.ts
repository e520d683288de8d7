/** Waiting in tests on an observable condition instead of a guessed delay: `until` polls a probe (a probe that throws counts as false), with no deadline unless given one (vitest's timeout is the backstop), and says how long it took; `statusOf` is a probe's usual question to a server. */
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Resolves with the milliseconds it took once `probe()` holds, asking every `everyMs` (pacing
 * only); with `timeoutMs`, throws once that has passed.
 */
export async function until(
  probe: () => boolean | Promise<boolean>,
  opts: { readonly timeoutMs?: number; readonly everyMs?: number } = {},
): Promise<number> {
  const t0 = performance.now();
  const ask = async () => {
    try {
      return await probe();
    } catch {
      return false;
    }
  };
  while (!(await ask())) {
    if (opts.timeoutMs !== undefined && performance.now() - t0 > opts.timeoutMs) {
      throw new Error(`not true within ${opts.timeoutMs} ms`);
    }
    await sleep(opts.everyMs ?? 10);
  }
  return performance.now() - t0;
}

/** The HTTP status of a GET to `url`, or 0 when no answer came within 3 s. */
export async function statusOf(url: string): Promise<number> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(3000) });
    await res.body?.cancel();
    return res.status;
  } catch {
    return 0;
  }
}
