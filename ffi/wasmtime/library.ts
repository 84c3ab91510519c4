/**
 * libwasmtime itself: the symbols enarx binds, loading the library once per
 * process, and moving bytes, strings and pointers across its C API.
 *
 * The symbol table is a `Deno.dlopen` table whose prototypes come from
 * wasmtime 50's headers (`wasm.h`, `wasi.h`, `wasmtime/*.h`);
 * tests/wasm/wasmtime_ffi_test.ts parses those headers and checks every entry
 * against them. Pointer parameters that receive caller-owned memory are
 * `buffer`; opaque handles and out-pointers that wasmtime fills are `pointer`
 * or `buffer`.
 *
 * The library is loaded from a path that runtime/ finds
 * (runtime/wasm/libwasmtime_path.ts). Its functions are bound as addresses
 * and called through `Deno.UnsafeFnPointer` (ffi/_bind_symbols.ts), which
 * keeps loading to a few milliseconds of enarx's start-up budget; only the
 * symbols a cached run needs ({@link WASMTIME_EAGER_SYMBOLS}) are bound when
 * the library is loaded, the rest on first use.
 *
 * One module rather than three (table, loader, memory helpers): Deno pays
 * for every module `enarx run` loads (BENCHMARKS.md, start-up).
 *
 * @module
 */
import { bindSymbols } from "../_bind_symbols.ts";

/** Symbols of libwasmtime used by ffi/wasmtime/. */
export const WASMTIME_SYMBOLS = {
  // wasm.h: vectors, config, engine, traps, frames, import types
  wasm_byte_vec_new: { parameters: ["buffer", "usize", "buffer"], result: "void" },
  wasm_byte_vec_delete: { parameters: ["buffer"], result: "void" },
  wasm_config_new: { parameters: [], result: "pointer" },
  wasm_config_delete: { parameters: ["pointer"], result: "void" },
  wasm_engine_new_with_config: { parameters: ["pointer"], result: "pointer" },
  wasm_engine_delete: { parameters: ["pointer"], result: "void" },
  wasm_trap_delete: { parameters: ["pointer"], result: "void" },
  wasm_trap_message: { parameters: ["pointer", "buffer"], result: "void" },
  wasm_trap_trace: { parameters: ["pointer", "buffer"], result: "void" },
  wasm_frame_vec_delete: { parameters: ["buffer"], result: "void" },
  wasm_frame_func_index: { parameters: ["pointer"], result: "u32" },
  wasm_frame_func_offset: { parameters: ["pointer"], result: "usize" },
  wasm_frame_module_offset: { parameters: ["pointer"], result: "usize" },
  wasm_importtype_vec_delete: { parameters: ["buffer"], result: "void" },
  wasm_importtype_module: { parameters: ["pointer"], result: "pointer" },
  wasm_importtype_name: { parameters: ["pointer"], result: "pointer" },
  wasm_exporttype_vec_delete: { parameters: ["buffer"], result: "void" },
  wasm_exporttype_name: { parameters: ["pointer"], result: "pointer" },

  // wasmtime/config.h
  wasmtime_config_cranelift_opt_level_set: { parameters: ["pointer", "u8"], result: "void" },
  wasmtime_config_epoch_interruption_set: { parameters: ["pointer", "bool"], result: "void" },
  wasmtime_config_consume_fuel_set: { parameters: ["pointer", "bool"], result: "void" },
  wasmtime_config_parallel_compilation_set: { parameters: ["pointer", "bool"], result: "void" },

  // wasmtime/engine.h
  wasmtime_engine_increment_epoch: { parameters: ["pointer"], result: "void" },

  // wasmtime/error.h
  wasmtime_error_delete: { parameters: ["pointer"], result: "void" },
  wasmtime_error_message: { parameters: ["pointer", "buffer"], result: "void" },
  wasmtime_error_exit_status: { parameters: ["pointer", "buffer"], result: "bool" },
  wasmtime_error_wasm_trace: { parameters: ["pointer", "buffer"], result: "void" },

  // wasmtime/trap.h
  wasmtime_trap_code: { parameters: ["pointer", "buffer"], result: "bool" },
  wasmtime_frame_func_name: { parameters: ["pointer"], result: "pointer" },
  wasmtime_frame_module_name: { parameters: ["pointer"], result: "pointer" },

  // wasmtime/wat.h
  wasmtime_wat2wasm: { parameters: ["buffer", "usize", "buffer"], result: "pointer" },

  // wasmtime/module.h
  wasmtime_module_validate: { parameters: ["pointer", "buffer", "usize"], result: "pointer" },
  wasmtime_module_new: { parameters: ["pointer", "buffer", "usize", "buffer"], result: "pointer" },
  wasmtime_module_new_nonblocking: {
    name: "wasmtime_module_new",
    parameters: ["pointer", "buffer", "usize", "buffer"],
    result: "pointer",
    nonblocking: true,
  },
  wasmtime_module_delete: { parameters: ["pointer"], result: "void" },
  wasmtime_module_serialize: { parameters: ["pointer", "buffer"], result: "pointer" },
  wasmtime_module_deserialize: {
    parameters: ["pointer", "buffer", "usize", "buffer"],
    result: "pointer",
  },
  wasmtime_module_deserialize_file: {
    parameters: ["pointer", "buffer", "buffer"],
    result: "pointer",
  },
  wasmtime_module_imports: { parameters: ["pointer", "buffer"], result: "void" },
  wasmtime_module_exports: { parameters: ["pointer", "buffer"], result: "void" },

  // wasmtime/store.h
  wasmtime_store_new: { parameters: ["pointer", "pointer", "pointer"], result: "pointer" },
  wasmtime_store_context: { parameters: ["pointer"], result: "pointer" },
  wasmtime_store_limiter: {
    parameters: ["pointer", "i64", "i64", "i64", "i64", "i64"],
    result: "void",
  },
  wasmtime_store_delete: { parameters: ["pointer"], result: "void" },
  wasmtime_context_set_fuel: { parameters: ["pointer", "u64"], result: "pointer" },
  wasmtime_context_get_fuel: { parameters: ["pointer", "buffer"], result: "pointer" },
  wasmtime_context_set_wasi: { parameters: ["pointer", "pointer"], result: "pointer" },
  wasmtime_context_set_epoch_deadline: { parameters: ["pointer", "u64"], result: "void" },

  // wasmtime/linker.h
  wasmtime_linker_new: { parameters: ["pointer"], result: "pointer" },
  wasmtime_linker_delete: { parameters: ["pointer"], result: "void" },
  wasmtime_linker_define_wasi: { parameters: ["pointer"], result: "pointer" },
  wasmtime_linker_get: {
    parameters: ["pointer", "pointer", "buffer", "usize", "buffer", "usize", "buffer"],
    result: "bool",
  },
  wasmtime_linker_instantiate_nonblocking: {
    name: "wasmtime_linker_instantiate",
    parameters: ["pointer", "pointer", "pointer", "buffer", "buffer"],
    result: "pointer",
    nonblocking: true,
  },

  // wasmtime/instance.h, extern.h, memory.h
  wasmtime_instance_export_get: {
    parameters: ["pointer", "buffer", "buffer", "usize", "buffer"],
    result: "bool",
  },
  wasmtime_extern_delete: { parameters: ["buffer"], result: "void" },
  wasmtime_memory_data_size: { parameters: ["pointer", "buffer"], result: "usize" },

  // wasmtime/func.h: the guest runs on another thread, so that the event
  // loop keeps serving timers (epoch deadline) and output streams.
  wasmtime_func_call_nonblocking: {
    name: "wasmtime_func_call",
    parameters: ["pointer", "buffer", "pointer", "usize", "pointer", "usize", "buffer"],
    result: "pointer",
    nonblocking: true,
  },

  // wasi.h
  wasi_config_new: { parameters: [], result: "pointer" },
  wasi_config_delete: { parameters: ["pointer"], result: "void" },
  wasi_config_set_argv: { parameters: ["pointer", "usize", "buffer"], result: "bool" },
  wasi_config_set_env: { parameters: ["pointer", "usize", "buffer", "buffer"], result: "bool" },
  wasi_config_set_stdin_file: { parameters: ["pointer", "buffer"], result: "bool" },
  wasi_config_set_stdin_bytes: { parameters: ["pointer", "buffer"], result: "void" },
  wasi_config_inherit_stdin: { parameters: ["pointer"], result: "void" },
  wasi_config_set_stdout_file: { parameters: ["pointer", "buffer"], result: "bool" },
  wasi_config_inherit_stdout: { parameters: ["pointer"], result: "void" },
  wasi_config_set_stderr_file: { parameters: ["pointer", "buffer"], result: "bool" },
  wasi_config_inherit_stderr: { parameters: ["pointer"], result: "void" },
  wasi_config_preopen_dir: { parameters: ["pointer", "buffer", "buffer", "bool"], result: "bool" },
} as const satisfies Deno.ForeignLibraryInterface;

/**
 * The symbols a cached `enarx run` calls, bound when the library is loaded;
 * the others (compiling, serializing, traps, errors, limits, fuel) are bound
 * together on the first use of any of them (ffi/_bind_symbols.ts).
 */
export const WASMTIME_EAGER_SYMBOLS: readonly (keyof typeof WASMTIME_SYMBOLS)[] = [
  "wasm_config_new",
  "wasm_engine_new_with_config",
  "wasm_engine_delete",
  "wasm_importtype_vec_delete",
  "wasm_importtype_module",
  "wasm_importtype_name",
  "wasm_exporttype_vec_delete",
  "wasm_exporttype_name",
  "wasmtime_config_cranelift_opt_level_set",
  "wasmtime_config_epoch_interruption_set",
  "wasmtime_config_consume_fuel_set",
  "wasmtime_module_delete",
  "wasmtime_module_deserialize_file",
  "wasmtime_module_imports",
  "wasmtime_module_exports",
  "wasmtime_store_new",
  "wasmtime_store_context",
  "wasmtime_store_delete",
  "wasmtime_context_set_wasi",
  "wasmtime_linker_new",
  "wasmtime_linker_delete",
  "wasmtime_linker_define_wasi",
  "wasmtime_linker_get",
  "wasmtime_linker_instantiate_nonblocking",
  "wasmtime_instance_export_get",
  "wasmtime_extern_delete",
  "wasmtime_func_call_nonblocking",
  "wasi_config_new",
  "wasi_config_set_argv",
  "wasi_config_set_env",
  "wasi_config_inherit_stdin",
  "wasi_config_inherit_stdout",
  "wasi_config_inherit_stderr",
];

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
  const failure = (error: unknown) => {
    const why = error instanceof Error ? error.message : String(error);
    return new WasmtimeLoadError(`Cannot load libwasmtime "${path}": ${why}`);
  };
  let lib;
  try {
    lib = bindSymbols(path, WASMTIME_SYMBOLS, { eager: WASMTIME_EAGER_SYMBOLS, failure });
  } catch (error) {
    throw failure(error);
  }
  loaded = { lib, path };
  return lib;
}

// Moving values across the C API.

/** Encodes strings for C. */
export const encoder: TextEncoder = new TextEncoder();
/** Decodes names and messages from C. */
export const decoder: TextDecoder = new TextDecoder();

/** A NUL-terminated UTF-8 copy of `text` for C. */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(text);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** Reads a `wasm_byte_vec_t`/`wasm_name_t` ({size, data}) at `vec`. */
export function readByteVec(vec: Deno.PointerValue): Uint8Array {
  if (vec === null) return new Uint8Array(0);
  const view = new Deno.UnsafePointerView(vec);
  const size = Number(view.getBigUint64(0));
  const data = view.getPointer(8);
  if (size === 0 || data === null) return new Uint8Array(0);
  return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(data, size).slice(0));
}

/** Room for one `{size, data}` vector that wasmtime fills. */
export function vecBuffer(): Uint8Array<ArrayBuffer> {
  return new Uint8Array(16);
}

/** The size and data pointer of a vector filled in `buffer`. */
export function vecOf(buffer: Uint8Array<ArrayBuffer>): { size: number; data: Deno.PointerValue } {
  const view = new DataView(buffer.buffer);
  const size = Number(view.getBigUint64(0, true));
  const data = Deno.UnsafePointer.create(view.getBigUint64(8, true));
  return { size, data };
}

/** Room for one pointer that wasmtime fills. */
export function pointerOut(): BigUint64Array<ArrayBuffer> {
  return new BigUint64Array(1);
}

/** The pointer filled in `out`. */
export function pointerIn(out: BigUint64Array): Deno.PointerValue {
  return Deno.UnsafePointer.create(out[0]);
}
