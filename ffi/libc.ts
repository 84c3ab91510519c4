/**
 * The few libc calls that the kernel's TEE interfaces need and Deno does not
 * offer (a raw file descriptor, `ioctl`, `mmap`, a pipe), bound once for the
 * process.
 * A failed call throws {@link SyscallError}, which names errno (`ENOENT`,
 * `ENOTTY`, ...). No policy lives here: callers decide what a failure means.
 *
 * errno is read through glibc's `__errno_location()` right after the call,
 * on the same thread, before any other libc call of ours.
 *
 * @module
 */
import { bindSymbols } from "./_bind_symbols.ts";

/** `open` flags from `<fcntl.h>` (x86_64). */
export const O_RDONLY = 0;
/** Open for writing only. */
export const O_WRONLY = 1;
/** Open for reading and writing. */
export const O_RDWR = 2;
/** Do not block on open or on I/O. */
export const O_NONBLOCK = 0o4000;
/** Close the descriptor on exec, so that child processes never inherit it. */
export const O_CLOEXEC = 0o2000000;

/** `mmap` protection and flags from `<sys/mman.h>` (x86_64). */
export const PROT_READ = 1;
/** Pages may be written. */
export const PROT_WRITE = 2;
/** Changes are private to this process. */
export const MAP_PRIVATE = 0x02;
/** Memory not backed by a file, zero-filled. */
export const MAP_ANONYMOUS = 0x20;

/** Linux errno names by number (x86_64, `asm-generic/errno-base.h` and `errno.h`). */
export const ERRNO_NAMES: Readonly<Record<number, string>> = Object.freeze({
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  7: "E2BIG",
  8: "ENOEXEC",
  9: "EBADF",
  10: "ECHILD",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  15: "ENOTBLK",
  16: "EBUSY",
  17: "EEXIST",
  18: "EXDEV",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  25: "ENOTTY",
  26: "ETXTBSY",
  27: "EFBIG",
  28: "ENOSPC",
  29: "ESPIPE",
  30: "EROFS",
  31: "EMLINK",
  32: "EPIPE",
  33: "EDOM",
  34: "ERANGE",
  35: "EDEADLK",
  36: "ENAMETOOLONG",
  37: "ENOLCK",
  38: "ENOSYS",
  39: "ENOTEMPTY",
  40: "ELOOP",
  42: "ENOMSG",
  43: "EIDRM",
  44: "ECHRNG",
  45: "EL2NSYNC",
  46: "EL3HLT",
  47: "EL3RST",
  48: "ELNRNG",
  49: "EUNATCH",
  50: "ENOCSI",
  51: "EL2HLT",
  52: "EBADE",
  53: "EBADR",
  54: "EXFULL",
  55: "ENOANO",
  56: "EBADRQC",
  57: "EBADSLT",
  59: "EBFONT",
  60: "ENOSTR",
  61: "ENODATA",
  62: "ETIME",
  63: "ENOSR",
  64: "ENONET",
  65: "ENOPKG",
  66: "EREMOTE",
  67: "ENOLINK",
  68: "EADV",
  69: "ESRMNT",
  70: "ECOMM",
  71: "EPROTO",
  72: "EMULTIHOP",
  73: "EDOTDOT",
  74: "EBADMSG",
  75: "EOVERFLOW",
  76: "ENOTUNIQ",
  77: "EBADFD",
  78: "EREMCHG",
  79: "ELIBACC",
  80: "ELIBBAD",
  81: "ELIBSCN",
  82: "ELIBMAX",
  83: "ELIBEXEC",
  84: "EILSEQ",
  85: "ERESTART",
  86: "ESTRPIPE",
  87: "EUSERS",
  88: "ENOTSOCK",
  89: "EDESTADDRREQ",
  90: "EMSGSIZE",
  91: "EPROTOTYPE",
  92: "ENOPROTOOPT",
  93: "EPROTONOSUPPORT",
  94: "ESOCKTNOSUPPORT",
  95: "EOPNOTSUPP",
  96: "EPFNOSUPPORT",
  97: "EAFNOSUPPORT",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  100: "ENETDOWN",
  101: "ENETUNREACH",
  102: "ENETRESET",
  103: "ECONNABORTED",
  104: "ECONNRESET",
  105: "ENOBUFS",
  106: "EISCONN",
  107: "ENOTCONN",
  108: "ESHUTDOWN",
  109: "ETOOMANYREFS",
  110: "ETIMEDOUT",
  111: "ECONNREFUSED",
  112: "EHOSTDOWN",
  113: "EHOSTUNREACH",
  114: "EALREADY",
  115: "EINPROGRESS",
  116: "ESTALE",
  117: "EUCLEAN",
  118: "ENOTNAM",
  119: "ENAVAIL",
  120: "EISNAM",
  121: "EREMOTEIO",
  122: "EDQUOT",
  123: "ENOMEDIUM",
  124: "EMEDIUMTYPE",
  125: "ECANCELED",
  126: "ENOKEY",
  127: "EKEYEXPIRED",
  128: "EKEYREVOKED",
  129: "EKEYREJECTED",
  130: "EOWNERDEAD",
  131: "ENOTRECOVERABLE",
  132: "ERFKILL",
  133: "EHWPOISON",
});

/** The name of an errno value, e.g. `ENOTTY`; `E<number>` for one not in the table. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `E${errno}`;
}

/** A failed system call, with errno by name and any extra status the kernel returned. */
export class SyscallError extends Error {
  /** The errno value, e.g. 25. */
  readonly errno: number;
  /** The errno name, e.g. `ENOTTY`. */
  readonly code: string;
  /** The call, e.g. `open` or `ioctl(SNP_GET_REPORT)`. */
  readonly syscall: string;
  /** The file it was made on, if any. */
  readonly path?: string;
  /** Extra status from the kernel, e.g. `{ firmwareError: 4 }` for `/dev/sev`. */
  readonly details: Readonly<Record<string, number>>;

  /** Makes an error for `syscall` failing with `errno`. */
  constructor(
    syscall: string,
    errno: number,
    options: { path?: string; details?: Record<string, number> } = {},
  ) {
    const where = options.path === undefined ? "" : ` on "${options.path}"`;
    super(`${syscall}${where} failed: ${errnoName(errno)} (${strerror(errno)})`);
    this.name = "SyscallError";
    this.errno = errno;
    this.code = errnoName(errno);
    this.syscall = syscall;
    this.path = options.path;
    this.details = Object.freeze({ ...options.details });
  }
}

/**
 * Every libc function that enarx calls, bound once for the whole process
 * (ffi/_bind_symbols.ts). ffi/wasmtime/pipe.ts uses `pipe2`, `fcntl` and
 * `close` for streamed guest output; the rest serve the kernel interfaces.
 */
export const LIBC_SYMBOLS = {
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  ioctl_value: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The bound functions of {@link LIBC_SYMBOLS}. */
export type Libc = Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"];

let library: Libc | undefined;

/** The process's one binding of libc, opened on first use. For ffi/ only. */
export function libc(): Libc {
  library ??= bindSymbols("libc.so.6", LIBC_SYMBOLS);
  return library;
}

/** The calling thread's errno. */
export function lastErrno(): number {
  const location = libc().__errno_location();
  if (location === null) return 0;
  return new Deno.UnsafePointerView(location).getInt32();
}

/** libc's description of an errno value, e.g. "Inappropriate ioctl for device". */
export function strerror(errno: number): string {
  const text = libc().strerror(errno);
  return text === null ? `errno ${errno}` : Deno.UnsafePointerView.getCString(text);
}

function cString(text: string): Uint8Array<ArrayBuffer> {
  const encoded = new TextEncoder().encode(text);
  if (encoded.includes(0)) throw new TypeError(`Path "${text}" contains a NUL byte`);
  const bytes = new Uint8Array(encoded.length + 1);
  bytes.set(encoded);
  return bytes;
}

/**
 * An open file descriptor from libc `open`, for ioctls on device files.
 * Close it with `close()` or `using`.
 */
export class FileDescriptor {
  /** The descriptor number; -1 once closed. */
  #fd: number;
  /** The path it was opened with. */
  readonly path: string;

  private constructor(fd: number, path: string) {
    this.#fd = fd;
    this.path = path;
  }

  /** Opens `path` with `flags` (O_CLOEXEC is always added); throws SyscallError. */
  static open(path: string, flags: number): FileDescriptor {
    const fd = libc().open(cString(path), flags | O_CLOEXEC, 0);
    if (fd < 0) throw new SyscallError("open", lastErrno(), { path });
    return new FileDescriptor(fd, path);
  }

  /** The descriptor number; throws if closed. */
  get fd(): number {
    if (this.#fd < 0) throw new TypeError(`File descriptor for "${this.path}" is closed`);
    return this.#fd;
  }

  /**
   * `ioctl(fd, request, arg)`. `arg` is a buffer the kernel reads or fills
   * (passed by address), or an integer passed by value. Returns the call's
   * non-negative result; throws SyscallError named `ioctl(<name>)`.
   */
  ioctl(
    request: number,
    arg: Uint8Array<ArrayBuffer> | bigint | number | null,
    options: { name?: string; details?: () => Record<string, number> } = {},
  ): number {
    const fd = this.fd;
    const result = arg instanceof Uint8Array
      ? libc().ioctl(fd, BigInt(request), arg)
      : libc().ioctl_value(fd, BigInt(request), BigInt(arg ?? 0));
    if (result < 0) {
      const errno = lastErrno();
      const name = options.name ?? `0x${request.toString(16)}`;
      throw new SyscallError(`ioctl(${name})`, errno, {
        path: this.path,
        details: options.details?.(),
      });
    }
    return result;
  }

  /** Takes ownership of a descriptor returned by an ioctl (e.g. KVM_CREATE_VM). */
  static adopt(fd: number, path: string): FileDescriptor {
    if (!Number.isInteger(fd) || fd < 0) throw new RangeError(`Not a file descriptor: ${fd}`);
    return new FileDescriptor(fd, path);
  }

  /** Closes the descriptor; closing twice does nothing. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    // Linux releases the descriptor even when close reports an error, so there
    // is nothing to retry; the error is not actionable for a device file.
    libc().close(fd);
  }

  /** Closes the descriptor at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Anonymous, page-aligned, zero-filled memory from `mmap`, for buffers that
 * the kernel wants page-aligned (e.g. the SNP extended report's certificate
 * buffer). Its bytes are only ever copied out, so no JavaScript view can
 * outlive the mapping.
 */
export class AnonymousMapping {
  #pointer: Deno.PointerValue;
  /** Length in bytes, a multiple of the page size. */
  readonly length: number;

  private constructor(pointer: Deno.PointerValue, length: number) {
    this.#pointer = pointer;
    this.length = length;
  }

  /** Maps `length` bytes (rounded up to 4096) readable and writable; throws SyscallError. */
  static create(length: number): AnonymousMapping {
    const rounded = Math.max(4096, Math.ceil(length / 4096) * 4096);
    const pointer = libc().mmap(
      null,
      BigInt(rounded),
      PROT_READ | PROT_WRITE,
      MAP_PRIVATE | MAP_ANONYMOUS,
      -1,
      0n,
    );
    // MAP_FAILED is (void *)-1.
    if (pointer === null || Deno.UnsafePointer.value(pointer) === 0xffff_ffff_ffff_ffffn) {
      throw new SyscallError("mmap", lastErrno());
    }
    return new AnonymousMapping(pointer, rounded);
  }

  /** The mapping's address, for `__u64` pointer fields. */
  get address(): bigint {
    if (this.#pointer === null) throw new TypeError("Mapping is closed");
    return BigInt(Deno.UnsafePointer.value(this.#pointer));
  }

  /** Copies `length` bytes from `offset` out of the mapping. */
  read(offset: number, length: number): Uint8Array<ArrayBuffer> {
    if (this.#pointer === null) throw new TypeError("Mapping is closed");
    if (offset < 0 || length < 0 || offset + length > this.length) {
      throw new RangeError(`Range ${offset}+${length} is outside the mapping of ${this.length}`);
    }
    const out = new Uint8Array(length);
    if (length > 0) new Deno.UnsafePointerView(this.#pointer).copyInto(out, offset);
    return out;
  }

  /** Unmaps the memory; closing twice does nothing. */
  close(): void {
    if (this.#pointer === null) return;
    const pointer = this.#pointer;
    this.#pointer = null;
    libc().munmap(pointer, BigInt(this.length));
  }

  /** Unmaps the memory at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.close();
  }
}
