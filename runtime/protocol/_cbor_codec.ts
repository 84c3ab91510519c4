/**
 * The bytes of the protocol's CBOR (RFC 8949), written from the RFC for the
 * subset the deploy protocol uses: unsigned and negative integers (major
 * types 0 and 1, `bigint` past 2^53), byte strings (2), text strings (3),
 * arrays (4), maps with text keys (5), false, true, null and floats (7).
 *
 * The encoder writes the core deterministic encoding of §4.2.1: the shortest
 * head for every argument, definite lengths only, map keys sorted by the
 * bytewise order of their encodings, and each float in the shortest of
 * binary16/32/64 that holds it exactly (§4.2.2's preferred serialization).
 * A number that is a safe integer is always an integer, never a float.
 *
 * The decoder accepts exactly what the encoder writes: anything else throws
 * {@link CborSyntaxError}, which `cbor.ts` turns into a `CborError`. It
 * never allocates more than the input could hold, and nests at most
 * {@link MAX_CBOR_DEPTH} arrays and maps, so hostile input can neither exhaust
 * memory nor overflow the stack. Private to `runtime/protocol/`.
 *
 * @module
 */

/** The deepest nesting of arrays and maps either direction accepts. */
export const MAX_CBOR_DEPTH = 100;

/** Why bytes are not the protocol's CBOR; `deterministic` when only the form is wrong. */
export class CborSyntaxError extends Error {
  /** `malformed`: not CBOR this codec accepts; `nondeterministic`: not §4.2.1's form. */
  readonly kind: "malformed" | "nondeterministic";
  /** Makes an error; `message` names the byte offset and what is wrong there. */
  constructor(kind: "malformed" | "nondeterministic", message: string) {
    super(message);
    this.name = "CborSyntaxError";
    this.kind = kind;
  }
}

// Major types, RFC 8949 §3.1, already shifted into the head's top three bits.
const UINT = 0x00;
const NEGINT = 0x20;
const BYTES = 0x40;
const TEXT = 0x60;
const ARRAY = 0x80;
const MAP = 0xa0;
// Simple values and floats, §3.3.
const FALSE = 0xf4;
const TRUE = 0xf5;
const NULL = 0xf6;
const UNDEFINED = 0xf7;
const FLOAT16 = 0xf9;
const FLOAT32 = 0xfa;
const FLOAT64 = 0xfb;

const TWO_32 = 2 ** 32;
const TWO_64N = 1n << 64n;

const utf8Encoder = new TextEncoder();
// fatal: invalid UTF-8 is an error (§3.1, major type 3 is UTF-8); ignoreBOM:
// a leading U+FEFF is text like any other, so it must survive a round trip.
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

// ---------------------------------------------------------------- encoding

/**
 * Collects the output: heads and small strings go into a scratch buffer;
 * large byte strings are kept by reference and copied once, at the end.
 */
class Writer {
  #parts: Uint8Array[] = [];
  #buf = new Uint8Array(512);
  #view = new DataView(this.#buf.buffer);
  #start = 0;
  #pos = 0;
  #total = 0;

  /** Room for `n` more bytes in the scratch buffer. */
  #reserve(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    this.#flush();
    this.#buf = new Uint8Array(Math.max(n, this.#buf.length * 2));
    this.#view = new DataView(this.#buf.buffer);
    this.#start = this.#pos = 0;
  }

  #flush(): void {
    if (this.#pos > this.#start) this.#parts.push(this.#buf.subarray(this.#start, this.#pos));
    this.#start = this.#pos;
  }

  /** A head (§3): major type and argument, in the fewest bytes. */
  head(major: number, arg: number): void {
    this.#reserve(9);
    const buf = this.#buf;
    let pos = this.#pos;
    if (arg < 24) {
      buf[pos++] = major | arg;
    } else if (arg < 0x100) {
      buf[pos++] = major | 24;
      buf[pos++] = arg;
    } else if (arg < 0x10000) {
      buf[pos++] = major | 25;
      this.#view.setUint16(pos, arg);
      pos += 2;
    } else if (arg < TWO_32) {
      buf[pos++] = major | 26;
      this.#view.setUint32(pos, arg);
      pos += 4;
    } else {
      buf[pos++] = major | 27;
      this.#view.setUint32(pos, Math.floor(arg / TWO_32));
      this.#view.setUint32(pos + 4, arg >>> 0);
      pos += 8;
    }
    this.#total += pos - this.#pos;
    this.#pos = pos;
  }

  /** A head whose argument needs all 64 bits (past 2^53). */
  head64(major: number, arg: bigint): void {
    this.#reserve(9);
    this.#buf[this.#pos] = major | 27;
    this.#view.setBigUint64(this.#pos + 1, arg);
    this.#pos += 9;
    this.#total += 9;
  }

  /** One byte: a simple value. */
  byte(value: number): void {
    this.#reserve(1);
    this.#buf[this.#pos++] = value;
    this.#total += 1;
  }

  /** A float head and its bits: 2, 4 or 8 bytes. */
  float(initial: number, value: number, size: 2 | 4 | 8): void {
    this.#reserve(1 + size);
    this.#buf[this.#pos] = initial;
    if (size === 2) this.#view.setUint16(this.#pos + 1, value);
    else if (size === 4) this.#view.setFloat32(this.#pos + 1, value);
    else this.#view.setFloat64(this.#pos + 1, value);
    this.#pos += 1 + size;
    this.#total += 1 + size;
  }

  /** Raw bytes after a head; large ones by reference. */
  bytes(bytes: Uint8Array): void {
    if (bytes.length > 256) {
      this.#flush();
      this.#parts.push(bytes);
    } else {
      this.#reserve(bytes.length);
      this.#buf.set(bytes, this.#pos);
      this.#pos += bytes.length;
    }
    this.#total += bytes.length;
  }

  /** A text string whose characters are all ASCII: its bytes are its code units. */
  ascii(text: string): void {
    this.#reserve(text.length);
    const buf = this.#buf;
    let pos = this.#pos;
    for (let i = 0; i < text.length; i++) buf[pos++] = text.charCodeAt(i);
    this.#pos = pos;
    this.#total += text.length;
  }

  /** Everything written, as one plain Uint8Array. */
  finish(): Uint8Array {
    this.#flush();
    // One part is a window on the scratch buffer: copy it out, so the result
    // owns exactly its bytes.
    if (this.#parts.length === 1) return this.#parts[0].slice();
    const out = new Uint8Array(this.#total);
    let at = 0;
    for (const part of this.#parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }
}

function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
}

function writeText(w: Writer, text: string): void {
  if (text.length < 128 && isAscii(text)) {
    w.head(TEXT, text.length);
    w.ascii(text);
  } else {
    const bytes = utf8Encoder.encode(text);
    w.head(TEXT, bytes.length);
    w.bytes(bytes);
  }
}

function writeBigint(w: Writer, value: bigint): void {
  const major = value < 0n ? NEGINT : UINT;
  const arg = value < 0n ? -1n - value : value;
  if (arg >= TWO_64N) {
    throw new RangeError(`Cannot encode ${value} as CBOR: integers are limited to 64 bits`);
  }
  if (arg <= BigInt(Number.MAX_SAFE_INTEGER)) w.head(major, Number(arg));
  else w.head64(major, arg);
}

const FLOAT_BITS = new DataView(new ArrayBuffer(4));

/**
 * The binary16 bits of `value` when binary16 holds it exactly, else -1
 * (IEEE 754 binary16: 1 sign, 5 exponent bits biased by 15, 10 fraction bits;
 * exponent 0 holds the subnormals, fraction × 2^-24). `value` is finite and
 * not zero.
 */
export function exactHalf(value: number): number {
  if (Math.fround(value) !== value) return -1; // every binary16 is a binary32
  FLOAT_BITS.setFloat32(0, value);
  const bits = FLOAT_BITS.getUint32(0);
  const sign = (bits >>> 16) & 0x8000;
  const exponent = ((bits >>> 23) & 0xff) - 127;
  const fraction = bits & 0x7fffff;
  if (exponent >= -14 && exponent <= 15) {
    if ((fraction & 0x1fff) !== 0) return -1; // more than 10 fraction bits
    return sign | ((exponent + 15) << 10) | (fraction >>> 13);
  }
  if (exponent >= -24 && exponent < -14) {
    // A subnormal: the 24-bit significand times 2^(exponent - 23) must be a
    // whole multiple of 2^-24.
    const significand = 0x800000 | fraction;
    const shift = -(exponent + 1);
    if ((significand & ((1 << shift) - 1)) !== 0) return -1;
    return sign | (significand >>> shift);
  }
  return -1;
}

function writeNumber(w: Writer, value: number): void {
  if (Number.isSafeInteger(value)) {
    // -0 is a safe integer too, and goes out as 0.
    if (value >= 0) w.head(UINT, value);
    else w.head(NEGINT, -1 - value);
  } else if (Number.isNaN(value)) {
    w.float(FLOAT16, 0x7e00, 2); // the decoder refuses it
  } else if (!Number.isFinite(value)) {
    w.float(FLOAT16, value > 0 ? 0x7c00 : 0xfc00, 2);
  } else {
    const half = exactHalf(value);
    if (half >= 0) w.float(FLOAT16, half, 2);
    else if (Math.fround(value) === value) w.float(FLOAT32, value, 4);
    else w.float(FLOAT64, value, 8);
  }
}

/** §4.2.1: keys sorted by the bytewise order of their encodings. */
function compareKeys(a: string, b: string): number {
  if (isAscii(a) && isAscii(b)) {
    // Same-type heads order by length first; equal lengths by their bytes.
    if (a.length !== b.length) return a.length - b.length;
    return a < b ? -1 : a > b ? 1 : 0;
  }
  const x = utf8Encoder.encode(a);
  const y = utf8Encoder.encode(b);
  if (x.length !== y.length) return x.length - y.length;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return 0;
}

function writeMap(w: Writer, map: Record<string, unknown>, depth: number): void {
  const keys = Object.keys(map).filter((key) => map[key] !== undefined).sort(compareKeys);
  w.head(MAP, keys.length);
  for (const key of keys) {
    writeText(w, key);
    writeValue(w, map[key], depth);
  }
}

/** A Map, whose keys may be any value: each encoded alone, then sorted bytewise. */
function writeAnyKeyMap(w: Writer, map: Map<unknown, unknown>, depth: number): void {
  const entries: [Uint8Array, unknown][] = [];
  for (const [key, value] of map) {
    const keyWriter = new Writer();
    writeValue(keyWriter, key, depth);
    entries.push([keyWriter.finish(), value]);
  }
  entries.sort(([a], [b]) => compareBytes(a, 0, a.length, b, 0, b.length));
  w.head(MAP, entries.length);
  for (const [key, value] of entries) {
    w.bytes(key);
    writeValue(w, value, depth);
  }
}

function writeObject(w: Writer, value: object, depth: number): void {
  if (value instanceof Uint8Array) {
    w.head(BYTES, value.length);
    w.bytes(value);
    return;
  }
  if (depth >= MAX_CBOR_DEPTH) {
    throw new RangeError(
      `Cannot encode a value nested deeper than ${MAX_CBOR_DEPTH} arrays and maps as CBOR ` +
        `(or one that contains itself)`,
    );
  }
  if (Array.isArray(value)) {
    w.head(ARRAY, value.length);
    for (const item of value) writeValue(w, item, depth + 1);
    return;
  }
  if (value instanceof Map) return writeAnyKeyMap(w, value, depth + 1);
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    throw new TypeError(
      `Cannot encode a ${value.constructor?.name ?? "object"} as CBOR; ` +
        `use plain objects, arrays, Uint8Array, strings, numbers, bigints, booleans or null`,
    );
  }
  writeMap(w, value as Record<string, unknown>, depth + 1);
}

function writeValue(w: Writer, value: unknown, depth: number): void {
  switch (typeof value) {
    case "number":
      return writeNumber(w, value);
    case "string":
      return writeText(w, value);
    case "boolean":
      return w.byte(value ? TRUE : FALSE);
    case "bigint":
      return writeBigint(w, value);
    case "undefined":
      return w.byte(UNDEFINED); // only inside arrays; the decoder refuses it
    case "object":
      if (value === null) return w.byte(NULL);
      return writeObject(w, value, depth);
    default:
      throw new TypeError(`Cannot encode a ${typeof value} as CBOR`);
  }
}

/** Encodes `value` in the core deterministic encoding (RFC 8949 §4.2.1). */
export function encodeDeterministic(value: unknown): Uint8Array {
  const w = new Writer();
  writeValue(w, value, 0);
  return w.finish();
}

// ---------------------------------------------------------------- decoding

class Reader {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  /** Well-formed CBOR of any key order and float width, maps as Map (see decodeGeneric). */
  readonly generic: boolean;
  pos = 0;

  constructor(bytes: Uint8Array, generic: boolean) {
    this.bytes = bytes;
    this.generic = generic;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  malformed(at: number, reason: string): CborSyntaxError {
    return new CborSyntaxError("malformed", `${reason} at byte ${at}`);
  }

  nondeterministic(at: number, reason: string): CborSyntaxError {
    return new CborSyntaxError("nondeterministic", `${reason} at byte ${at}`);
  }

  /** Fails unless `n` more bytes are there: checked before anything is allocated. */
  need(n: number, at: number): void {
    if (n > this.bytes.length - this.pos) {
      throw this.malformed(
        at,
        `truncated: ${n} more bytes claimed, ${this.bytes.length - this.pos} left`,
      );
    }
  }

  /**
   * The argument of the head at `at` whose additional information is `info`
   * (§3: 0-23 in the head, 24-27 in the next 1, 2, 4 or 8 bytes), refusing
   * a longer head than the argument needs (§4.2.1). Past 2^53 it is a bigint.
   */
  argument(info: number, at: number): number | bigint {
    if (info < 24) return info;
    if (info > 27) {
      throw info === 31
        ? this.malformed(at, "indefinite length (not allowed)")
        : this.malformed(at, `reserved additional information ${info}`);
    }
    const size = 1 << (info - 24);
    this.need(size, at);
    const view = this.view;
    const pos = this.pos;
    this.pos += size;
    let arg: number;
    if (size === 1) arg = view.getUint8(pos);
    else if (size === 2) arg = view.getUint16(pos);
    else if (size === 4) arg = view.getUint32(pos);
    else {
      const hi = view.getUint32(pos);
      arg = hi * TWO_32 + view.getUint32(pos + 4);
      if (hi < 1) throw this.nondeterministic(at, "integer head longer than needed");
      if (arg > Number.MAX_SAFE_INTEGER) return view.getBigUint64(pos);
      return arg;
    }
    if (arg < (size === 1 ? 24 : 2 ** (4 * size))) {
      throw this.nondeterministic(at, "integer head longer than needed");
    }
    return arg;
  }
}

/**
 * A length argument, once the input is known to hold that many items of at
 * least `unit` bytes each: a hostile length allocates nothing.
 */
function length(r: Reader, arg: number | bigint, unit: number, at: number): number {
  const left = r.bytes.length - r.pos;
  if (typeof arg === "bigint" || arg * unit > left) {
    throw r.malformed(at, `truncated: the head claims a length of ${arg}, ${left} bytes are left`);
  }
  return arg;
}

function readText(r: Reader, n: number): string {
  const { bytes } = r;
  const start = r.pos;
  r.pos += n;
  if (n < 64) {
    let text = "";
    for (let i = start; i < start + n; i++) {
      const b = bytes[i];
      if (b > 0x7f) return decodeUtf8(r, start, n);
      text += String.fromCharCode(b);
    }
    return text;
  }
  return decodeUtf8(r, start, n);
}

function decodeUtf8(r: Reader, start: number, n: number): string {
  try {
    return utf8Decoder.decode(r.bytes.subarray(start, start + n));
  } catch {
    throw r.malformed(start, "text string is not valid UTF-8");
  }
}

function readFloat(r: Reader, initial: number, at: number): number {
  const size = initial === FLOAT16 ? 2 : initial === FLOAT32 ? 4 : 8;
  r.need(size, at);
  const pos = r.pos;
  r.pos += size;
  let value: number;
  if (size === 2) value = halfToNumber(r.view.getUint16(pos));
  else if (size === 4) value = r.view.getFloat32(pos);
  else value = r.view.getFloat64(pos);
  if (r.generic) return value;
  if (Number.isNaN(value)) throw r.malformed(at, "NaN (not allowed)");
  if (!Number.isFinite(value)) throw r.malformed(at, "infinity (not allowed)");
  if (Number.isSafeInteger(value)) {
    throw r.nondeterministic(at, "float holding an integer (encode it as an integer)");
  }
  if (size === 4 ? exactHalf(value) >= 0 : size === 8 && Math.fround(value) === value) {
    throw r.nondeterministic(at, "float longer than needed");
  }
  return value;
}

/** IEEE 754 binary16 bits to a number. */
function halfToNumber(half: number): number {
  const exponent = (half >> 10) & 0x1f;
  const fraction = half & 0x3ff;
  let magnitude: number;
  if (exponent === 0) magnitude = fraction * 2 ** -24;
  else if (exponent === 31) magnitude = fraction === 0 ? Infinity : NaN;
  else magnitude = (fraction + 1024) * 2 ** (exponent - 25);
  return half & 0x8000 ? -magnitude : magnitude;
}

function readSimple(r: Reader, initial: number, at: number): unknown {
  switch (initial) {
    case FALSE:
      return false;
    case TRUE:
      return true;
    case NULL:
      return null;
    case UNDEFINED:
      throw r.malformed(at, "undefined (not allowed)");
    case FLOAT16:
    case FLOAT32:
    case FLOAT64:
      return readFloat(r, initial, at);
    case 0xff:
      throw r.malformed(at, "unexpected break");
    default:
      throw r.malformed(at, `simple value 0x${initial.toString(16)} (not allowed)`);
  }
}

function readMap(r: Reader, n: number, depth: number): Record<string, unknown> {
  const map: Record<string, unknown> = {};
  const { bytes } = r;
  let lastStart = 0;
  let lastEnd = 0;
  for (let i = 0; i < n; i++) {
    const keyStart = r.pos;
    r.need(1, keyStart);
    if ((bytes[keyStart] & 0xe0) !== TEXT) {
      throw r.malformed(keyStart, "map key is not a text string");
    }
    const key = readItem(r, depth) as string;
    const keyEnd = r.pos;
    if (i > 0) {
      const order = compareBytes(bytes, lastStart, lastEnd, bytes, keyStart, keyEnd);
      if (order === 0) throw r.malformed(keyStart, `repeated map key "${key}"`);
      if (order > 0) throw r.nondeterministic(keyStart, `map key "${key}" out of order`);
    }
    lastStart = keyStart;
    lastEnd = keyEnd;
    const value = readItem(r, depth);
    // A plain assignment of "__proto__" would set the prototype instead.
    Object.defineProperty(map, key, {
      value,
      enumerable: true,
      configurable: true,
      writable: true,
    });
  }
  return map;
}

/** Bytewise order of a[a0, a1) and b[b0, b1). */
function compareBytes(
  a: Uint8Array,
  a0: number,
  a1: number,
  b: Uint8Array,
  b0: number,
  b1: number,
): number {
  const n = Math.min(a1 - a0, b1 - b0);
  for (let i = 0; i < n; i++) {
    const d = a[a0 + i] - b[b0 + i];
    if (d !== 0) return d;
  }
  return (a1 - a0) - (b1 - b0);
}

function readItem(r: Reader, depth: number): unknown {
  const at = r.pos;
  r.need(1, at);
  const initial = r.bytes[r.pos++];
  const major = initial & 0xe0;
  if (major === 0xe0) return readSimple(r, initial, at);
  const arg = r.argument(initial & 0x1f, at);
  switch (major) {
    case UINT:
      return arg;
    case NEGINT:
      if (typeof arg === "number" && arg < Number.MAX_SAFE_INTEGER) return -1 - arg;
      return -1n - BigInt(arg);
    case BYTES: {
      const n = length(r, arg, 1, at);
      const out = r.bytes.slice(r.pos, r.pos + n);
      r.pos += n;
      return out.constructor === Uint8Array ? out : new Uint8Array(out);
    }
    case TEXT:
      return readText(r, length(r, arg, 1, at));
    case 0xc0:
      throw r.malformed(at, `tag ${arg} (not allowed)`);
  }
  if (depth >= MAX_CBOR_DEPTH) {
    throw r.malformed(at, `nested deeper than ${MAX_CBOR_DEPTH} arrays and maps`);
  }
  if (major === ARRAY) {
    const n = length(r, arg, 1, at);
    const list: unknown[] = [];
    for (let i = 0; i < n; i++) list.push(readItem(r, depth + 1));
    return list;
  }
  const n = length(r, arg, 2, at);
  return r.generic ? readAnyKeyMap(r, n, depth + 1) : readMap(r, n, depth + 1);
}

function readAnyKeyMap(r: Reader, n: number, depth: number): Map<unknown, unknown> {
  const map = new Map<unknown, unknown>();
  for (let i = 0; i < n; i++) {
    const at = r.pos;
    const key = readItem(r, depth);
    if (map.has(key)) throw r.malformed(at, `repeated map key ${String(key)}`);
    map.set(key, readItem(r, depth));
  }
  return map;
}

/**
 * Decodes the one data item that fills `bytes`, accepting only the core
 * deterministic encoding this module writes. Byte strings come back as
 * fresh Uint8Arrays (never views of `bytes`), integers as numbers up to
 * 2^53 - 1 in magnitude and as bigints beyond, maps as plain objects.
 */
export function decodeDeterministic(bytes: Uint8Array): unknown {
  return decodeWhole(new Reader(bytes, false));
}

/**
 * Decodes the one data item that fills `bytes` when it is well-formed CBOR
 * with definite lengths and shortest heads, in any map key order: maps come
 * back as Map (keys of any type, none repeated), floats of any width,
 * NaN and infinities included. Tags, `undefined` and other simple values,
 * invalid UTF-8 and nesting past {@link MAX_CBOR_DEPTH} are refused. For
 * documents others encode, such as COSE.
 */
export function decodeGeneric(bytes: Uint8Array): unknown {
  return decodeWhole(new Reader(bytes, true));
}

function decodeWhole(r: Reader): unknown {
  const { bytes } = r;
  const value = readItem(r, 0);
  if (r.pos !== bytes.length) {
    throw r.malformed(r.pos, `${bytes.length - r.pos} bytes after the data item`);
  }
  return value;
}
