/**
 * The wasmtime C API symbols that enarx binds, as a `Deno.dlopen` symbol
 * table. The prototypes come from wasmtime 50's headers (`wasm.h`, `wasi.h`,
 * `wasmtime/*.h`); tests/wasm/wasmtime_ffi_test.ts parses those headers and checks
 * every entry here against them. Private to ffi/wasmtime/.
 *
 * Pointer parameters that receive caller-owned memory are `buffer`; opaque
 * handles and out-pointers that wasmtime fills are `pointer` or `buffer`.
 *
 * @module
 */

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
