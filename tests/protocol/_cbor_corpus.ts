/**
 * Inputs for the CBOR codec's differential tests: a seeded PRNG, random
 * values of every type the protocol encodes (with the edge cases of each
 * head size, float width and key order), and byte strings made from them by
 * mutation, plus hand-made adversarial heads.
 *
 * @module
 */
import { Prng as Rng } from "../robustness/_robustness.ts";

/** The robustness tests' seeded PRNG (mulberry32): same seed, same sequence. */
export { Rng };

/** Integers at and around every head-size boundary (RFC 8949 §3). */
export const BOUNDARY_INTEGERS: readonly number[] = [
  0,
  -0,
  1,
  23,
  24,
  255,
  256,
  65535,
  65536,
  2 ** 32 - 1,
  2 ** 32,
  Number.MAX_SAFE_INTEGER,
  -1,
  -24,
  -25,
  -256,
  -257,
  -65536,
  -65537,
  -(2 ** 32),
  -(2 ** 32) - 1,
  Number.MIN_SAFE_INTEGER,
];

/** Bigints in and just out of the 64-bit range CBOR heads hold. */
export const BOUNDARY_BIGINTS: readonly bigint[] = [
  5n,
  -5n,
  2n ** 53n - 1n,
  2n ** 53n,
  -(2n ** 53n),
  -(2n ** 53n) - 1n,
  2n ** 63n,
  2n ** 64n - 1n,
  -(2n ** 64n),
];

/** Strings whose UTF-8 and UTF-16 orders differ, with a BOM, astral, empty. */
const ODD_STRINGS = ["", "\uFEFFbom", "\uE000", "\u{10000}", "\uFFFF", "é", "ée", "z", "__proto__"];

function randomFloat(rng: Rng): number {
  const view = new DataView(rng.bytes(8).buffer);
  switch (rng.int(4)) {
    case 0:
      return view.getFloat64(0);
    case 1:
      return view.getFloat32(0);
    case 2: // a binary16 value: exponent and fraction at random
      return (1024 + rng.int(1024)) * 2 ** (rng.int(30) - 24) * (rng.int(2) ? -1 : 1);
    default:
      return rng.pick([0.5, 1.5, -1.25, 2 ** 60, -(2 ** 70), 1e300, 5e-324, 0.1, 65504.5]);
  }
}

function randomText(rng: Rng): string {
  if (rng.int(3) === 0) return rng.pick(ODD_STRINGS);
  const length = rng.int(4) === 0 ? 100 + rng.int(200) : rng.int(30);
  let text = "";
  for (let i = 0; i < length; i++) {
    text += rng.int(8) === 0
      ? String.fromCodePoint(rng.pick([0xe9, 0x20ac, 0xfeff, 0x1f600, 0x10ffff]))
      : String.fromCharCode(0x20 + rng.int(95));
  }
  return text;
}

function randomObject(rng: Rng, depth: number): Record<string, unknown> {
  const map: Record<string, unknown> = {};
  for (let i = rng.int(6); i > 0; i--) {
    const key = rng.int(3) === 0 ? randomText(rng) : rng.pick(["v", "t", "a", "aa", "b", "keep"]);
    // defineProperty, so a "__proto__" key is an own property like any other.
    Object.defineProperty(map, key, {
      value: rng.int(10) === 0 ? undefined : randomValue(rng, depth + 1),
      enumerable: true,
      configurable: true,
      writable: true,
    });
  }
  return map;
}

/** A random value of a type the protocol encodes, nested at most a few levels. */
export function randomValue(rng: Rng, depth = 0): unknown {
  switch (rng.int(depth > 3 ? 8 : 11)) {
    case 0:
      return rng.int(100) - 50;
    case 1:
      return rng.pick(BOUNDARY_INTEGERS) + rng.pick([0, 0, 1, -1]);
    case 2:
      return rng.pick(BOUNDARY_BIGINTS);
    case 3:
      return randomFloat(rng);
    case 4:
      return randomText(rng);
    case 5:
      return rng.bytes(rng.int(4) === 0 ? 300 : rng.int(30));
    case 6:
      return rng.pick([true, false, null]);
    case 7:
      return rng.int(2 ** 31) * rng.pick([1, -1, 65536, 2 ** 21]);
    case 8:
      return Array.from({ length: rng.int(5) }, () => randomValue(rng, depth + 1));
    default:
      return randomObject(rng, depth);
  }
}

/** A random value for the well-formed mode: maps are Map with keys of any type. */
export function randomGenericValue(rng: Rng, depth = 0): unknown {
  if (depth < 3 && rng.int(3) === 0) {
    const map = new Map<unknown, unknown>();
    for (let i = rng.int(5); i > 0; i--) {
      const key = rng.pick([() => rng.int(40) - 20, () => randomText(rng), () => rng.bytes(3)])();
      map.set(key, randomGenericValue(rng, depth + 1));
    }
    return map;
  }
  if (depth < 3 && rng.int(4) === 0) {
    return Array.from({ length: rng.int(4) }, () => randomGenericValue(rng, depth + 1));
  }
  return rng.int(6) === 0 ? rng.pick([NaN, Infinity, -Infinity, 1.0, -0.0]) : randomValue(rng, 4);
}

/** `bytes` with one random change: a byte replaced, dropped or added, a cut, or junk after. */
export function mutate(rng: Rng, bytes: Uint8Array): Uint8Array {
  const at = rng.int(bytes.length + 1);
  const out = [...bytes];
  switch (rng.int(5)) {
    case 0:
      if (at < out.length) out[at] = rng.int(256);
      break;
    case 1:
      out.splice(at, 1);
      break;
    case 2:
      out.splice(at, 0, rng.int(256));
      break;
    case 3:
      out.length = at;
      break;
    default:
      out.push(...rng.bytes(1 + rng.int(3)));
  }
  return new Uint8Array(out);
}

/**
 * Hand-made heads: every major type with every additional-information value
 * (so each non-shortest head, reserved value and indefinite length) and a
 * few argument bytes, and each simple value and float width.
 */
export function adversarialHeads(): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let initial = 0; initial < 256; initial++) {
    for (const tail of [[], [0], [1], [0x17], [0x18], [0, 0], [0, 1, 0x61], [0xff, 0xff]]) {
      out.push(new Uint8Array([initial, ...tail]));
    }
    out.push(new Uint8Array([initial, 0, 0, 0, 0, 0, 0, 0, 1]));
    out.push(new Uint8Array([initial, 0x3e, 0, 0, 0, 0, 0, 0, 0]));
  }
  return out;
}

/**
 * Whether `value` holds something cborg handles differently on purpose (see
 * cbor_differential_test.ts): a nonzero binary16 subnormal with more than
 * one bit set, or a text string (or key) starting with U+FEFF.
 */
export function differsOnPurpose(value: unknown): boolean {
  if (typeof value === "number") {
    const units = Math.abs(value) * 2 ** 24; // a binary16 subnormal is k × 2^-24, k < 1024
    return Number.isInteger(units) && units > 0 && units < 1024 && (units & (units - 1)) !== 0;
  }
  if (typeof value === "string") return value.startsWith("\uFEFF");
  if (Array.isArray(value)) return value.some(differsOnPurpose);
  if (value instanceof Map) {
    return [...value].some(([k, v]) => differsOnPurpose(k) || differsOnPurpose(v));
  }
  if (value !== null && typeof value === "object" && !(value instanceof Uint8Array)) {
    return Object.entries(value).some(([k, v]) => differsOnPurpose(k) || differsOnPurpose(v));
  }
  return false;
}
