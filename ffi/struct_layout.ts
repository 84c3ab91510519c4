/**
 * Binary structures declared once as a table of fields (name, offset, size),
 * read and written through one small DataView helper, and the inventory of
 * kernel ABI facts (ioctl numbers, constants, struct layouts) that
 * tests/ffi_uapi_test.ts checks against the machine's uapi headers.
 *
 * All integers in the kernel structures used here are little-endian (x86_64).
 *
 * @module
 */

/** Where one field lives in a structure. */
export interface FieldLayout {
  /** Byte offset from the start of the structure. */
  readonly offset: number;
  /** Size in bytes. Integers are 1, 2, 4 or 8 bytes; anything else is a byte array. */
  readonly size: number;
}

/**
 * Where a fact comes from, so that the uapi test knows how to check it:
 * `header` is the C header that defines it; `local` says whether the
 * machine's copy (linux-libc-dev 6.1 here) is expected to have it:
 * `"yes"` (must match), `"if-defined"` (a macro that newer headers have:
 * compared when defined), `"no"` (not in the local uapi headers at all, e.g.
 * an enum added upstream later or a header that Debian does not ship; the
 * `source` then names the kernel file or document it was taken from).
 */
export interface UapiSource {
  /** The header as included from C, e.g. `linux/sev-guest.h`; null for firmware-spec layouts. */
  readonly header: string | null;
  /** Whether the local header has it (see above). */
  readonly local: "yes" | "if-defined" | "no";
  /** Citation for a fact that the local header does not have. */
  readonly source?: string;
}

/** A structure: its C name, total size and field table. */
export interface StructLayout<F extends string = string> extends UapiSource {
  /** The C name without `struct`, e.g. `snp_report_req`. */
  readonly name: string;
  /** `sizeof(struct name)`. */
  readonly size: number;
  /** Every field we read or write, by its C member name. */
  readonly fields: Readonly<Record<F, FieldLayout>>;
}

/** An ioctl number or other integer constant with its provenance. */
export interface UapiConstant extends UapiSource {
  /** The C name, e.g. `SNP_GET_REPORT`. */
  readonly name: string;
  /** Its value. */
  readonly value: number;
}

/** What {@link defineStruct} needs besides the structure's name. */
export interface StructDefinition<F extends string> {
  /** `sizeof(struct name)`. */
  readonly size: number;
  /** Every field as an `[offset, size]` pair, by its C member name. */
  readonly fields: Record<F, readonly [number, number]>;
  /** Where the layout comes from. */
  readonly source: UapiSource;
}

/** Declares a structure from `[offset, size]` pairs. */
export function defineStruct<F extends string>(
  name: string,
  { size, fields, source }: StructDefinition<F>,
): StructLayout<F> {
  const table = {} as Record<F, FieldLayout>;
  for (const key of Object.keys(fields) as F[]) {
    const [offset, fieldSize] = fields[key];
    if (offset < 0 || fieldSize <= 0 || offset + fieldSize > size) {
      throw new RangeError(`Field "${name}.${key}" lies outside its structure of ${size} bytes`);
    }
    table[key] = Object.freeze({ offset, size: fieldSize });
  }
  return Object.freeze({ name, size, fields: Object.freeze(table), ...source });
}

/** What {@link defineConstant} needs besides the constant's name. */
export interface ConstantDefinition {
  /** Its value. */
  readonly value: number;
  /** Where the value comes from. */
  readonly source: UapiSource;
}

/** Declares a constant with its provenance. */
export function defineConstant(
  name: string,
  { value, source }: ConstantDefinition,
): UapiConstant {
  return Object.freeze({ name, value, ...source });
}

/**
 * A structure's bytes with typed access to its fields. The bytes can be
 * passed to a native call as a buffer; {@link StructBuffer.address} gives
 * their address for structures that point at other structures.
 */
export class StructBuffer<F extends string> {
  /** The layout this buffer follows. */
  readonly layout: StructLayout<F>;
  /** The structure's bytes (8-byte aligned, zero-filled when new). */
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly #view: DataView;

  /** Makes a zero-filled buffer for `layout`, or wraps existing `bytes`. */
  constructor(layout: StructLayout<F>, bytes?: Uint8Array<ArrayBuffer>) {
    if (bytes !== undefined && bytes.length < layout.size) {
      throw new RangeError(
        `Buffer of ${bytes.length} bytes is too small for "${layout.name}" (${layout.size})`,
      );
    }
    this.layout = layout;
    // A BigUint64Array's buffer is 8-byte aligned, as the kernel structs expect.
    this.bytes = bytes ??
      new Uint8Array(new BigUint64Array(Math.ceil(layout.size / 8)).buffer, 0, layout.size);
    this.#view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
  }

  /** Reads an integer field of 1, 2 or 4 bytes. */
  getNumber(field: F): number {
    const { offset, size } = this.layout.fields[field];
    switch (size) {
      case 1:
        return this.#view.getUint8(offset);
      case 2:
        return this.#view.getUint16(offset, true);
      case 4:
        return this.#view.getUint32(offset, true);
    }
    throw new TypeError(`Field "${this.layout.name}.${field}" is not a 1, 2 or 4 byte integer`);
  }

  /** Reads an 8-byte integer field. */
  getBigInt(field: F): bigint {
    const { offset, size } = this.layout.fields[field];
    if (size !== 8) throw new TypeError(`Field "${this.layout.name}.${field}" is not 8 bytes`);
    return this.#view.getBigUint64(offset, true);
  }

  /** Writes an integer field of 1, 2, 4 or 8 bytes. */
  set(field: F, value: number | bigint): this {
    const { offset, size } = this.layout.fields[field];
    switch (size) {
      case 1:
        this.#view.setUint8(offset, Number(value));
        break;
      case 2:
        this.#view.setUint16(offset, Number(value), true);
        break;
      case 4:
        this.#view.setUint32(offset, Number(value), true);
        break;
      case 8:
        this.#view.setBigUint64(offset, BigInt(value), true);
        break;
      default:
        throw new TypeError(`Field "${this.layout.name}.${field}" is not an integer`);
    }
    return this;
  }

  /** A view (not a copy) of a field's bytes. */
  field(field: F): Uint8Array<ArrayBuffer> {
    const { offset, size } = this.layout.fields[field];
    return this.bytes.subarray(offset, offset + size);
  }

  /** Copies `value` into a byte-array field; the rest of the field is zeroed. */
  setBytes(field: F, value: Uint8Array): this {
    const target = this.field(field);
    if (value.length > target.length) {
      throw new RangeError(
        `${value.length} bytes do not fit "${this.layout.name}.${field}" (${target.length})`,
      );
    }
    target.fill(0);
    target.set(value);
    return this;
  }

  /** The address of the bytes, for pointer fields of other structures. */
  address(): bigint {
    return addressOf(this.bytes);
  }
}

/** The address of a buffer's first byte, as the kernel expects in a `__u64` pointer field. */
export function addressOf(bytes: Uint8Array<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)));
}
