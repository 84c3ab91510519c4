/**
 * The one CBOR codec of the deploy protocol: deterministic encoding (RFC 8949
 * §4.2.1, core deterministic encoding: shortest heads, definite lengths, map
 * keys sorted by their encoded bytes) and strict decoding that accepts only
 * what the encoder would have produced. Every message on every hop goes
 * through here, so that a body is valid exactly when its re-encoding is the
 * same bytes.
 *
 * The codec is our own (`_cbor_codec.ts`, written from RFC 8949): every
 * process on the deploy path loads this module, and a general CBOR library
 * cost each of them more CPU at start-up than the rest of the protocol.
 *
 * @module
 */
import { concatBytes } from "../bytes.ts";
import {
  CborSyntaxError,
  decodeDeterministic,
  decodeGeneric,
  encodeDeterministic,
  MAX_CBOR_DEPTH as CODEC_MAX_DEPTH,
} from "./_cbor_codec.ts";
import { EnarxError } from "../errors.ts";

/** The largest body or frame any hop accepts: 64 MiB (a workload module fits). */
export const MAX_CBOR_SIZE = 64 * 1024 * 1024;

/** The deepest nesting of arrays and maps that is encoded or decoded: 100. */
export const MAX_CBOR_DEPTH: number = CODEC_MAX_DEPTH;

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

/**
 * Encodes a value deterministically. Maps are plain objects with string keys;
 * byte strings are Uint8Array; `undefined` properties are left out. Integers
 * are numbers (safe integers) or bigints (up to 64 bits); other numbers are
 * floats in the shortest form that holds them exactly. Throws TypeError for
 * anything else (Map, Date, functions…) and RangeError past 64-bit integers
 * or {@link MAX_CBOR_DEPTH} nested arrays and maps.
 */
export function encodeCbor(value: unknown): Uint8Array {
  return encodeDeterministic(value);
}

/**
 * Decodes exactly one CBOR data item that fills all of `bytes`. Rejects with
 * {@link CborError} (`cbor-malformed`): truncated or trailing bytes,
 * indefinite lengths, `undefined`, NaN and infinities, tags, other simple
 * values, duplicate or non-text map keys, invalid UTF-8, nesting deeper than
 * {@link MAX_CBOR_DEPTH}, non-shortest heads or floats, and map keys out of
 * canonical order; (`cbor-too-large`): more than `maxSize` bytes. Byte
 * strings come back as fresh Uint8Arrays, integers as numbers, or bigints
 * past 2^53 - 1, maps as plain objects.
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
  try {
    return decodeDeterministic(bytes);
  } catch (error) {
    throw cborError(error, what);
  }
}

/**
 * Decodes one well-formed CBOR data item filling `bytes` as others may
 * encode it, for documents outside the protocol (COSE): definite lengths and
 * shortest heads, but map keys in any order and of any type (maps come back
 * as Map), and floats of any width. Rejects tags, `undefined`, repeated map
 * keys, invalid UTF-8 and deep nesting with `cbor-malformed`. Does not check
 * a size limit: the caller does.
 */
export function decodeCborGeneric(bytes: Uint8Array, options: { what?: string } = {}): unknown {
  try {
    return decodeGeneric(bytes);
  } catch (error) {
    throw cborError(error, options.what ?? "input");
  }
}

function cborError(error: unknown, what: string): unknown {
  if (!(error instanceof CborSyntaxError)) return error;
  return new CborError(
    "cbor-malformed",
    error.kind === "malformed"
      ? `The ${what} is not valid CBOR ("${error.message}"); send one deterministic CBOR data item`
      : `The ${what} is not deterministically encoded CBOR (RFC 8949 §4.2.1: shortest ` +
        `lengths, sorted map keys; ${error.message}); encode it deterministically`,
    error,
  );
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
  stream: AsyncIterable<Uint8Array>,
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
