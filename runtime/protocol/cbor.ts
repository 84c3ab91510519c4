/**
 * The one CBOR codec of the deploy protocol: deterministic encoding (RFC 8949
 * §4.2.1, core deterministic encoding: shortest heads, definite lengths, map
 * keys sorted by their encoded bytes) and strict decoding that accepts only
 * what the encoder would have produced. Every message on every hop goes
 * through here, so that a body is valid exactly when its re-encoding is the
 * same bytes.
 *
 * @module
 */
import { decode, encode } from "cborg";
import { bytesEqual, concatBytes } from "../bytes.ts";
import { EnarxError } from "../errors.ts";

/** The largest body or frame any hop accepts: 64 MiB (a workload module fits). */
export const MAX_CBOR_SIZE = 64 * 1024 * 1024;

/** A CBOR value that cannot be decoded, is not deterministic, or is too large. */
export class CborError extends EnarxError {
  /** Makes an error with code `cbor-malformed` or `cbor-too-large`. */
  constructor(code: "cbor-malformed" | "cbor-too-large", message: string, cause?: unknown) {
    super(code, message, { exit: "dataError", cause });
    this.name = "CborError";
  }
}

/** Options of {@link decodeCbor}. */
export interface DecodeCborOptions {
  /** Reject input longer than this many bytes (default {@link MAX_CBOR_SIZE}). */
  maxSize?: number;
  /** Names what is decoded in error messages, e.g. `request body` (default `input`). */
  what?: string;
}

const DECODE_OPTIONS = {
  strict: true,
  allowIndefinite: false,
  allowUndefined: false,
  allowInfinity: false,
  allowNaN: false,
  rejectDuplicateMapKeys: true,
  useMaps: false,
} as const;

/**
 * Encodes a value deterministically. Maps are plain objects with string keys;
 * byte strings are Uint8Array; `undefined` properties are left out.
 */
export function encodeCbor(value: unknown): Uint8Array {
  const out = encode(value, { ignoreUndefinedProperties: true });
  // cborg hands back a node Buffer where one exists; callers get a plain
  // Uint8Array (Buffer's slice() shares memory, Uint8Array's copies).
  return out.constructor === Uint8Array
    ? out
    : new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/**
 * Decodes exactly one CBOR data item that fills all of `bytes`. Rejects with
 * {@link CborError} (`cbor-malformed`): truncated or trailing bytes,
 * indefinite lengths, `undefined`, NaN and infinities, tags, duplicate or
 * non-text map keys, non-shortest heads, and map keys out of canonical
 * order; (`cbor-too-large`): more than `maxSize` bytes.
 */
export function decodeCbor(bytes: Uint8Array, options: DecodeCborOptions = {}): unknown {
  const what = options.what ?? "input";
  const maxSize = options.maxSize ?? MAX_CBOR_SIZE;
  if (bytes.length > maxSize) {
    throw new CborError(
      "cbor-too-large",
      `The ${what} is ${bytes.length} bytes, over the limit of ${maxSize} bytes; send less`,
    );
  }
  if (bytes.length === 0) {
    throw new CborError("cbor-malformed", `The ${what} is empty; send one CBOR data item`);
  }
  let value: unknown;
  try {
    value = decode(bytes, DECODE_OPTIONS);
  } catch (error) {
    const reason = error instanceof Error ? error.message.replace(/^CBOR decode error: /, "") : "";
    throw new CborError(
      "cbor-malformed",
      `The ${what} is not valid CBOR ("${reason}"); send one deterministic CBOR data item`,
      error,
    );
  }
  // Deterministic encoding means one encoding per value: compare with ours.
  let again: Uint8Array;
  try {
    again = encodeCbor(value);
  } catch (error) {
    // A value nested thousands deep decodes but overflows the encoder's stack.
    throw new CborError(
      "cbor-malformed",
      `The ${what} cannot be re-encoded (${
        error instanceof Error ? error.message : error
      }); send a shallower CBOR data item`,
      error,
    );
  }
  if (!bytesEqual(again, bytes)) {
    throw new CborError(
      "cbor-malformed",
      `The ${what} is not deterministically encoded CBOR (RFC 8949 §4.2.1: shortest ` +
        `lengths, sorted map keys); encode it deterministically`,
    );
  }
  return value;
}

/**
 * Returns the byte length of the first complete CBOR data item in `bytes`, or
 * `undefined` when more bytes are needed. Used to split a CBOR sequence (RFC
 * 8742) arriving in chunks. Throws `cbor-malformed` for indefinite lengths
 * and reserved values.
 */
export function cborItemLength(bytes: Uint8Array, offset = 0): number | undefined {
  let pos = offset;
  let pending = 1; // data items still to skip
  while (pending > 0) {
    if (pos >= bytes.length) return undefined;
    const initial = bytes[pos++];
    const major = initial >> 5;
    const info = initial & 0x1f;
    let arg: number;
    if (info < 24) {
      arg = info;
    } else if (info <= 27) {
      const size = 1 << (info - 24);
      if (pos + size > bytes.length) return undefined;
      arg = 0;
      for (let i = 0; i < size; i++) arg = arg * 256 + bytes[pos + i];
      pos += size;
    } else {
      throw new CborError(
        "cbor-malformed",
        `CBOR item at byte ${pos - 1} has reserved or indefinite length (0x${
          initial.toString(16)
        }); send definite lengths only`,
      );
    }
    pending--;
    switch (major) {
      case 2:
      case 3:
        pos += arg;
        if (pos > bytes.length) return undefined;
        break;
      case 4:
        pending += arg;
        break;
      case 5:
        pending += 2 * arg;
        break;
      case 6:
        pending += 1;
        break;
      default:
        break; // integers and simple values/floats: the head is all
    }
  }
  return pos - offset;
}

/** Encodes values as a CBOR sequence (RFC 8742): the items one after another. */
export function encodeCborSequence(values: unknown[]): Uint8Array {
  return concatBytes(...values.map(encodeCbor));
}

/**
 * Decodes a CBOR sequence (RFC 8742) arriving on a byte stream, yielding each
 * item as soon as its last byte arrives. Each item is decoded strictly and
 * may be at most `maxSize` bytes. A stream that ends inside an item throws
 * `cbor-malformed`.
 */
export async function* readCborSequence(
  stream: ReadableStream<Uint8Array>,
  options: DecodeCborOptions = {},
): AsyncGenerator<unknown> {
  const maxSize = options.maxSize ?? MAX_CBOR_SIZE;
  let buffer: Uint8Array = new Uint8Array(0);
  for await (const chunk of stream) {
    buffer = concatBytes(buffer, chunk);
    while (buffer.length > 0) {
      const length = cborItemLength(buffer);
      if (length === undefined) {
        if (buffer.length > maxSize) {
          throw new CborError(
            "cbor-too-large",
            `A CBOR sequence item is over the limit of ${maxSize} bytes`,
          );
        }
        break;
      }
      yield decodeCbor(buffer.subarray(0, length), options);
      buffer = buffer.slice(length);
    }
  }
  if (buffer.length > 0) {
    throw new CborError(
      "cbor-malformed",
      `The CBOR sequence ended inside an item (${buffer.length} bytes left over)`,
    );
  }
}
