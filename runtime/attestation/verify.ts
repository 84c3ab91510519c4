/**
 * One entry point for every evidence format: detects the format (or takes
 * the caller's), unwraps an evidence bundle, dispatches to the SEV-SNP,
 * TDX, SGX or Nitro verifier, and evaluates the policy (policy_checks.ts)
 * over the claims of the formats whose verifiers do not (SNP's does, with
 * its own fields). A TDX or SGX quote verified without Intel's TCB Info gets
 * a `collateral` check saying "TCB not evaluated (no collateral)", which
 * fails when the policy requires collateral.
 *
 * @module
 */
import { detectEvidence } from "./evidence_format.ts";
import type { IntelCollateral } from "./intel/intel_collateral.ts";
import { DEFAULT_POLICY } from "./policy.ts";
import { evaluatePolicy, genericPolicyProfile, type PolicySubject } from "./policy_checks.ts";
import {
  type Check,
  type EvidenceFormat,
  MalformedEvidenceError,
  resultFromChecks,
  type VerificationResult,
} from "./result.ts";
import { type SnpVerifyOptions, verifySnpReport } from "./amd/snp_verify.ts";

/** Options of {@link verifyEvidence}: those of the SNP verifier plus the format. */
export interface VerifyEvidenceOptions extends SnpVerifyOptions {
  /** The format; "auto" (the default) detects it. */
  format?: EvidenceFormat | "auto";
  /**
   * Intel collateral for TDX and SGX quotes: TCB Info and QE Identity JSON as
   * Intel's PCS serves them (see intel_collateral.ts). `crls` apply to the
   * PCK chain of a quote as they do to an SNP chain.
   */
  collateral?: readonly (Uint8Array | IntelCollateral)[];
  /**
   * Whether a TDX or SGX quote without TCB Info collateral fails, when the
   * policy has no `require_collateral` (default false; deploy passes true).
   */
  requireCollateral?: boolean;
}

/** What the `collateral` check says when no collateral evaluated the TCB. */
export const TCB_NOT_EVALUATED = "TCB not evaluated (no collateral)";

/**
 * The `collateral` check of an Intel quote whose TCB no collateral
 * evaluated (no `tcb-status` check); none when one did.
 */
export function collateralCheck(checks: readonly Check[], required: boolean): Check[] {
  if (checks.some((c) => c.id === "tcb-status")) return [];
  return [{
    id: "collateral",
    description: "Intel collateral evaluated the platform's TCB, or the policy does not require it",
    ok: !required,
    detail: required
      ? `${TCB_NOT_EVALUATED}; pass Intel's TCB Info and QE Identity (--collateral-dir), ` +
        "or set require_collateral = false in the policy"
      : `${TCB_NOT_EVALUATED}; accepted because require_collateral is false`,
  }];
}

function bytesClaim(value: unknown): Uint8Array | null {
  return value instanceof Uint8Array ? value : null;
}

/** What the policy is evaluated against for the formats other than SNP. */
function policySubject(result: VerificationResult): PolicySubject {
  const claims = result.claims;
  return {
    format: result.format,
    profile: genericPolicyProfile(result.format),
    measurement: bytesClaim(claims.measurement),
    reportData: bytesClaim(claims.reportData ?? claims.userData),
    ...(typeof claims.time === "string" ? { time: claims.time } : {}),
  };
}

/** A legacy SEV chain given as blobs (the first the platform's), verified (sev_chain.ts). */
async function verifySevBlobs(
  blobs: Uint8Array[],
  options: { at?: Date; trustedRoots?: VerifyEvidenceOptions["trustedRoots"] },
): Promise<VerificationResult> {
  const { sevChainFromBlobs, verifySevChain } = await import("./amd/sev_chain.ts");
  return await verifySevChain(sevChainFromBlobs(blobs), options);
}

/**
 * Verifies evidence of any supported format with `options` (certificates,
 * policy, verification time). Throws MalformedEvidenceError (exit status 65)
 * when the evidence cannot be parsed; resolves to a result whose `ok` is
 * false when any check fails.
 */
export async function verifyEvidence(
  evidence: Uint8Array,
  options: VerifyEvidenceOptions,
): Promise<VerificationResult> {
  const detected = detectEvidence(evidence);
  const wanted = options.format ?? "auto";
  if (wanted !== "auto" && wanted !== detected.format) {
    throw new MalformedEvidenceError(
      `The evidence looks like ${detected.format}${
        detected.container === "bundle" ? " (an evidence bundle says so)" : ""
      }, not ${wanted}; check --format`,
    );
  }
  const policy = options.policy ?? DEFAULT_POLICY;
  const certs = [...detected.certs, ...(options.certs ?? [])];
  const common = { at: options.at, policy, trustedRoots: options.trustedRoots, certs };
  const intel = { ...common, crls: options.crls, collateral: options.collateral };
  switch (detected.format) {
    case "snp":
      return await verifySnpReport(detected.evidence, { ...options, policy, certs });
    case "sev":
    case "tdx":
    case "sgx":
    case "nitro": {
      // The other formats' verifiers are loaded only for their evidence: a
      // deploy to an SNP keep (most of them) need not load four more.
      const result = detected.format === "sev"
        ? await verifySevBlobs([detected.evidence, ...certs], {
          at: options.at,
          trustedRoots: options.trustedRoots,
        })
        : detected.format === "tdx"
        ? await (await import("./intel/tdx_quote.ts")).verifyTdxQuote(detected.evidence, intel)
        : detected.format === "sgx"
        ? await (await import("./intel/sgx_quote.ts")).verifySgxQuote(detected.evidence, intel)
        : await (await import("./aws/nitro.ts")).verifyNitroDocument(detected.evidence, common);
      const intelQuote = detected.format === "tdx" || detected.format === "sgx";
      const required = policy.requireCollateral ?? options.requireCollateral ?? false;
      const checks = [
        ...result.checks,
        ...(intelQuote ? collateralCheck(result.checks, required) : []),
        ...evaluatePolicy(policySubject(result), { ...options, policy }),
      ];
      return resultFromChecks(result.format, {
        checks,
        claims: result.claims,
        simulated: result.simulated,
      });
    }
  }
}
