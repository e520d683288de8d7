/**
 * One standalone Emscripten module (no JS glue) instantiated on demand and reused while healthy:
 * the decoders of imaging/heif and imaging/webp. Runtime-agnostic: it takes a compiled module
 * (workerd: the bundled `.wasm` import; Node: `compileWasm` of the file's bytes).
 *
 * The instance is dropped after any error thrown out of WASM (its stack and heap are then in an
 * unknown state) and after a call that left linear memory larger than `recycleAboveBytes` (WASM
 * memory never shrinks), so that the next call starts from a fresh small memory. Nothing is
 * instantiated until the first call: a format that never arrives costs no memory.
 */

export interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
/** A compiled module: workerd's bundled `.wasm` import, or `compileWasm` (Node only). */
export type WasmModule = object;
interface WasmApi {
  instantiate(module: WasmModule, imports: object): Promise<{ readonly exports: unknown }>;
  compile(bytes: Uint8Array): Promise<WasmModule>;
}
// Reached through globalThis: the repo's Node type-check declares no WebAssembly values.
const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** Compiles a module from its bytes. Node and tests only: workerd refuses to compile at run time. */
export function compileWasm(bytes: Uint8Array): Promise<WasmModule> {
  return wasmApi.compile(bytes);
}

/** Instantiates a compiled module with these imports. */
export function instantiateWasm(
  module: WasmModule,
  imports: object,
): Promise<{ readonly exports: unknown }> {
  return wasmApi.instantiate(module, imports);
}

export interface StandaloneExports {
  readonly memory: WasmMemory;
  _initialize(): void;
}

const WASI_EBADF = 8;

export class WasmInstance<E extends StandaloneExports> {
  readonly #module: WasmModule;
  readonly #recycleAbove: number;
  readonly #exit: (code: number) => Error;
  #exports: E | undefined;
  #peak = 0;

  constructor(module: WasmModule, recycleAboveBytes: number, exit: (code: number) => Error) {
    this.#module = module;
    this.#recycleAbove = recycleAboveBytes;
    this.#exit = exit;
  }

  /** Largest linear memory seen since the last `resetPeak` (bytes). */
  get peakMemoryBytes(): number {
    return Math.max(this.#peak, this.#exports?.memory.buffer.byteLength ?? 0);
  }

  resetPeak(): void {
    this.#peak = this.#exports?.memory.buffer.byteLength ?? 0;
  }

  /** Runs `use` on the (possibly fresh) instance; see the class comment for when it is dropped. */
  async run<T>(use: (exports: E) => T): Promise<T> {
    const ex = this.#exports ?? (await this.#instantiate());
    let failed = true;
    try {
      const result = use(ex);
      failed = false;
      return result;
    } finally {
      const size = ex.memory.buffer.byteLength;
      this.#peak = Math.max(this.#peak, size);
      if (failed || size > this.#recycleAbove) this.#exports = undefined;
    }
  }

  async #instantiate(): Promise<E> {
    const exit = this.#exit;
    const imports = {
      env: { emscripten_notify_memory_growth() {} },
      wasi_snapshot_preview1: {
        proc_exit(code: number): never {
          throw exit(code);
        },
        fd_close: () => WASI_EBADF,
        fd_write: () => WASI_EBADF,
        fd_seek: () => WASI_EBADF,
      },
    };
    const instance = await instantiateWasm(this.#module, imports);
    const exports = instance.exports as E;
    exports._initialize();
    this.#exports = exports;
    return exports;
  }
}
