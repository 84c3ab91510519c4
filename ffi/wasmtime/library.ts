/**
 * Loading libwasmtime: once per process, from a path that runtime/ finds
 * (runtime/wasm/libwasmtime_path.ts). The 68 functions are bound as
 * addresses and called through `Deno.UnsafeFnPointer` (ffi/_bind_symbols.ts),
 * which keeps loading to a few milliseconds of enarx's start-up budget.
 *
 * @module
 */
import { bindSymbols } from "../_bind_symbols.ts";
import { WASMTIME_SYMBOLS } from "./_symbols.ts";

export { WASMTIME_SYMBOLS };

/** The bound functions of libwasmtime. */
export type WasmtimeLib = Deno.DynamicLibrary<typeof WASMTIME_SYMBOLS>["symbols"];

/** Raised by {@link loadWasmtime} when the library path is missing or unusable. */
export class WasmtimeLoadError extends Error {
  /** Makes a load error. */
  constructor(message: string) {
    super(message);
    this.name = "WasmtimeLoadError";
  }
}

let loaded: { lib: WasmtimeLib; path: string } | undefined;

/** Whether {@link loadWasmtime} has loaded the library in this process. */
export function wasmtimeLoaded(): boolean {
  return loaded !== undefined;
}

/** The path libwasmtime was loaded from in this process, or undefined before it is loaded. */
export function wasmtimeLibraryPath(): string | undefined {
  return loaded?.path;
}

/**
 * Opens libwasmtime once per process, from `path`; later calls return the
 * library already open (and need no path). Throws WasmtimeLoadError when no
 * library is open and no path is given, or when it cannot be opened.
 */
export function loadWasmtime(path?: string): WasmtimeLib {
  if (loaded) return loaded.lib;
  if (!path) {
    throw new WasmtimeLoadError(
      "libwasmtime is not loaded; give loadWasmtime the path of libwasmtime.so first",
    );
  }
  try {
    Deno.statSync(path);
  } catch {
    throw new WasmtimeLoadError(`Cannot find libwasmtime at "${path}"`);
  }
  let lib;
  try {
    lib = bindSymbols(path, WASMTIME_SYMBOLS);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new WasmtimeLoadError(`Cannot load libwasmtime "${path}": ${why}`);
  }
  loaded = { lib, path };
  return lib;
}
