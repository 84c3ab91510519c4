/**
 * `wasmtime_linker_t` (`wasmtime/linker.h`) with WASI preview 1 defined:
 * resolves a module's imports and instantiates it on a worker thread.
 *
 * @module
 */
import type { Engine } from "./engine.ts";
import { check, WasmtimeFfiError } from "./trap.ts";
import { type CallOutcome, callOutcome, EXTERN_SIZE, Instance, INSTANCE_SIZE } from "./instance.ts";
import { loadWasmtime, type WasmtimeLib } from "./library.ts";
import type { ImportName, Module } from "./module.ts";
import type { Store } from "./store.ts";
import { encoder, pointerIn, pointerOut } from "./_memory.ts";

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
