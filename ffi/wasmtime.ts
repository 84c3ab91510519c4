/**
 * A thin, ownership-explicit binding of wasmtime's C API (wasmtime 50) over
 * `Deno.dlopen`. Every native handle is a class with `close()` and
 * `[Symbol.dispose]`; nothing here decides policy (limits, exit statuses,
 * messages for people), which belongs to runtime/.
 *
 * The library is loaded from the path given to {@link loadWasmtime}; where
 * that path comes from is runtime/'s business (runtime/wasm/libwasmtime_path.ts).
 *
 * Symbols are bound without Deno's per-symbol fast-call trampolines: the
 * library is opened with every symbol as a `pointer` static (its address,
 * about 4 µs each), and each function is called through a
 * `Deno.UnsafeFnPointer` (about 1 µs a call). Binding the 68 functions the
 * usual way costs 40-170 µs per synchronous symbol, about 5 ms in all, which
 * is a third of enarx's start-up budget; enarx makes a few hundred calls per
 * run, so the slower calls cost well under a millisecond.
 *
 * @module
 */
import { LIBC_SYMBOLS, WASMTIME_SYMBOLS } from "./_wasmtime_symbols.ts";

export { WASMTIME_SYMBOLS };

type Lib = Deno.DynamicLibrary<typeof WASMTIME_SYMBOLS>["symbols"];
type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

/** Raised when libwasmtime cannot be loaded or a C API call fails. */
export class WasmtimeFfiError extends Error {
  /** Exit status carried by a WASI `proc_exit`, if the error is one. */
  readonly exitStatus?: number;
  /** Wasm frames of the error's backtrace, innermost first. */
  readonly frames: WasmFrame[];

  /** Makes an error from wasmtime's message. */
  constructor(message: string, options: { exitStatus?: number; frames?: WasmFrame[] } = {}) {
    super(message);
    this.name = "WasmtimeFfiError";
    this.exitStatus = options.exitStatus;
    this.frames = options.frames ?? [];
  }
}

/** Raised by {@link loadWasmtime} when the library path is missing or unusable. */
export class WasmtimeLoadError extends Error {
  /** Makes a load error. */
  constructor(message: string) {
    super(message);
    this.name = "WasmtimeLoadError";
  }
}

let loaded: { lib: Lib; path: string } | undefined;
let libc: Libc | undefined;

/**
 * Binds `symbols` of the library at `path`: opens it with each symbol as a
 * `pointer` static (the symbol's address) and wraps each address in a
 * `Deno.UnsafeFnPointer` with the symbol's definition. Same result as
 * `Deno.dlopen(path, symbols).symbols`, without compiling a trampoline per
 * symbol.
 */
function bindSymbols<S extends Record<string, Deno.ForeignFunction>>(
  path: string,
  symbols: S,
): Deno.DynamicLibrary<S>["symbols"] {
  const statics: Record<string, Deno.ForeignStatic<"pointer">> = {};
  for (const [key, def] of Object.entries(symbols)) {
    statics[key] = { name: def.name ?? key, type: "pointer" };
  }
  const addresses = Deno.dlopen(path, statics).symbols as Record<string, Deno.PointerValue>;
  const bound: Record<string, unknown> = {};
  for (const [key, def] of Object.entries(symbols)) {
    const address = addresses[key];
    if (address === null) throw new Error(`Symbol "${def.name ?? key}" has a null address`);
    const { name: _name, ...definition } = def;
    const fn = new Deno.UnsafeFnPointer(address as Deno.PointerObject<never>, definition);
    bound[key] = fn.call.bind(fn);
  }
  return bound as Deno.DynamicLibrary<S>["symbols"];
}

/** Whether {@link loadWasmtime} has loaded the library in this process. */
export function wasmtimeLoaded(): boolean {
  return loaded !== undefined;
}

/**
 * Opens libwasmtime once per process, from `path`; later calls return the
 * library already open (and need no path). Throws WasmtimeLoadError when no
 * library is open and no path is given, or when it cannot be opened.
 */
export function loadWasmtime(path?: string): Lib {
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

function loadLibc(): Libc {
  libc ??= bindSymbols("libc.so.6", LIBC_SYMBOLS);
  return libc;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A NUL-terminated UTF-8 copy of `text` for C. */
function cString(text: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(text);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** Reads a `wasm_byte_vec_t`/`wasm_name_t` ({size, data}) at `vec`. */
function readByteVec(vec: Deno.PointerValue): Uint8Array {
  if (vec === null) return new Uint8Array(0);
  const view = new Deno.UnsafePointerView(vec);
  const size = Number(view.getBigUint64(0));
  const data = view.getPointer(8);
  if (size === 0 || data === null) return new Uint8Array(0);
  return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(data, size).slice(0));
}

function vecBuffer(): Uint8Array<ArrayBuffer> {
  return new Uint8Array(16);
}

function vecOf(buffer: Uint8Array<ArrayBuffer>): { size: number; data: Deno.PointerValue } {
  const view = new DataView(buffer.buffer);
  const size = Number(view.getBigUint64(0, true));
  const data = Deno.UnsafePointer.create(view.getBigUint64(8, true));
  return { size, data };
}

function pointerOut(): BigUint64Array<ArrayBuffer> {
  return new BigUint64Array(1);
}

function pointerIn(out: BigUint64Array): Deno.PointerValue {
  return Deno.UnsafePointer.create(out[0]);
}

/** One frame of a wasm backtrace. */
export interface WasmFrame {
  /** The function's name from the name section, if any. */
  funcName?: string;
  /** The module's name from the name section, if any. */
  moduleName?: string;
  /** The function's index in the module. */
  funcIndex: number;
  /** Byte offset of the instruction in the module. */
  moduleOffset: number;
}

function readFrames(lib: Lib, vec: Uint8Array<ArrayBuffer>): WasmFrame[] {
  const { size, data } = vecOf(vec);
  const frames: WasmFrame[] = [];
  if (data !== null) {
    const view = new Deno.UnsafePointerView(data);
    for (let i = 0; i < size; i++) {
      const frame = view.getPointer(i * 8);
      if (frame === null) continue;
      const func = lib.wasmtime_frame_func_name(frame);
      const mod = lib.wasmtime_frame_module_name(frame);
      frames.push({
        funcName: func === null ? undefined : decoder.decode(readByteVec(func)),
        moduleName: mod === null ? undefined : decoder.decode(readByteVec(mod)),
        funcIndex: lib.wasm_frame_func_index(frame),
        moduleOffset: Number(lib.wasm_frame_module_offset(frame)),
      });
    }
  }
  lib.wasm_frame_vec_delete(vec);
  return frames;
}

/** Reads, then deletes, a `wasmtime_error_t`. */
function takeError(lib: Lib, error: Deno.PointerObject): WasmtimeFfiError {
  const message = vecBuffer();
  lib.wasmtime_error_message(error, message);
  const text = decoder.decode(readByteVec(Deno.UnsafePointer.of(message))).replace(/\0$/, "");
  lib.wasm_byte_vec_delete(message);
  const status = new Int32Array(1);
  const isExit = lib.wasmtime_error_exit_status(error, status);
  const trace = vecBuffer();
  lib.wasmtime_error_wasm_trace(error, trace);
  const frames = readFrames(lib, trace);
  lib.wasmtime_error_delete(error);
  return new WasmtimeFfiError(text, { exitStatus: isExit ? status[0] : undefined, frames });
}

/** Throws (and frees) `error` if it is not null. */
function check(lib: Lib, error: Deno.PointerValue): void {
  if (error !== null) throw takeError(lib, error);
}

/** A trap raised by guest code: its message, wasmtime trap code and backtrace. */
export interface TrapInfo {
  /** wasmtime's message, e.g. `wasm trap: wasm \`unreachable\` instruction executed`. */
  message: string;
  /** A `WASMTIME_TRAP_CODE_*` value, if the trap has one. */
  code?: number;
  /** Wasm frames, innermost first. */
  frames: WasmFrame[];
}

/** Reads, then deletes, a `wasm_trap_t`. */
function takeTrap(lib: Lib, trap: Deno.PointerObject): TrapInfo {
  const message = vecBuffer();
  lib.wasm_trap_message(trap, message);
  const text = decoder.decode(readByteVec(Deno.UnsafePointer.of(message))).replace(/\0$/, "");
  lib.wasm_byte_vec_delete(message);
  const codeOut = new Uint8Array(1);
  const hasCode = lib.wasmtime_trap_code(trap, codeOut);
  const trace = vecBuffer();
  lib.wasm_trap_trace(trap, trace);
  const frames = readFrames(lib, trace);
  lib.wasm_trap_delete(trap);
  return { message: text, code: hasCode ? codeOut[0] : undefined, frames };
}

/** `WASMTIME_TRAP_CODE_*` values that runtime/ distinguishes (wasmtime/trap.h). */
export const TrapCode = {
  stackOverflow: 0,
  memoryOutOfBounds: 1,
  unreachable: 9,
  interrupt: 10,
  outOfFuel: 11,
} as const;

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
  #lib: Lib;
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

/** Converts WebAssembly text to binary (`wasmtime_wat2wasm`). */
export function wat2wasm(text: string): Uint8Array {
  const lib = loadWasmtime();
  const bytes = encoder.encode(text);
  const out = vecBuffer();
  check(lib, lib.wasmtime_wat2wasm(bytes, BigInt(bytes.length), out));
  const result = readByteVec(Deno.UnsafePointer.of(out));
  lib.wasm_byte_vec_delete(out);
  return result;
}

/** An import or export name of a module. */
export interface ImportName {
  /** The import's module name, e.g. `wasi_snapshot_preview1`. */
  module: string;
  /** The field name, e.g. `fd_write`. */
  name: string;
}

/** A compiled `wasmtime_module_t`. */
export class Module {
  #lib: Lib;
  #ptr: Deno.PointerValue;

  private constructor(lib: Lib, ptr: Deno.PointerObject) {
    this.#lib = lib;
    this.#ptr = ptr;
  }

  /** Checks that `wasm` is a valid module for `engine`; throws WasmtimeFfiError if not. */
  static validate(engine: Engine, wasm: Uint8Array<ArrayBuffer>): void {
    const lib = loadWasmtime();
    check(lib, lib.wasmtime_module_validate(engine.pointer, wasm, BigInt(wasm.length)));
  }

  /** Compiles `wasm` on a worker thread (Cranelift), so the event loop keeps running. */
  static async compile(engine: Engine, wasm: Uint8Array<ArrayBuffer>): Promise<Module> {
    const lib = loadWasmtime();
    const out = pointerOut();
    const error = await lib.wasmtime_module_new_nonblocking(
      engine.pointer,
      wasm,
      BigInt(wasm.length),
      new Uint8Array(out.buffer),
    );
    check(lib, error);
    return new Module(lib, pointerIn(out)!);
  }

  /**
   * Loads a module serialized by {@link Module.serialize} with the same
   * engine configuration and wasmtime version. UNSAFE on untrusted or
   * corrupt bytes: wasmtime trusts them; callers must authenticate them first.
   */
  static deserialize(engine: Engine, bytes: Uint8Array<ArrayBuffer>): Module {
    const lib = loadWasmtime();
    const out = pointerOut();
    check(
      lib,
      lib.wasmtime_module_deserialize(
        engine.pointer,
        bytes,
        BigInt(bytes.length),
        new Uint8Array(out.buffer),
      ),
    );
    return new Module(lib, pointerIn(out)!);
  }

  /** The raw `wasmtime_module_t*`; valid until close(). */
  get pointer(): Deno.PointerObject {
    if (this.#ptr === null) throw new WasmtimeFfiError("Module is closed");
    return this.#ptr;
  }

  /** The compiled code as bytes that {@link Module.deserialize} accepts. */
  serialize(): Uint8Array {
    const out = vecBuffer();
    check(this.#lib, this.#lib.wasmtime_module_serialize(this.pointer, out));
    const bytes = readByteVec(Deno.UnsafePointer.of(out));
    this.#lib.wasm_byte_vec_delete(out);
    return bytes;
  }

  /** The module's imports, in order. */
  imports(): ImportName[] {
    const vec = vecBuffer();
    this.#lib.wasmtime_module_imports(this.pointer, vec);
    const { size, data } = vecOf(vec);
    const result: ImportName[] = [];
    if (data !== null) {
      const view = new Deno.UnsafePointerView(data);
      for (let i = 0; i < size; i++) {
        const item = view.getPointer(i * 8)!;
        result.push({
          module: decoder.decode(readByteVec(this.#lib.wasm_importtype_module(item))),
          name: decoder.decode(readByteVec(this.#lib.wasm_importtype_name(item))),
        });
      }
    }
    this.#lib.wasm_importtype_vec_delete(vec);
    return result;
  }

  /** The names of the module's exports, in order. */
  exports(): string[] {
    const vec = vecBuffer();
    this.#lib.wasmtime_module_exports(this.pointer, vec);
    const { size, data } = vecOf(vec);
    const result: string[] = [];
    if (data !== null) {
      const view = new Deno.UnsafePointerView(data);
      for (let i = 0; i < size; i++) {
        const item = view.getPointer(i * 8)!;
        result.push(decoder.decode(readByteVec(this.#lib.wasm_exporttype_name(item))));
      }
    }
    this.#lib.wasm_exporttype_vec_delete(vec);
    return result;
  }

  /** Frees the module. */
  close(): void {
    if (this.#ptr !== null) this.#lib.wasmtime_module_delete(this.#ptr);
    this.#ptr = null;
  }

  /** Same as close(). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** Where a WASI standard stream comes from or goes to. */
export type WasiInput =
  | { kind: "inherit" }
  | { kind: "null" }
  | { kind: "bytes"; bytes: Uint8Array }
  | { kind: "file"; path: string };

/** Where a WASI output stream goes: this process's own, a file (or `/proc/self/fd/N`), or nowhere. */
export type WasiOutput = { kind: "inherit" } | { kind: "null" } | { kind: "file"; path: string };

/** A `wasi_config_t`: arguments, environment, stdio and preopened directories. */
export class WasiConfig {
  #lib: Lib;
  #ptr: Deno.PointerValue;

  /** Makes an empty configuration: no args, no env, no stdio, no files. */
  constructor() {
    this.#lib = loadWasmtime();
    this.#ptr = this.#lib.wasi_config_new();
    if (this.#ptr === null) throw new WasmtimeFfiError("wasi_config_new failed");
  }

  #self(): Deno.PointerObject {
    if (this.#ptr === null) throw new WasmtimeFfiError("WasiConfig is closed or was given away");
    return this.#ptr;
  }

  /** Sets argv exactly (argv[0] included). */
  setArgv(argv: string[]): void {
    const strings = argv.map(cString);
    const table = new BigUint64Array(strings.length);
    strings.forEach((s, i) =>
      table[i] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(s)))
    );
    const ok = this.#lib.wasi_config_set_argv(
      this.#self(),
      BigInt(argv.length),
      new Uint8Array(table.buffer),
    );
    if (!ok) throw new WasmtimeFfiError("wasi_config_set_argv failed (an argument is not UTF-8)");
  }

  /** Sets the environment exactly; nothing of the host's leaks in. */
  setEnv(env: [string, string][]): void {
    const names = env.map(([k]) => cString(k));
    const values = env.map(([, v]) => cString(v));
    const nameTable = new BigUint64Array(env.length);
    const valueTable = new BigUint64Array(env.length);
    names.forEach((s, i) =>
      nameTable[i] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(s)))
    );
    values.forEach((s, i) =>
      valueTable[i] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(s)))
    );
    const ok = this.#lib.wasi_config_set_env(
      this.#self(),
      BigInt(env.length),
      new Uint8Array(nameTable.buffer),
      new Uint8Array(valueTable.buffer),
    );
    if (!ok) throw new WasmtimeFfiError("wasi_config_set_env failed (a variable is not UTF-8)");
  }

  /** Sets standard input. */
  setStdin(input: WasiInput): void {
    const self = this.#self();
    switch (input.kind) {
      case "inherit":
        this.#lib.wasi_config_inherit_stdin(self);
        return;
      case "null":
        return;
      case "bytes": {
        // wasm_byte_vec_new copies; the config takes the vector's contents.
        const vec = vecBuffer();
        const copy = new Uint8Array(input.bytes);
        this.#lib.wasm_byte_vec_new(vec, BigInt(copy.length), copy);
        this.#lib.wasi_config_set_stdin_bytes(self, vec);
        return;
      }
      case "file":
        if (!this.#lib.wasi_config_set_stdin_file(self, cString(input.path))) {
          throw new WasmtimeFfiError(`Cannot open "${input.path}" for standard input`);
        }
    }
  }

  /** Sets standard output. */
  setStdout(output: WasiOutput): void {
    const self = this.#self();
    if (output.kind === "inherit") this.#lib.wasi_config_inherit_stdout(self);
    else if (output.kind === "file") {
      if (!this.#lib.wasi_config_set_stdout_file(self, cString(output.path))) {
        throw new WasmtimeFfiError(`Cannot open "${output.path}" for standard output`);
      }
    }
  }

  /** Sets standard error. */
  setStderr(output: WasiOutput): void {
    const self = this.#self();
    if (output.kind === "inherit") this.#lib.wasi_config_inherit_stderr(self);
    else if (output.kind === "file") {
      if (!this.#lib.wasi_config_set_stderr_file(self, cString(output.path))) {
        throw new WasmtimeFfiError(`Cannot open "${output.path}" for standard error`);
      }
    }
  }

  /** Preopens host directory `host` as `guest`, read-only unless `writable`. */
  preopenDir(host: string, guest: string, options: { writable: boolean }): void {
    const ok = this.#lib.wasi_config_preopen_dir(
      this.#self(),
      cString(host),
      cString(guest),
      options.writable,
    );
    if (!ok) throw new WasmtimeFfiError(`Cannot preopen directory "${host}" as "${guest}"`);
  }

  /** Hands the native config to a store (which then owns it). */
  take(): Deno.PointerObject {
    const ptr = this.#self();
    this.#ptr = null;
    return ptr;
  }

  /** Frees the configuration unless a store took it. */
  close(): void {
    if (this.#ptr !== null) this.#lib.wasi_config_delete(this.#ptr);
    this.#ptr = null;
  }

  /** Same as close(). */
  [Symbol.dispose](): void {
    this.close();
  }
}

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

/** The size in bytes of `wasmtime_extern_t` (wasmtime/extern.h; checked by a test). */
export const EXTERN_SIZE = 32;
/** Offset of the `of` union in `wasmtime_extern_t`. */
export const EXTERN_OF_OFFSET = 8;
const EXTERN_FUNC = 0;
const EXTERN_MEMORY = 3;
/** The size in bytes of `wasmtime_instance_t`. */
export const INSTANCE_SIZE = 16;

/** A `wasmtime_store_t`: guest state, WASI context, limits, fuel, deadline. */
export class Store {
  #lib: Lib;
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

/** The outcome of running guest code. */
export type CallOutcome =
  | { kind: "return" }
  | { kind: "exit"; status: number }
  | { kind: "trap"; trap: TrapInfo }
  | { kind: "error"; message: string; frames: WasmFrame[] };

/** An instantiated module (owned by its store; no close of its own). */
export class Instance {
  #lib: Lib;
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
    return outcome(this.#lib, error, pointerIn(trapOut));
  }
}

function outcome(lib: Lib, error: Deno.PointerValue, trap: Deno.PointerValue): CallOutcome {
  if (error !== null) {
    const e = takeError(lib, error);
    if (trap !== null) lib.wasm_trap_delete(trap);
    if (e.exitStatus !== undefined) return { kind: "exit", status: e.exitStatus };
    return { kind: "error", message: e.message, frames: e.frames };
  }
  if (trap !== null) return { kind: "trap", trap: takeTrap(lib, trap) };
  return { kind: "return" };
}

/** A `wasmtime_linker_t` with WASI preview 1 defined. */
export class Linker {
  #lib: Lib;
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
    const result = outcome(this.#lib, error, pointerIn(trapOut));
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

const F_SETPIPE_SZ = 1031;
const O_CLOEXEC = 0o2000000;

/**
 * An anonymous pipe whose ends are reachable by path (`/proc/self/fd/N`),
 * so that wasmtime can open the write end as a guest's output file and Deno
 * can open the read end as a file. Both raw descriptors are closed by
 * close(); the paths must be opened before that.
 */
export class Pipe {
  #libc: Libc;
  #fds: [number, number] | undefined;

  /** Makes a pipe with a buffer of about `size` bytes (Linux F_SETPIPE_SZ, best effort). */
  constructor(size = 1 << 20) {
    this.#libc = loadLibc();
    const fds = new Int32Array(2);
    if (this.#libc.pipe2(new Uint8Array(fds.buffer), O_CLOEXEC) !== 0) {
      throw new WasmtimeFfiError("pipe2 failed");
    }
    this.#fds = [fds[0], fds[1]];
    this.#libc.fcntl(fds[1], F_SETPIPE_SZ, size);
  }

  /** Path of the read end. */
  get readPath(): string {
    return `/proc/self/fd/${this.#fds![0]}`;
  }

  /** Path of the write end. */
  get writePath(): string {
    return `/proc/self/fd/${this.#fds![1]}`;
  }

  /** Closes both raw descriptors (reopened paths stay open). */
  close(): void {
    if (this.#fds) {
      this.#libc.close(this.#fds[0]);
      this.#libc.close(this.#fds[1]);
    }
    this.#fds = undefined;
  }

  /** Same as close(). */
  [Symbol.dispose](): void {
    this.close();
  }
}
