/**
 * Moving bytes, strings and pointers between JavaScript and wasmtime's C
 * API: NUL-terminated strings, `wasm_byte_vec_t` and other `{size, data}`
 * vectors, and out-pointers. Private to ffi/wasmtime/.
 *
 * @module
 */

/** Encodes strings for C. */
export const encoder: TextEncoder = new TextEncoder();
/** Decodes names and messages from C. */
export const decoder: TextDecoder = new TextDecoder();

/** A NUL-terminated UTF-8 copy of `text` for C. */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(text);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** Reads a `wasm_byte_vec_t`/`wasm_name_t` ({size, data}) at `vec`. */
export function readByteVec(vec: Deno.PointerValue): Uint8Array {
  if (vec === null) return new Uint8Array(0);
  const view = new Deno.UnsafePointerView(vec);
  const size = Number(view.getBigUint64(0));
  const data = view.getPointer(8);
  if (size === 0 || data === null) return new Uint8Array(0);
  return new Uint8Array(Deno.UnsafePointerView.getArrayBuffer(data, size).slice(0));
}

/** Room for one `{size, data}` vector that wasmtime fills. */
export function vecBuffer(): Uint8Array<ArrayBuffer> {
  return new Uint8Array(16);
}

/** The size and data pointer of a vector filled in `buffer`. */
export function vecOf(buffer: Uint8Array<ArrayBuffer>): { size: number; data: Deno.PointerValue } {
  const view = new DataView(buffer.buffer);
  const size = Number(view.getBigUint64(0, true));
  const data = Deno.UnsafePointer.create(view.getBigUint64(8, true));
  return { size, data };
}

/** Room for one pointer that wasmtime fills. */
export function pointerOut(): BigUint64Array<ArrayBuffer> {
  return new BigUint64Array(1);
}

/** The pointer filled in `out`. */
export function pointerIn(out: BigUint64Array): Deno.PointerValue {
  return Deno.UnsafePointer.create(out[0]);
}
