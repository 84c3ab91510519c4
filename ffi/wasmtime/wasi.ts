/**
 * `wasi_config_t` (`wasi.h`): a WASI preview 1 guest's arguments,
 * environment, standard streams and preopened directories.
 *
 * @module
 */
import { WasmtimeFfiError } from "./trap.ts";
import { loadWasmtime, type WasmtimeLib } from "./library.ts";
import { cString, vecBuffer } from "./library.ts";

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
  #lib: WasmtimeLib;
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
