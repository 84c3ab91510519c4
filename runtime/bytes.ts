/**
 * Byte-array helpers that the platform lacks. Hex and base64 are the
 * platform's own (`Uint8Array.prototype.toHex`, `Uint8Array.fromHex`,
 * `toBase64`, `fromBase64`); this module only adds comparison and joining.
 *
 * @module
 */

/** Whether two byte arrays hold the same bytes. Not constant-time: compare no secrets with it. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether two byte arrays hold the same bytes, in time that depends only on their lengths. */
export function bytesEqualConstantTime(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/** The bytes of every part, in order, in one new array. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
