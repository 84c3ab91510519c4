/**
 * Linux ioctl request numbers, computed as the kernel's `_IO`, `_IOR`, `_IOW`
 * and `_IOWR` macros do on x86_64 (`include/uapi/asm-generic/ioctl.h`):
 * bits 0–7 the number, 8–15 the type, 16–29 the argument size, 30–31 the
 * direction (1 = write to the kernel, 2 = read from it).
 *
 * @module
 */

/** `_IOC_NONE`: no data moves. */
export const IOC_NONE = 0;
/** `_IOC_WRITE`: user space writes the argument to the kernel. */
export const IOC_WRITE = 1;
/** `_IOC_READ`: the kernel writes the argument back to user space. */
export const IOC_READ = 2;

const IOC_NRBITS = 8;
const IOC_TYPEBITS = 8;
const IOC_SIZEBITS = 14;
const IOC_NRSHIFT = 0;
const IOC_TYPESHIFT = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT = IOC_SIZESHIFT + IOC_SIZEBITS;

/** An ioctl type: a one-character string such as `"S"`, or a number such as `0xAE`. */
export type IoctlType = string | number;

function typeCode(type: IoctlType): number {
  const code = typeof type === "string" ? type.charCodeAt(0) : type;
  if (!Number.isInteger(code) || code < 0 || code > 0xff) {
    throw new RangeError(`Ioctl type "${type}" is not one byte`);
  }
  return code;
}

/** `_IOC(dir, type, nr, size)`: the request number as an unsigned 32-bit value. */
export function ioc(dir: number, type: IoctlType, options: { nr: number; size: number }): number {
  const { nr, size } = options;
  if (!Number.isInteger(nr) || nr < 0 || nr > 0xff) throw new RangeError(`Ioctl nr ${nr} > 255`);
  if (!Number.isInteger(size) || size < 0 || size >= 1 << IOC_SIZEBITS) {
    throw new RangeError(`Ioctl argument size ${size} does not fit 14 bits`);
  }
  return ((dir << IOC_DIRSHIFT) | (size << IOC_SIZESHIFT) | (typeCode(type) << IOC_TYPESHIFT) |
    (nr << IOC_NRSHIFT)) >>> 0;
}

/** `_IO(type, nr)`: no argument data. */
export function io(type: IoctlType, nr: number): number {
  return ioc(IOC_NONE, type, { nr, size: 0 });
}

/** `_IOR(type, nr, T)` with `size = sizeof(T)`: the kernel fills the argument. */
export function ior(type: IoctlType, nr: number, options: { size: number }): number {
  return ioc(IOC_READ, type, { nr, size: options.size });
}

/** `_IOW(type, nr, T)` with `size = sizeof(T)`: the kernel reads the argument. */
export function iow(type: IoctlType, nr: number, options: { size: number }): number {
  return ioc(IOC_WRITE, type, { nr, size: options.size });
}

/** `_IOWR(type, nr, T)` with `size = sizeof(T)`: both directions. */
export function iowr(type: IoctlType, nr: number, options: { size: number }): number {
  return ioc(IOC_READ | IOC_WRITE, type, { nr, size: options.size });
}
