/**
 * `wasmtime_module_t` (`wasmtime/module.h`): validate, compile (on a worker
 * thread), serialize for the module cache and load it back (from bytes, or
 * by memory-mapping a file), list imports and exports; and
 * `wasmtime_wat2wasm` (`wasmtime/wat.h`).
 *
 * @module
 */
import type { Engine } from "./engine.ts";
import { check, WasmtimeFfiError } from "./trap.ts";
import { loadWasmtime, type WasmtimeLib } from "./library.ts";
import {
  cString,
  decoder,
  encoder,
  pointerIn,
  pointerOut,
  readByteVec,
  vecBuffer,
  vecOf,
} from "./library.ts";

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
  #lib: WasmtimeLib;
  #ptr: Deno.PointerValue;

  private constructor(lib: WasmtimeLib, ptr: Deno.PointerObject) {
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

  /**
   * Loads a module that {@link Module.serialize} wrote to the file at `path`
   * (`wasmtime_module_deserialize_file`): wasmtime maps the file into memory
   * instead of copying it, so a large module costs no read. UNSAFE like
   * {@link Module.deserialize}: wasmtime trusts the file, and it must not
   * change while the module lives; callers must make sure that nobody but
   * them can have written it.
   */
  static deserializeFile(engine: Engine, path: string): Module {
    const lib = loadWasmtime();
    const out = pointerOut();
    check(
      lib,
      lib.wasmtime_module_deserialize_file(
        engine.pointer,
        cString(path),
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
