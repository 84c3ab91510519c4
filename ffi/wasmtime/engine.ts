/**
 * `wasm_engine_t` and its configuration (`wasm.h`, `wasmtime/config.h`,
 * `wasmtime/engine.h`): compiles modules and owns the epoch counter.
 *
 * @module
 */
import { WasmtimeFfiError } from "./trap.ts";
import { loadWasmtime, type WasmtimeLib } from "./library.ts";

/** Cranelift optimisation levels (`wasmtime_opt_level_t`). */
export type OptLevel = "none" | "speed" | "speed_and_size";
const OPT_LEVELS: Record<OptLevel, number> = { none: 0, speed: 1, speed_and_size: 2 };

/** Engine settings that change compiled code (and so are part of a cache key). */
export interface EngineOptions {
  /** Cranelift optimisation level (default `speed`). */
  optLevel?: OptLevel;
  /** Compile in epoch checks, so a deadline can stop the guest. */
  epochInterruption?: boolean;
  /** Compile in fuel metering. */
  consumeFuel?: boolean;
}

/** A `wasm_engine_t`: compiles modules and owns the epoch counter. */
export class Engine {
  #lib: WasmtimeLib;
  #ptr: Deno.PointerValue;
  /** The options the engine was made with. */
  readonly options: Readonly<Required<EngineOptions>>;

  /** Makes an engine; loads libwasmtime on first use. */
  constructor(options: EngineOptions = {}) {
    this.#lib = loadWasmtime();
    this.options = {
      optLevel: options.optLevel ?? "speed",
      epochInterruption: options.epochInterruption ?? false,
      consumeFuel: options.consumeFuel ?? false,
    };
    const config = this.#lib.wasm_config_new();
    if (config === null) throw new WasmtimeFfiError("wasm_config_new failed");
    this.#lib.wasmtime_config_cranelift_opt_level_set(config, OPT_LEVELS[this.options.optLevel]);
    this.#lib.wasmtime_config_epoch_interruption_set(config, this.options.epochInterruption);
    this.#lib.wasmtime_config_consume_fuel_set(config, this.options.consumeFuel);
    // Takes ownership of config, also on failure.
    this.#ptr = this.#lib.wasm_engine_new_with_config(config);
    if (this.#ptr === null) throw new WasmtimeFfiError("wasm_engine_new_with_config failed");
  }

  /** The raw `wasm_engine_t*`; valid until close(). */
  get pointer(): Deno.PointerObject {
    if (this.#ptr === null) throw new WasmtimeFfiError("Engine is closed");
    return this.#ptr;
  }

  /** Advances the epoch counter; stores past their deadline trap with `interrupt`. */
  incrementEpoch(): void {
    if (this.#ptr !== null) this.#lib.wasmtime_engine_increment_epoch(this.#ptr);
  }

  /** Frees the engine. Modules and stores made from it must be closed first. */
  close(): void {
    if (this.#ptr !== null) this.#lib.wasm_engine_delete(this.#ptr);
    this.#ptr = null;
  }

  /** Same as close(). */
  [Symbol.dispose](): void {
    this.close();
  }
}
