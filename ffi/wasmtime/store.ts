/**
 * `wasmtime_store_t` and its context (`wasmtime/store.h`): guest state, the
 * WASI context, limits, fuel and the epoch deadline.
 *
 * @module
 */
import type { Engine } from "./engine.ts";
import { check, WasmtimeFfiError } from "./trap.ts";
import { loadWasmtime, type WasmtimeLib } from "./library.ts";
import type { WasiConfig } from "./wasi.ts";

/** Store limits; a negative or absent value keeps wasmtime's default. */
export interface StoreLimits {
  /** Maximum bytes one linear memory may grow to. */
  memorySize?: number;
  /** Maximum elements in a table. */
  tableElements?: number;
  /** Maximum instances. */
  instances?: number;
  /** Maximum tables. */
  tables?: number;
  /** Maximum memories. */
  memories?: number;
}

/** A `wasmtime_store_t`: guest state, WASI context, limits, fuel, deadline. */
export class Store {
  #lib: WasmtimeLib;
  #ptr: Deno.PointerValue;
  #context: Deno.PointerValue;

  /** Makes a store for `engine`. */
  constructor(engine: Engine) {
    this.#lib = loadWasmtime();
    this.#ptr = this.#lib.wasmtime_store_new(engine.pointer, null, null);
    if (this.#ptr === null) throw new WasmtimeFfiError("wasmtime_store_new failed");
    this.#context = this.#lib.wasmtime_store_context(this.#ptr);
  }

  /** The raw `wasmtime_context_t*`; valid until close(). */
  get context(): Deno.PointerObject {
    if (this.#ptr === null || this.#context === null) {
      throw new WasmtimeFfiError("Store is closed");
    }
    return this.#context;
  }

  /** Sets resource limits for future growth and instantiation. */
  setLimits(limits: StoreLimits): void {
    const n = (v: number | undefined) => BigInt(v === undefined ? -1 : Math.floor(v));
    this.#lib.wasmtime_store_limiter(
      this.#ptr,
      n(limits.memorySize),
      n(limits.tableElements),
      n(limits.instances),
      n(limits.tables),
      n(limits.memories),
    );
  }

  /** Sets the fuel left (the engine must consume fuel). */
  setFuel(fuel: bigint): void {
    check(this.#lib, this.#lib.wasmtime_context_set_fuel(this.context, fuel));
  }

  /** Returns the fuel left. */
  getFuel(): bigint {
    const out = new BigUint64Array(1);
    check(this.#lib, this.#lib.wasmtime_context_get_fuel(this.context, new Uint8Array(out.buffer)));
    return out[0];
  }

  /** Traps the guest with `interrupt` once the epoch is `ticks` beyond the current one. */
  setEpochDeadline(ticks: bigint): void {
    this.#lib.wasmtime_context_set_epoch_deadline(this.context, ticks);
  }

  /** Gives the store its WASI context; the config is consumed. */
  setWasi(config: WasiConfig): void {
    check(this.#lib, this.#lib.wasmtime_context_set_wasi(this.context, config.take()));
  }

  /** Frees the store, its instances and its WASI context (closing files it opened). */
  close(): void {
    if (this.#ptr !== null) this.#lib.wasmtime_store_delete(this.#ptr);
    this.#ptr = null;
    this.#context = null;
  }

  /** Same as close(). */
  [Symbol.dispose](): void {
    this.close();
  }
}
