/**
 * The result of verifying attestation evidence, shared by every format
 * (SEV-SNP, TDX, SGX, Nitro, simulated SNP). A result lists every check that
 * was made, in order, with whether it passed; `ok` is true only when all did.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";

/** The evidence formats enarx understands. */
export type EvidenceFormat = "snp" | "tdx" | "sgx" | "nitro" | "sev";

/** One check made while verifying evidence. */
export interface Check {
  /** A stable identifier, e.g. `signature`, `chain`, `tcb`, `debug`, `report-data`. */
  id: string;
  /** What was checked, for a person. */
  description: string;
  /** Whether the check passed. */
  ok: boolean;
  /** Why it failed, or what it found; one line. */
  detail?: string;
}

/** Claims parsed from the evidence; values are strings, numbers, booleans or hex. */
export type Claims = Record<string, string | number | boolean | null | Record<string, unknown>>;

/** The outcome of verifying evidence. */
export interface VerificationResult {
  /** True only when every check passed. */
  ok: boolean;
  /** The evidence format. */
  format: EvidenceFormat;
  /** True when the evidence comes from the simulated SNP platform: it proves nothing about hardware. */
  simulated: boolean;
  /** Every check, in the order made. */
  checks: Check[];
  /** What the evidence says (measurement, TCB, report data, ...). */
  claims: Claims;
}

/** What {@link resultFromChecks} makes a result of. */
export interface ResultParts {
  /** Every check that was run, in order. */
  checks: Check[];
  /** What the evidence says about the workload and platform. */
  claims: Claims;
  /** Whether the evidence is simulated (default false). */
  simulated?: boolean;
}

/** Makes a result from checks: `ok` is true only when every check passed. */
export function resultFromChecks(
  format: EvidenceFormat,
  { checks, claims, simulated = false }: ResultParts,
): VerificationResult {
  return {
    ok: checks.length > 0 && checks.every((c) => c.ok),
    format,
    simulated,
    checks,
    claims,
  };
}

/**
 * Evidence that cannot be parsed: wrong size, unknown version, garbage, bad
 * DER or CBOR. The CLI exits with status 65 (dataError), unlike a failed
 * check (status 1).
 */
export class MalformedEvidenceError extends EnarxError {
  /** Makes an error with code `evidence-malformed`. */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("evidence-malformed", message, { exit: "dataError", cause: options.cause });
    this.name = "MalformedEvidenceError";
  }
}
