/**
 * Binary structures declared once as tables of fields (name, offset, size)
 * and read through one small DataView helper. Every integer is little-endian,
 * as in AMD's and Intel's attestation structures. Private to
 * runtime/attestation/.
 *
 * @example
 * ```ts
 * const HEADER = defineLayout("QUOTE_HEADER", {
 *   size: 48,
 *   fields: [
 *     { name: "version", offset: 0, size: 2 },
 *     { name: "userData", offset: 28, size: 20 },
 *   ],
 * });
 * const fields = new FieldReader(bytes, HEADER);
 * fields.uint("version"); fields.copy("userData");
 * ```
 *
 * @module
 */

/** One field of a binary structure. */
export interface Field<N extends string = string> {
  /** The field's name, in camelCase (the spec's name in a comment beside it). */
  readonly name: N;
  /** Byte offset from the start of the structure. */
  readonly offset: number;
  /** Size in bytes. */
  readonly size: number;
}

/** A binary structure: its name, total size and fields by name. */
export interface Layout<N extends string = string> {
  /** The structure's name in its specification, for error messages. */
  readonly name: string;
  /** Total size in bytes. */
  readonly size: number;
  /** The fields, in declaration order. */
  readonly fields: readonly Field<N>[];
  /** The fields by name. */
  readonly byName: Readonly<Record<N, Field<N>>>;
}

/**
 * Declares a structure. Throws when a field lies outside the structure or two
 * fields overlap, so that a typo in a table fails at load time.
 */
export function defineLayout<const N extends string>(
  name: string,
  { size, fields }: {
    /** The structure's total size in bytes. */
    size: number;
    /** Every field, in any order. */
    fields: readonly Field<N>[];
  },
): Layout<N> {
  const byName = {} as Record<N, Field<N>>;
  const sorted = [...fields].sort((a, b) => a.offset - b.offset);
  for (let i = 0; i < sorted.length; i++) {
    const f = sorted[i];
    if (f.offset < 0 || f.size <= 0 || f.offset + f.size > size) {
      throw new RangeError(`Field "${f.name}" of ${name} lies outside its ${size} bytes`);
    }
    if (i > 0 && sorted[i - 1].offset + sorted[i - 1].size > f.offset) {
      throw new RangeError(`Fields "${sorted[i - 1].name}" and "${f.name}" of ${name} overlap`);
    }
    if (f.name in byName) throw new RangeError(`Field "${f.name}" of ${name} is declared twice`);
    byName[f.name] = f;
  }
  return { name, size, fields, byName };
}

/** Reads the fields of one structure out of bytes (little-endian integers). */
export class FieldReader<N extends string> {
  /** The structure's bytes (a view, not a copy). */
  readonly bytes: Uint8Array;
  /** The structure's layout. */
  readonly layout: Layout<N>;
  readonly #view: DataView;

  /**
   * Reads `layout` at `offset` of `bytes`; throws RangeError when the bytes
   * are shorter than the structure.
   */
  constructor(bytes: Uint8Array, layout: Layout<N>, options: { offset?: number } = {}) {
    const offset = options.offset ?? 0;
    if (bytes.length < offset + layout.size) {
      throw new RangeError(
        `${layout.name} needs ${layout.size} bytes at offset ${offset}, got ${
          Math.max(0, bytes.length - offset)
        }`,
      );
    }
    this.bytes = bytes.subarray(offset, offset + layout.size);
    this.layout = layout;
    this.#view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
  }

  /** The field's bytes, copied (so callers may keep them). */
  copy(name: N): Uint8Array {
    const f = this.layout.byName[name];
    return this.bytes.slice(f.offset, f.offset + f.size);
  }

  /** The field's bytes, as a view into the structure (no copy). */
  view(name: N): Uint8Array {
    const f = this.layout.byName[name];
    return this.bytes.subarray(f.offset, f.offset + f.size);
  }

  /** An unsigned little-endian integer field of 1, 2 or 4 bytes. */
  uint(name: N): number {
    const f = this.layout.byName[name];
    switch (f.size) {
      case 1:
        return this.#view.getUint8(f.offset);
      case 2:
        return this.#view.getUint16(f.offset, true);
      case 4:
        return this.#view.getUint32(f.offset, true);
      default:
        throw new RangeError(
          `Field "${name}" of ${this.layout.name} is ${f.size} bytes, not 1, 2 or 4`,
        );
    }
  }

  /** An unsigned little-endian 64-bit field, as a bigint. */
  u64(name: N): bigint {
    const f = this.layout.byName[name];
    if (f.size !== 8) {
      throw new RangeError(`Field "${name}" of ${this.layout.name} is ${f.size} bytes, not 8`);
    }
    return this.#view.getBigUint64(f.offset, true);
  }

  /** True when every byte of the field is zero. */
  isZero(name: N): boolean {
    return isAllZero(this.view(name));
  }
}

/** True when every byte is zero. */
export function isAllZero(bytes: Uint8Array): boolean {
  for (const b of bytes) if (b !== 0) return false;
  return true;
}

/** A reversed copy: little-endian integers to big-endian and back. */
export function reversed(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[bytes.length - 1 - i];
  return out;
}
