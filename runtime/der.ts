/**
 * Writing DER (ITU-T X.690), just enough for the certificates enarx makes on
 * its hot paths: a keep's one-use TLS certificate is made in every keep and
 * by every deploy client, and @peculiar/x509 (with its CommonJS dependencies)
 * costs a process about 100 ms of CPU to load. Reading DER is
 * runtime/der_reader.ts; certificates and CRLs, runtime/x509_reader.ts.
 *
 * @module
 */

/** Encodes a DER length (definite form). */
function derLength(length: number): Uint8Array<ArrayBuffer> {
  if (length < 0x80) return Uint8Array.of(length);
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

/** One DER element: tag (one byte), length, and the concatenated `contents`. */
export function derElement(tag: number, ...contents: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const length = contents.reduce((sum, c) => sum + c.length, 0);
  const header = derLength(length);
  const out = new Uint8Array(1 + header.length + length);
  out[0] = tag;
  out.set(header, 1);
  let at = 1 + header.length;
  for (const c of contents) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** SEQUENCE of `items`. */
export function derSequence(...items: Uint8Array[]): Uint8Array<ArrayBuffer> {
  return derElement(0x30, ...items);
}

/**
 * INTEGER from big-endian unsigned bytes: leading zeros dropped, one zero
 * byte added where the top bit is set (so the value stays positive).
 */
export function derUnsignedInteger(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  const value = bytes.subarray(start);
  return value[0] & 0x80
    ? derElement(0x02, Uint8Array.of(0), value)
    : derElement(0x02, value.length === 0 ? Uint8Array.of(0) : value);
}

/** OBJECT IDENTIFIER from its dotted form, e.g. `2.5.4.3`. */
export function derOid(dotted: string): Uint8Array<ArrayBuffer> {
  const arcs = dotted.split(".").map(Number);
  const bytes: number[] = [arcs[0] * 40 + arcs[1]];
  for (const arc of arcs.slice(2)) {
    const base128: number[] = [arc & 0x7f];
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) {
      base128.unshift(0x80 | (n & 0x7f));
    }
    bytes.push(...base128);
  }
  return derElement(0x06, Uint8Array.from(bytes));
}

/** UTF8String. */
export function derUtf8String(text: string): Uint8Array<ArrayBuffer> {
  return derElement(0x0c, new TextEncoder().encode(text));
}

/**
 * A certificate validity time (RFC 5280 4.1.2.5): UTCTime up to 2049,
 * GeneralizedTime from 2050, in whole seconds, UTC.
 */
export function derTime(date: Date): Uint8Array<ArrayBuffer> {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-:T]/g, "") + "Z";
  return date.getUTCFullYear() < 2050
    ? derElement(0x17, new TextEncoder().encode(digits.slice(2)))
    : derElement(0x18, new TextEncoder().encode(digits));
}

/**
 * A raw `r ‖ s` ECDSA signature (as WebCrypto makes it) as the DER
 * `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` that X.509 holds.
 */
export function derEcdsaSignature(raw: Uint8Array): Uint8Array<ArrayBuffer> {
  const half = raw.length / 2;
  return derSequence(
    derUnsignedInteger(raw.subarray(0, half)),
    derUnsignedInteger(raw.subarray(half)),
  );
}

/** A random 16-byte certificate serial, positive and with no leading zero byte, as hex. */
export function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] & 0x7f) | 0x01;
  return bytes.toHex();
}
