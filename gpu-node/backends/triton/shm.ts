/**
 * System shared-memory slots for Triton inputs: files under /dev/shm that Triton maps after
 * SystemSharedMemoryRegister. A batch's tensor is written into a free slot and the request
 * names the slot instead of carrying the bytes. A slot belongs to one request at a time.
 */
import { randomBytes } from "node:crypto";
import { closeSync, ftruncateSync, openSync, unlinkSync, writeSync } from "node:fs";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "../../logger.ts";
import type { TritonRpc } from "./client.ts";
import { sentByServer } from "./errors.ts";

/** Where shm_open(3) puts "/name" on Linux: the key Triton opens is this file. */
export const SHM_DIR = "/dev/shm";
/** Every region this process creates starts with this, then the pid: easy to find and clean. */
export const SHM_PREFIX = "gpu-node-triton";

export interface ShmSlot {
  /** Region name in Triton's registry, also the file name under /dev/shm. */
  readonly name: string;
  /** The shm_open key: "/" + name. */
  readonly key: string;
  readonly byteSize: number;
}

/** Triton answered SystemSharedMemoryRegister with an error (e.g. client shm not allowed). */
export class ShmRefusedError extends Error {
  override name = "ShmRefusedError";
}

interface OwnedSlot extends ShmSlot {
  fd: number;
  registered: boolean;
}

export interface ShmPoolOptions {
  readonly rpc: TritonRpc;
  /** Bytes of each slot: the largest request's input tensor. */
  readonly slotBytes: number;
  /** Slots never exceed this; a request beyond it waits for a free one. */
  readonly maxSlots: number;
  /** Deadline of each registration call. */
  readonly timeoutMs: number;
  readonly log: Logger;
}

export class ShmPool {
  readonly #opts: ShmPoolOptions;
  readonly #tag = `${SHM_PREFIX}-${process.pid}-${randomBytes(4).toString("hex")}`;
  readonly #slots: OwnedSlot[] = [];
  readonly #free: OwnedSlot[] = [];
  readonly #waiters: Array<(slot: OwnedSlot) => void> = [];
  #creating = 0;
  #seq = 0;
  #closed = false;
  /** A process that exits without close() still removes its files. */
  readonly #onExit = () => this.#unlinkAll();

  constructor(opts: ShmPoolOptions) {
    this.#opts = opts;
    process.once("exit", this.#onExit);
  }

  /** Slots that exist (registered or not). */
  get size(): number {
    return this.#slots.length;
  }

  /** Slots lent out right now. */
  get inUse(): number {
    return this.#slots.length - this.#free.length;
  }

  /** Names of the files this pool owns under /dev/shm. */
  names(): string[] {
    return this.#slots.map((s) => s.name);
  }

  /** Creates and registers `count` slots now, so that a refusal shows at start. */
  async prepare(count: number): Promise<void> {
    const want = Math.min(count, this.#opts.maxSlots) - this.#slots.length;
    const made = await Promise.all(Array.from({ length: Math.max(0, want) }, () => this.#create()));
    this.#free.push(...made);
  }

  /** A free slot, a new one while under maxSlots, or the next one released. */
  async acquire(signal?: AbortSignal): Promise<ShmSlot> {
    if (this.#closed) throw new ConnectError("shared memory closed", Code.Unavailable);
    const free = this.#free.pop();
    if (free) return free;
    if (this.#slots.length + this.#creating < this.#opts.maxSlots) return this.#create();
    signal?.throwIfAborted();
    return new Promise<ShmSlot>((resolve, reject) => {
      const waiter = (slot: OwnedSlot) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(slot);
      };
      const onAbort = () => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(signal?.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /**
   * Hands the slot to the next waiter or back to the free list. Called once the request that
   * used it has settled; a request we abandoned may still be read by Triton, but its result is
   * discarded, and outputs never travel through shared memory, so a reused slot cannot put
   * one batch's embeddings into another's answer.
   */
  release(slot: ShmSlot): void {
    const owned = this.#slots.find((s) => s.name === slot.name);
    if (!owned || this.#closed) return;
    const next = this.#waiters.shift();
    if (next) next(owned);
    else this.#free.push(owned);
  }

  /** Copies one request's tensor into the slot (node has no mmap: one pwrite into tmpfs). */
  write(slot: ShmSlot, bytes: Uint8Array): void {
    const owned = this.#slots.find((s) => s.name === slot.name);
    if (!owned) throw new Error(`unknown shared-memory slot ${slot.name}`);
    if (bytes.byteLength > owned.byteSize) {
      throw new Error(`tensor of ${bytes.byteLength} bytes does not fit slot of ${owned.byteSize}`);
    }
    let done = 0;
    while (done < bytes.byteLength) {
      done += writeSync(owned.fd, bytes, done, bytes.byteLength - done, done);
    }
  }

  /**
   * After Triton came back: registers every slot it does not know (a restarted Triton has
   * forgotten them all; a Triton that merely dropped the connection still has them).
   */
  async reregister(): Promise<void> {
    const status = await this.#opts.rpc.systemSharedMemoryStatus(
      {},
      { timeoutMs: this.#opts.timeoutMs },
    );
    for (const slot of this.#slots) {
      slot.registered = status.regions[slot.name] !== undefined;
    }
    await Promise.all(this.#slots.filter((s) => !s.registered).map((s) => this.#register(s)));
  }

  /** Unregisters (best effort) and removes every region; further acquires fail. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    process.removeListener("exit", this.#onExit);
    await Promise.all(
      this.#slots
        .filter((s) => s.registered)
        .map((s) =>
          this.#opts.rpc
            .systemSharedMemoryUnregister({ name: s.name }, { timeoutMs: this.#opts.timeoutMs })
            .catch((err: unknown) =>
              this.#opts.log.debug({ region: s.name, err }, "unregister failed"),
            ),
        ),
    );
    this.#unlinkAll();
  }

  /** Removes the files without telling Triton (it keeps its mapping until it unregisters). */
  discard(): void {
    this.#closed = true;
    process.removeListener("exit", this.#onExit);
    this.#unlinkAll();
  }

  async #create(): Promise<OwnedSlot> {
    this.#creating++;
    const name = `${this.#tag}-${this.#seq++}`;
    const path = `${SHM_DIR}/${name}`;
    let fd: number | undefined;
    try {
      fd = openSync(path, "wx+", 0o600);
      ftruncateSync(fd, this.#opts.slotBytes);
      const slot: OwnedSlot = {
        name,
        key: `/${name}`,
        byteSize: this.#opts.slotBytes,
        fd,
        registered: false,
      };
      await this.#register(slot);
      if (this.#closed) throw new ConnectError("shared memory closed", Code.Unavailable);
      this.#slots.push(slot);
      return slot;
    } catch (err) {
      if (fd !== undefined) {
        closeSync(fd);
        unlinkSync(path);
      }
      throw err;
    } finally {
      this.#creating--;
    }
  }

  async #register(slot: OwnedSlot): Promise<void> {
    try {
      await this.#opts.rpc.systemSharedMemoryRegister(
        { name: slot.name, key: slot.key, offset: 0n, byteSize: BigInt(slot.byteSize) },
        { timeoutMs: this.#opts.timeoutMs },
      );
      slot.registered = true;
    } catch (err) {
      const ce = ConnectError.from(err);
      // Triton said no (not the connection failing): shared memory is not available to us.
      if (sentByServer(ce)) throw new ShmRefusedError(ce.rawMessage);
      throw err;
    }
  }

  #unlinkAll(): void {
    for (const slot of this.#slots.splice(0)) {
      try {
        closeSync(slot.fd);
      } catch {}
      try {
        unlinkSync(`${SHM_DIR}/${slot.name}`);
      } catch {}
    }
    this.#free.length = 0;
  }
}
