/**
 * A thin, ownership-explicit binding of wasmtime's C API (wasmtime 50) over
 * Deno's FFI, one file per C header concept: {@link loadWasmtime} (loading),
 * {@link Engine}, {@link Module} (and {@link wat2wasm}), {@link Store},
 * {@link WasiConfig}, {@link Linker}, {@link Instance}, traps and errors, and
 * the {@link Pipe} that streams guest output. Every native handle is a class
 * with `close()` and `[Symbol.dispose]`; nothing here decides policy
 * (limits, exit statuses, messages for people), which belongs to runtime/.
 *
 * The library is loaded from the path given to {@link loadWasmtime}; where
 * that path comes from is runtime/'s business (runtime/wasm/libwasmtime_path.ts).
 *
 * @module
 */
export {
  loadWasmtime,
  WASMTIME_SYMBOLS,
  wasmtimeLibraryPath,
  wasmtimeLoaded,
  WasmtimeLoadError,
} from "./library.ts";
export { TrapCode, type TrapInfo, type WasmFrame, WasmtimeFfiError } from "./trap.ts";
export { Engine, type EngineOptions, type OptLevel } from "./engine.ts";
export { type ImportName, Module, wat2wasm } from "./module.ts";
export { WasiConfig, type WasiInput, type WasiOutput } from "./wasi.ts";
export { Store, type StoreLimits } from "./store.ts";
export {
  type CallOutcome,
  EXTERN_OF_OFFSET,
  EXTERN_SIZE,
  Instance,
  INSTANCE_SIZE,
  Linker,
} from "./linker.ts";
export { Pipe } from "./pipe.ts";
