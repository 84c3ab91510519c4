/**
 * Errors that enarx reports to a person or a script. Every error has a stable
 * `code`; the CLI maps the code to an exit status (see {@link exitStatusFor})
 * and prints the message as one line. Messages start with a capital, have no
 * trailing period, quote the offending value, and say what to do.
 *
 * @module
 */

/** Exit statuses of the `enarx` command, documented in README.md. */
export const ExitStatus = {
  /** Success, or the workload's own status passed through. */
  ok: 0,
  /** An attestation check failed (`attest verify`, `deploy`). */
  verificationFailed: 1,
  /** Bad command-line usage (sysexits EX_USAGE). */
  usage: 64,
  /** Malformed input: module, configuration, evidence, CBOR (EX_DATAERR). */
  dataError: 65,
  /** A named input file does not exist or cannot be read (EX_NOINPUT). */
  noInput: 66,
  /** A backend, device or peer is not available here (EX_UNAVAILABLE). */
  unavailable: 69,
  /** A bug in enarx (EX_SOFTWARE). */
  internal: 70,
  /** An operating-system or I/O error (EX_IOERR). */
  io: 74,
  /** A protocol error with a peer (EX_PROTOCOL). */
  protocol: 76,
  /** Permission denied (EX_NOPERM). */
  permission: 77,
  /** Configuration error (EX_CONFIG). */
  config: 78,
  /** The workload ran past `--timeout` (as coreutils `timeout`). */
  timeout: 124,
  /** The workload used up its `--fuel`. */
  fuelExhausted: 125,
  /** The workload hit `--max-memory`. */
  memoryExhausted: 126,
  /** The workload trapped (128 + SIGABRT, as the wasmtime CLI). */
  trap: 134,
} as const;

/** Names of the exit statuses above. */
export type ExitStatusName = keyof typeof ExitStatus;

/** The base class of every error enarx raises on purpose. */
export class EnarxError extends Error {
  /** A stable, machine-readable code such as `module-invalid`. */
  readonly code: string;
  /** The process exit status the CLI uses for this error. */
  readonly exitStatus: number;

  /** Makes an error with a stable code and an exit status (default: internal). */
  constructor(
    code: string,
    message: string,
    options: { exit?: ExitStatusName; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "EnarxError";
    this.code = code;
    this.exitStatus = ExitStatus[options.exit ?? "internal"];
  }
}

/** Bad command-line usage; the CLI also points at `--help`. */
export class UsageError extends EnarxError {
  /** Makes a usage error with code `usage`. */
  constructor(message: string) {
    super("usage", message, { exit: "usage" });
    this.name = "UsageError";
  }
}

/** Returns the exit status for any thrown value. */
export function exitStatusFor(error: unknown): number {
  if (error instanceof EnarxError) return error.exitStatus;
  if (error instanceof Deno.errors.NotFound) return ExitStatus.noInput;
  if (error instanceof Deno.errors.PermissionDenied) return ExitStatus.permission;
  if (isIoError(error)) return ExitStatus.io;
  return ExitStatus.internal;
}

/** Errno codes of a full, read-only or failing file system: an I/O error, not a bug. */
const IO_ERROR_CODES = ["ENOSPC", "EDQUOT", "EROFS", "EIO"];

/** Whether `error` is the operating system's report of a full, read-only or failing disk. */
export function isIoError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return error instanceof Error && typeof code === "string" && IO_ERROR_CODES.includes(code);
}

/** Returns the stable code for any thrown value. */
export function errorCode(error: unknown): string {
  if (error instanceof EnarxError) return error.code;
  if (error instanceof Deno.errors.NotFound) return "not-found";
  if (error instanceof Deno.errors.PermissionDenied) return "permission-denied";
  if (isIoError(error)) return "io-error";
  return "internal";
}
