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

/**
 * One claim's value. Binary fields (measurements, report data, ids, keys)
 * are kept as bytes; hex appears only when claims are rendered for a person
 * or as JSON ({@link claimsToJson} in claims_json.ts). An undefined value is
 * left out of the JSON.
 */
export type ClaimValue =
  | undefined
  | Uint8Array
  | string
  | number
  | boolean
  | null
  | readonly ClaimValue[]
  | ClaimMap;

/** Claims by name, in the order the verifier made them (the JSON keeps that order). */
export interface ClaimMap {
  /** A claim's value, by the claim's name. */
  [name: string]: ClaimValue;
}

/** SEV-SNP claims: every report field (see spec/attestation-json.md), binary ones as bytes. */
export interface SnpClaims extends ClaimMap {
  /** MEASUREMENT, 48 bytes. */
  measurement: Uint8Array;
  /** REPORT_DATA, 64 bytes. */
  reportData: Uint8Array;
  /** HOST_DATA, 32 bytes. */
  hostData: Uint8Array;
  /** CHIP_ID, 64 bytes. */
  chipId: Uint8Array;
  /** FAMILY_ID and IMAGE_ID, 16 bytes each. */
  familyId: Uint8Array;
  /** IMAGE_ID. */
  imageId: Uint8Array;
  /** POLICY.DEBUG. */
  debug: boolean;
}

/** Legacy SEV claims: the chain's certificates, the PDH key and AMD's key ids as bytes. */
export interface SevClaims extends ClaimMap {
  /** The PDH public key (uncompressed EC point, or RSA modulus). */
  pdhPublicKey: Uint8Array;
  /** The ASK's KEY_ID. */
  askKeyId: Uint8Array;
  /** The ARK's KEY_ID. */
  arkKeyId: Uint8Array;
}

/** TDX claims: MRTD (also `measurement`), RTMR0–3, MRSEAM and the TD's other fields as bytes. */
export interface TdxClaims extends ClaimMap {
  /** MRTD, 48 bytes. */
  mrTd: Uint8Array;
  /** The measurement the policy matches: MRTD. */
  measurement: Uint8Array;
  /** RTMR0. */
  rtmr0: Uint8Array;
  /** RTMR1. */
  rtmr1: Uint8Array;
  /** RTMR2. */
  rtmr2: Uint8Array;
  /** RTMR3. */
  rtmr3: Uint8Array;
  /** REPORTDATA, 64 bytes. */
  reportData: Uint8Array;
  /** TD_ATTRIBUTES.DEBUG. */
  debug: boolean;
}

/** SGX claims: MRENCLAVE (also `measurement`), MRSIGNER and the enclave's other fields as bytes. */
export interface SgxClaims extends ClaimMap {
  /** MRENCLAVE, 32 bytes. */
  mrEnclave: Uint8Array;
  /** The measurement the policy matches: MRENCLAVE (set by verifySgxQuote). */
  measurement?: Uint8Array;
  /** MRSIGNER, 32 bytes. */
  mrSigner: Uint8Array;
  /** REPORTDATA, 64 bytes. */
  reportData: Uint8Array;
  /** ATTRIBUTES.DEBUG. */
  debug: boolean;
}

/** Nitro claims: PCRs by index, PCR0 as `measurement`, user data, nonce and public key as bytes. */
export interface NitroClaims extends ClaimMap {
  /** PCR0, or null when the document has none. */
  measurement: Uint8Array | null;
  /** `user_data`, or null. */
  userData: Uint8Array | null;
}

/** Claims parsed from the evidence, typed per format; binary fields are bytes. */
export type Claims = SnpClaims | SevClaims | TdxClaims | SgxClaims | NitroClaims | ClaimMap;

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
