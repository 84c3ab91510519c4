/**
 * The binding of enarx's socket shim (ffi/native/enarx_wasi_sockets.c), a
 * small C library that gives WASI preview 1 guests TCP sockets by shadowing
 * the fd functions of wasmtime's linker. Nothing here decides policy: which
 * sockets a workload gets, and what a failure means to a person, belong to
 * runtime/wasm/sockets.ts; where the library comes from, to
 * runtime/wasm/socket_shim.ts.
 *
 * @module
 */

/** The shim's C functions. */
export const WASI_SOCKETS_SYMBOLS = {
  enarx_sock_init: { parameters: ["buffer"], result: "i32" },
  enarx_sock_error: { parameters: [], result: "pointer" },
  enarx_sock_table_new: { parameters: [], result: "pointer" },
  enarx_sock_table_add: { parameters: ["pointer", "u32", "i32"], result: "i32" },
  enarx_sock_install: {
    parameters: ["pointer", "pointer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  enarx_sock_interrupt: { parameters: ["pointer"], result: "void" },
  enarx_sock_table_free: { parameters: ["pointer"], result: "void" },
  enarx_sock_listen: {
    parameters: ["buffer", "u16", "i32", "buffer", "buffer", "usize"],
    result: "i32",
  },
  enarx_sock_connect: {
    parameters: ["buffer", "u16", "i32", "buffer", "usize"],
    result: "i32",
    nonblocking: true,
  },
  enarx_sock_listen_unix: { parameters: ["buffer", "i32", "buffer", "usize"], result: "i32" },
  enarx_sock_connect_unix: { parameters: ["buffer", "buffer", "usize"], result: "i32" },
  enarx_sock_close: { parameters: ["i32"], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

type ShimLib = Deno.DynamicLibrary<typeof WASI_SOCKETS_SYMBOLS>["symbols"];

/** Why opening a host socket failed (the C library's negative results). */
export type SocketFailure = "resolve" | "in-use" | "denied" | "no-address" | "refused" | "other";

const FAILURES: Record<number, SocketFailure> = {
  [-1]: "resolve",
  [-2]: "in-use",
  [-3]: "denied",
  [-4]: "no-address",
  [-5]: "refused",
  [-6]: "other",
};

/** A host socket opened by the shim, or why it could not be. */
export type SocketResult =
  | { ok: true; fd: number; port: number }
  | { ok: false; failure: SocketFailure; reason: string };

/** Raised when the shim cannot be loaded or cannot shadow a linker's functions. */
export class WasiSocketsError extends Error {
  /** Makes the error. */
  constructor(message: string) {
    super(message);
    this.name = "WasiSocketsError";
  }
}

let loaded: ShimLib | undefined;

function cString(text: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(text + "\0");
}

function lastError(lib: ShimLib): string {
  const ptr = lib.enarx_sock_error();
  return ptr === null ? "unknown error" : new Deno.UnsafePointerView(ptr).getCString();
}

function errorText(buffer: Uint8Array): string {
  const end = buffer.indexOf(0);
  return new TextDecoder().decode(buffer.subarray(0, end < 0 ? buffer.length : end));
}

/**
 * Opens the shim at `path` once per process and points it at the
 * libwasmtime already loaded from `libwasmtime`. Throws WasiSocketsError.
 */
export function loadWasiSockets(path: string, libwasmtime: string): void {
  if (loaded) return;
  let lib: ShimLib;
  try {
    lib = Deno.dlopen(path, WASI_SOCKETS_SYMBOLS).symbols;
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new WasiSocketsError(`Cannot load the socket shim "${path}": ${why}`);
  }
  if (lib.enarx_sock_init(cString(libwasmtime)) !== 0) throw new WasiSocketsError(lastError(lib));
  loaded = lib;
}

function shim(): ShimLib {
  if (!loaded) throw new WasiSocketsError("The socket shim is not loaded");
  return loaded;
}

/** Binds and listens on `addr`:`port` (port 0: any free port, reported in `port`). */
export function listenSocket(addr: string, port: number, backlog = 1024): SocketResult {
  const bound = new Int32Array(1);
  const err = new Uint8Array(512);
  const fd = shim().enarx_sock_listen(
    cString(addr),
    port,
    backlog,
    new Uint8Array(bound.buffer),
    err,
    BigInt(err.length),
  );
  if (fd >= 0) return { ok: true, fd, port: bound[0] };
  return { ok: false, failure: FAILURES[fd] ?? "other", reason: errorText(err) };
}

/** Resolves `host` and connects to `port` (on a worker thread), each address within `timeoutMs`. */
export async function connectSocket(
  host: string,
  port: number,
  timeoutMs: number,
): Promise<SocketResult> {
  const err = new Uint8Array(512);
  const fd = await shim().enarx_sock_connect(
    cString(host),
    port,
    timeoutMs,
    err,
    BigInt(err.length),
  );
  if (fd >= 0) return { ok: true, fd, port };
  return { ok: false, failure: FAILURES[fd] ?? "other", reason: errorText(err) };
}

/** Binds a Unix stream socket at `path` (which must not exist) and listens. */
export function listenUnixSocket(path: string, backlog = 1024): SocketResult {
  const err = new Uint8Array(512);
  const fd = shim().enarx_sock_listen_unix(cString(path), backlog, err, BigInt(err.length));
  if (fd >= 0) return { ok: true, fd, port: 0 };
  return { ok: false, failure: FAILURES[fd] ?? "other", reason: errorText(err) };
}

/** Connects a Unix stream socket to the listener at `path`. */
export function connectUnixSocket(path: string): SocketResult {
  const err = new Uint8Array(512);
  const fd = shim().enarx_sock_connect_unix(cString(path), err, BigInt(err.length));
  if (fd >= 0) return { ok: true, fd, port: 0 };
  return { ok: false, failure: FAILURES[fd] ?? "other", reason: errorText(err) };
}

/** Closes a socket that no table took. */
export function closeSocket(fd: number): void {
  shim().enarx_sock_close(fd);
}

/**
 * The shim's socket table of one store: guest fds that are host sockets,
 * and the functions that shadow wasmtime's for them.
 */
export class SocketTable {
  #ptr: Deno.PointerValue;

  /** Makes an empty table. */
  constructor() {
    this.#ptr = shim().enarx_sock_table_new();
    if (this.#ptr === null) {
      throw new WasiSocketsError("Cannot make a socket table (out of memory)");
    }
  }

  #self(): Deno.PointerObject {
    if (this.#ptr === null) throw new WasiSocketsError("The socket table is closed");
    return this.#ptr;
  }

  /** Makes guest fd `guestFd` the host socket `osFd` (the table then owns and closes it). */
  addSocket(guestFd: number, osFd: number): void {
    if (shim().enarx_sock_table_add(this.#self(), guestFd, osFd) !== 0) {
      throw new WasiSocketsError(`Cannot give socket ${osFd} to guest fd ${guestFd}`);
    }
  }

  /** Makes guest fd `guestFd` the anchor: a directory in wasmtime's table that the guest never sees. */
  addAnchor(guestFd: number): void {
    if (shim().enarx_sock_table_add(this.#self(), guestFd, -1) !== 0) {
      throw new WasiSocketsError(`Cannot reserve guest fd ${guestFd}`);
    }
  }

  /**
   * Shadows the WASI functions of `linker` (a `wasmtime_linker_t*`) for
   * `context`'s store; `trampoline` is {@link trampolineWat} compiled for
   * `engine`, and must outlive the store.
   */
  install(
    linker: Deno.PointerObject,
    context: Deno.PointerObject,
    compiled: { engine: Deno.PointerObject; trampoline: Deno.PointerObject },
  ): void {
    const lib = shim();
    const { engine, trampoline } = compiled;
    if (lib.enarx_sock_install(this.#self(), linker, context, engine, trampoline) !== 0) {
      throw new WasiSocketsError(lastError(lib));
    }
  }

  /** Makes the guest's blocking socket calls return with an interrupt trap. */
  interrupt(): void {
    if (this.#ptr !== null) shim().enarx_sock_interrupt(this.#ptr);
  }

  /** Closes every socket and frees the table; only once the store is gone. */
  close(): void {
    if (this.#ptr !== null) shim().enarx_sock_table_free(this.#ptr);
    this.#ptr = null;
  }

  /** Same as close(). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * The parameter types of the wasi_snapshot_preview1 functions that the shim
 * shadows (witx; every one returns an i32 errno), `i` for i32 and `I` for i64.
 */
const SHADOWED_SIGNATURES: Record<string, string> = {
  fd_read: "iiii",
  fd_write: "iiii",
  fd_close: "i",
  fd_fdstat_get: "ii",
  fd_fdstat_set_flags: "ii",
  fd_filestat_get: "ii",
  fd_renumber: "ii",
  sock_accept: "iii",
  sock_recv: "iiiiii",
  sock_send: "iiiii",
  sock_shutdown: "ii",
  poll_oneoff: "iiii",
  fd_prestat_get: "ii",
  fd_prestat_dir_name: "iii",
  fd_pread: "iiiIi",
  fd_pwrite: "iiiIi",
  fd_seek: "iIii",
  fd_tell: "ii",
  fd_advise: "iIIi",
  fd_allocate: "iII",
  fd_datasync: "i",
  fd_sync: "i",
  fd_fdstat_set_rights: "iII",
  fd_filestat_set_size: "iI",
  fd_filestat_set_times: "iIIi",
  fd_readdir: "iiiIi",
  path_create_directory: "iii",
  path_filestat_get: "iiiii",
  path_filestat_set_times: "iiiiIIi",
  path_link: "iiiiiii",
  path_open: "iiiiiIIii",
  path_readlink: "iiiiii",
  path_remove_directory: "iii",
  path_rename: "iiiiii",
  path_symlink: "iiiii",
  path_unlink_file: "iii",
};

/**
 * The trampoline module, as WebAssembly text: it imports the guest's memory
 * (`enarx.memory`) and exports it as `memory`, and exports one function per
 * shadowed WASI function that calls wasmtime's own. wasmtime's WASI
 * functions read the memory of the wasm that calls them, so the shim reaches
 * them through these (ffi/native/enarx_wasi_sockets.c, ensure_trampoline).
 */
export function trampolineWat(): string {
  const lines = ["(module", '  (import "enarx" "memory" (memory 0))'];
  const bodies: string[] = [];
  for (const [name, params] of Object.entries(SHADOWED_SIGNATURES)) {
    const types = [...params].map((p) => (p === "I" ? "i64" : "i32")).join(" ");
    lines.push(
      `  (import "wasi_snapshot_preview1" "${name}" (func $${name} (param ${types}) (result i32)))`,
    );
    const gets = [...params].map((_, i) => `local.get ${i}`).join(" ");
    bodies.push(
      `  (func (export "${name}") (param ${types}) (result i32) ${gets} call $${name})`,
    );
  }
  return [...lines, ...bodies, '  (export "memory" (memory 0)))'].join("\n");
}
