/**
 * How guest code or a C API call failed: traps (`wasm.h` traps and frames,
 * `wasmtime/trap.h`) with their `WASMTIME_TRAP_CODE_*` and wasm backtrace,
 * and `wasmtime_error_t` (`wasmtime/error.h`), which also carries a WASI
 * `proc_exit` status, as a {@link WasmtimeFfiError}.
 *
 * @module
 */
import type { WasmtimeLib } from "./library.ts";
import { decoder, readByteVec, vecBuffer, vecOf } from "./library.ts";

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

/** Reads, then deletes, a `wasm_frame_vec_t` filled in `vec`. */
export function readFrames(lib: WasmtimeLib, vec: Uint8Array<ArrayBuffer>): WasmFrame[] {
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
export function takeTrap(lib: WasmtimeLib, trap: Deno.PointerObject): TrapInfo {
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

/** Reads, then deletes, a `wasmtime_error_t`. */
export function takeError(lib: WasmtimeLib, error: Deno.PointerObject): WasmtimeFfiError {
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
export function check(lib: WasmtimeLib, error: Deno.PointerValue): void {
  if (error !== null) throw takeError(lib, error);
}
