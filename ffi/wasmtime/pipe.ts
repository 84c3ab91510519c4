/**
 * An anonymous pipe that wasmtime can open by path as a guest's output file
 * (WASI has no way to hand it a descriptor). Uses the process's one libc
 * binding (ffi/libc.ts).
 *
 * @module
 */
import { type Libc, libc, O_CLOEXEC } from "../libc.ts";
import { WasmtimeFfiError } from "./trap.ts";

/** `fcntl` command that sets a pipe's buffer size (Linux, `<linux/fcntl.h>`). */
const F_SETPIPE_SZ = 1031;

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
    this.#libc = libc();
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
