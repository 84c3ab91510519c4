/**
 * Shared pieces of the robustness tests (tests/robustness_*_test.ts): a
 * seeded PRNG, so that every failure reproduces from the seed printed in its
 * message, and checks that bad input ends as an EnarxError with a one-line
 * message.
 *
 * @module
 */
import assert from "node:assert/strict";
import { EnarxError } from "../../runtime/errors.ts";

/** A small deterministic PRNG (mulberry32): same seed, same sequence. */
export class Prng {
  #state: number;
  /** The seed it started from, for assertion messages. */
  readonly seed: number;

  /** Starts the sequence at `seed`. */
  constructor(seed: number) {
    this.seed = seed;
    this.#state = seed | 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) | 0;
    let t = Math.imul(this.#state ^ (this.#state >>> 15), 1 | this.#state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** One element of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }

  /** `n` random bytes. */
  bytes(n: number): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }

  /** A copy of `input` with 1 to `max` bytes set to random values; `where` lists them. */
  flip(input: Uint8Array, max = 4): { bytes: Uint8Array<ArrayBuffer>; where: number[] } {
    const out = new Uint8Array(input);
    const where: number[] = [];
    for (let i = 1 + this.int(max); i > 0 && out.length > 0; i--) {
      const at = this.int(out.length);
      out[at] = this.int(256);
      where.push(at);
    }
    return { bytes: out, where };
  }
}

/** Shortens bytes for an assertion message: hex, at most `max` bytes. */
export function show(bytes: Uint8Array, max = 48): string {
  const hex = Array.from(bytes.subarray(0, max), (b) => b.toString(16).padStart(2, "0")).join("");
  return bytes.length > max ? `${hex}… (${bytes.length} bytes)` : hex;
}

/** What the error of a refused input must also have. */
export interface CleanErrorOptions {
  /** The exit status the error must carry; any when left out. */
  exit?: number;
}

/**
 * Asserts that `error` is an EnarxError with a message (and,
 * when given, whose exit status is `exit`). `label` says which input made it.
 */
export function assertCleanError(
  error: unknown,
  label: string,
  { exit }: CleanErrorOptions = {},
): EnarxError {
  if (!(error instanceof EnarxError)) {
    const stack = error instanceof Error ? error.stack : String(error);
    assert.fail(`${label}: escaped as ${stack}`);
  }
  assert.ok(error.message.trim().length > 0, `${label}: empty message`);
  if (exit !== undefined) {
    assert.equal(error.exitStatus, exit, `${label}: exit ${error.exitStatus}: ${error.message}`);
  }
  return error;
}

/** Runs `fn`; returns its value, or checks what it threw with {@link assertCleanError}. */
export async function cleanly<T>(
  label: string,
  fn: () => T | Promise<T>,
  options: CleanErrorOptions = {},
): Promise<T | EnarxError> {
  try {
    return await fn();
  } catch (error) {
    return assertCleanError(error, label, options);
  }
}

/** The synchronous form of {@link cleanly}. */
export function cleanlySync<T>(
  label: string,
  fn: () => T,
  options: CleanErrorOptions = {},
): T | EnarxError {
  try {
    return fn();
  } catch (error) {
    return assertCleanError(error, label, options);
  }
}
