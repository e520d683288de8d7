/** A counting semaphore with fail-fast and abortable FIFO acquisition: the gpu-node's admission control. */

// Written by hand: the npm limiters (p-limit and friends) wrap functions and cannot take
// several permits at once, refuse without waiting, or drop a waiter whose call was cancelled.

interface Waiter {
  readonly permits: number;
  readonly resolve: () => void;
  readonly reject: (reason: unknown) => void;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: () => void;
}

export class Semaphore {
  readonly capacity: number;
  #available: number;
  readonly #waiters: Waiter[] = [];

  constructor(capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) {
      throw new RangeError(`semaphore capacity must be a positive integer, got ${capacity}`);
    }
    this.capacity = capacity;
    this.#available = capacity;
  }

  /** Permits currently held. */
  get inUse(): number {
    return this.capacity - this.#available;
  }

  /** Takes `permits` now if they are free and nobody waits before us; never waits. */
  tryAcquire(permits = 1): boolean {
    if (permits <= this.#available && this.#waiters.length === 0) {
      this.#available -= permits;
      return true;
    }
    return false;
  }

  /** Waits (first come, first served) for `permits`; rejects with the signal's reason on abort. */
  acquire(permits = 1, signal?: AbortSignal): Promise<void> {
    if (permits > this.capacity) {
      return Promise.reject(
        new RangeError(`asked for ${permits} permits, capacity is ${this.capacity}`),
      );
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.tryAcquire(permits)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        permits,
        resolve,
        reject,
        signal,
        onAbort: () => {
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(signal?.reason);
          // A large waiter leaving may unblock smaller ones behind it.
          this.#wake();
        },
      };
      signal?.addEventListener("abort", waiter.onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  release(permits = 1): void {
    this.#available += permits;
    if (this.#available > this.capacity) {
      throw new Error("semaphore released more permits than it handed out");
    }
    this.#wake();
  }

  /** Runs `fn` holding `permits`, releasing them however it ends. */
  async with<T>(
    permits: number,
    signal: AbortSignal | undefined,
    fn: () => Promise<T>,
  ): Promise<T> {
    await this.acquire(permits, signal);
    try {
      return await fn();
    } finally {
      this.release(permits);
    }
  }

  #wake(): void {
    while (this.#waiters.length > 0) {
      const head = this.#waiters[0]!;
      if (head.permits > this.#available) return;
      this.#waiters.shift();
      head.signal?.removeEventListener("abort", head.onAbort);
      this.#available -= head.permits;
      head.resolve();
    }
  }
}
