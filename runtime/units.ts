/**
 * The one reading of sizes and durations that every flag shares
 * (`run --max-memory`, `run --timeout`, `keepmgr --keep-memory`, keepmgr's
 * and deploy's timeouts).
 *
 * Sizes follow Enarx and systemd: a plain number is bytes; `K`, `M`, `G` and
 * `KiB`, `MiB`, `GiB` are powers of 1024; `KB`, `MB`, `GB` are powers of
 * 1000; `B` is bytes. Case does not matter. A decimal such as `1.5M` is
 * rounded down to a whole byte.
 *
 * Durations are `500ms`, `30s`, `2m`, `1h`; a plain number is seconds. A
 * decimal such as `1.5s` is rounded up to a whole millisecond.
 *
 * Both refuse an empty value, a negative one, zero (also after rounding), an
 * unknown suffix, and anything over `Number.MAX_SAFE_INTEGER`, with a
 * {@link UsageError} that quotes the value.
 *
 * @module
 */
import { UsageError } from "./errors.ts";

/** Bytes per size suffix, by lower-case suffix. */
const SIZE_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  b: 1,
  k: 1024,
  kib: 1024,
  kb: 1000,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  mb: 1000 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  gb: 1000 ** 3,
};

/** Milliseconds per duration suffix; no suffix is seconds. */
const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  "": 1000,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** A number (whole or decimal, no sign), optional blanks, then a suffix of letters. */
const QUANTITY = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/;

/** The lines that every `--help` with a size or duration flag shows. */
export const UNITS_HELP =
  `Sizes: a number of bytes, or with K, M, G (also KiB, MiB, GiB) for powers of
1024, or KB, MB, GB for powers of 1000; 1.5M is 1572864 bytes (rounded down).
Durations: 500ms, 30s, 2m, 1h; a plain number is seconds.`;

function where(flag: string | undefined): string {
  return flag === undefined ? "" : ` for ${flag}`;
}

/** Splits `text` into its number and unit factor, or throws `what` quoting `text`. */
function quantity(
  text: string,
  units: Readonly<Record<string, number>>,
  context: { what: string; flag?: string; hint: string },
): number {
  const match = QUANTITY.exec(text.trim());
  const unit = match ? units[match[2].toLowerCase()] : undefined;
  if (!match || unit === undefined) {
    throw new UsageError(
      `Invalid ${context.what} "${text}"${where(context.flag)}; ${context.hint}`,
    );
  }
  return Number(match[1]) * unit;
}

/** Checks that a parsed amount is a positive safe integer. */
function positiveSafe(
  value: number,
  text: string,
  context: { what: string; flag?: string; unit: string },
): number {
  const prefix = `Invalid ${context.what} "${text}"${where(context.flag)}`;
  if (!(value > 0)) throw new UsageError(`${prefix}; it must be more than zero`);
  if (!Number.isSafeInteger(value)) {
    throw new UsageError(
      `${prefix}; it must be at most ${Number.MAX_SAFE_INTEGER} ${context.unit}`,
    );
  }
  return value;
}

/**
 * Parses a size (`65536`, `64K`, `64MiB`, `1.5G`, `1MB`) into bytes. `flag`
 * names the option in the error (e.g. `--max-memory`).
 */
export function parseSize(text: string, flag?: string): number {
  const bytes = Math.floor(quantity(text, SIZE_UNITS, {
    what: "size",
    flag,
    hint: "use e.g. 65536, 64M, 64MiB or 1GB (K, M, G are powers of 1024; KB, MB, GB of 1000)",
  }));
  return positiveSafe(bytes, text, { what: "size", flag, unit: "bytes" });
}

/**
 * Parses a duration (`500ms`, `30s`, `2m`, `1h`, or plain seconds) into
 * milliseconds. `flag` names the option in the error (e.g. `--timeout`).
 */
export function parseDuration(text: string, flag?: string): number {
  const ms = Math.ceil(quantity(text, DURATION_UNITS, {
    what: "duration",
    flag,
    hint: "use e.g. 500ms, 30s, 2m or 1h (a plain number is seconds)",
  }));
  return positiveSafe(ms, text, { what: "duration", flag, unit: "ms" });
}
