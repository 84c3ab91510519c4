/**
 * `wasmtime_instance_t` and `wasmtime_extern_t` (`wasmtime/instance.h`,
 * `wasmtime/extern.h`, `wasmtime/func.h`): an instantiated module, its
 * exports, and calling guest code on a worker thread (the FFI `nonblocking`
 * option), so that the event loop keeps serving timers and output streams.
 *
 * @module
 */
import { loadWasmtime, type WasmtimeLib } from "./library.ts";
import type { Store } from "./store.ts";
import { takeError, takeTrap, type TrapInfo, type WasmFrame, WasmtimeFfiError } from "./trap.ts";
import { encoder, pointerIn, pointerOut } from "./_memory.ts";

/** The size in bytes of `wasmtime_extern_t` (wasmtime/extern.h; checked by a test). */
export const EXTERN_SIZE = 32;
/** Offset of the `of` union in `wasmtime_extern_t`. */
export const EXTERN_OF_OFFSET = 8;
const EXTERN_FUNC = 0;
const EXTERN_MEMORY = 3;
/** The size in bytes of `wasmtime_instance_t`. */
export const INSTANCE_SIZE = 16;

/** The outcome of running guest code. */
export type CallOutcome =
  | { kind: "return" }
  | { kind: "exit"; status: number }
  | { kind: "trap"; trap: TrapInfo }
  | { kind: "error"; message: string; frames: WasmFrame[] };

/** An instantiated module (owned by its store; no close of its own). */
export class Instance {
  #lib: WasmtimeLib;
  #store: Store;
  #raw: Uint8Array<ArrayBuffer>;

  /** Wraps a filled `wasmtime_instance_t`. */
  constructor(store: Store, raw: Uint8Array<ArrayBuffer>) {
    this.#lib = loadWasmtime();
    this.#store = store;
    this.#raw = raw;
  }

  #export(name: string, kind: number): Uint8Array<ArrayBuffer> | undefined {
    const item = new Uint8Array(EXTERN_SIZE);
    const bytes = encoder.encode(name);
    const found = this.#lib.wasmtime_instance_export_get(
      this.#store.context,
      this.#raw,
      bytes,
      BigInt(bytes.length),
      item,
    );
    if (!found) return undefined;
    if (item[0] !== kind) {
      this.#lib.wasmtime_extern_delete(item);
      return undefined;
    }
    return item;
  }

  /** Whether the instance exports a function called `name`. */
  hasFunc(name: string): boolean {
    return this.#export(name, EXTERN_FUNC) !== undefined;
  }

  /** The current byte size of exported memory `name`, or undefined if absent. */
  memorySize(name: string): number | undefined {
    const item = this.#export(name, EXTERN_MEMORY);
    if (item === undefined) return undefined;
    return Number(
      this.#lib.wasmtime_memory_data_size(this.#store.context, item.subarray(EXTERN_OF_OFFSET)),
    );
  }

  /**
   * Calls exported function `name` with no arguments and no results on a
   * worker thread. Resolves with how it ended; rejects only if there is no
   * such function.
   */
  async callNonblocking(name: string): Promise<CallOutcome> {
    const item = this.#export(name, EXTERN_FUNC);
    if (item === undefined) throw new WasmtimeFfiError(`No exported function "${name}"`);
    const func = item.subarray(EXTERN_OF_OFFSET);
    const trapOut = pointerOut();
    const error = await this.#lib.wasmtime_func_call_nonblocking(
      this.#store.context,
      func,
      null,
      0n,
      null,
      0n,
      new Uint8Array(trapOut.buffer),
    );
    return callOutcome(this.#lib, error, pointerIn(trapOut));
  }
}

/** How a guest call ended, from the error and trap it left (both freed). */
export function callOutcome(
  lib: WasmtimeLib,
  error: Deno.PointerValue,
  trap: Deno.PointerValue,
): CallOutcome {
  if (error !== null) {
    const e = takeError(lib, error);
    if (trap !== null) lib.wasm_trap_delete(trap);
    if (e.exitStatus !== undefined) return { kind: "exit", status: e.exitStatus };
    return { kind: "error", message: e.message, frames: e.frames };
  }
  if (trap !== null) return { kind: "trap", trap: takeTrap(lib, trap) };
  return { kind: "return" };
}
