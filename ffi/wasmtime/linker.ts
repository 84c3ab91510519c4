/**
 * `wasmtime_linker_t` (`wasmtime/linker.h`) with WASI preview 1 defined,
 * which resolves a module's imports and instantiates it on a worker thread;
 * and what it makes, `wasmtime_instance_t` and `wasmtime_extern_t`
 * (`wasmtime/instance.h`, `wasmtime/extern.h`, `wasmtime/func.h`): an
 * instantiated module, its exports, and calling guest code on a worker thread
 * (the FFI `nonblocking` option), so that the event loop keeps serving timers
 * and output streams. One module, not two: Deno pays for every module that
 * `enarx run` loads.
 *
 * @module
 */
import type { Engine } from "./engine.ts";
import {
  check,
  takeError,
  takeTrap,
  type TrapInfo,
  type WasmFrame,
  WasmtimeFfiError,
} from "./trap.ts";
import { encoder, loadWasmtime, pointerIn, pointerOut, type WasmtimeLib } from "./library.ts";
import type { ImportName, Module } from "./module.ts";
import type { Store } from "./store.ts";

/** A `wasmtime_linker_t` with WASI preview 1 defined. */
export class Linker {
  #lib: WasmtimeLib;
  #ptr: Deno.PointerValue;

  /** Makes a linker for `engine`, with `wasi_snapshot_preview1` (and `wasi_unstable`) defined. */
  constructor(engine: Engine) {
    this.#lib = loadWasmtime();
    this.#ptr = this.#lib.wasmtime_linker_new(engine.pointer);
    if (this.#ptr === null) throw new WasmtimeFfiError("wasmtime_linker_new failed");
    try {
      check(this.#lib, this.#lib.wasmtime_linker_define_wasi(this.#ptr));
    } catch (error) {
      this.close();
      throw error;
    }
  }

  #self(): Deno.PointerObject {
    if (this.#ptr === null) throw new WasmtimeFfiError("Linker is closed");
    return this.#ptr;
  }

  /** The raw `wasmtime_linker_t*` (for ffi/wasi_sockets.ts); valid until close(). */
  get pointer(): Deno.PointerObject {
    return this.#self();
  }

  /** Whether the linker defines `module`.`name` (in the context of `store`). */
  defines(store: Store, item: ImportName): boolean {
    const mod = encoder.encode(item.module);
    const name = encoder.encode(item.name);
    const out = new Uint8Array(EXTERN_SIZE);
    const found = this.#lib.wasmtime_linker_get(
      this.#self(),
      store.context,
      mod,
      BigInt(mod.length),
      name,
      BigInt(name.length),
      out,
    );
    if (found) this.#lib.wasmtime_extern_delete(out);
    return found;
  }

  /**
   * Instantiates `module` in `store` on a worker thread (a start function may
   * run guest code). Resolves to the instance, or to the trap or error that
   * stopped it.
   */
  async instantiate(
    store: Store,
    module: Module,
  ): Promise<{ instance: Instance } | { failed: CallOutcome }> {
    const raw = new Uint8Array(INSTANCE_SIZE);
    const trapOut = pointerOut();
    const error = await this.#lib.wasmtime_linker_instantiate_nonblocking(
      this.#self(),
      store.context,
      module.pointer,
      raw,
      new Uint8Array(trapOut.buffer),
    );
    const result = callOutcome(this.#lib, error, pointerIn(trapOut));
    if (result.kind === "return") return { instance: new Instance(store, raw) };
    return { failed: result };
  }

  /** Frees the linker. */
  close(): void {
    if (this.#ptr !== null) this.#lib.wasmtime_linker_delete(this.#ptr);
    this.#ptr = null;
  }

  /** Same as close(). */
  [Symbol.dispose](): void {
    this.close();
  }
}

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
