/**
 * One entry point for every evidence format: detects the format (or takes
 * the caller's), unwraps an evidence bundle, dispatches to the SEV-SNP,
 * TDX, SGX or Nitro verifier, and applies the parts of the policy that are
 * common to all formats (accepted platforms, measurements, report data,
 * maximum age) to the formats whose verifiers do not.
 *
 * @module
 */
import { bytesEqual } from "../bytes.ts";
import { detectEvidence } from "./evidence_format.ts";
import type { IntelCollateral } from "./intel/intel_collateral.ts";
import { verifyNitroDocument } from "./aws/nitro.ts";
import { DEFAULT_POLICY, type Policy } from "./policy.ts";
import {
  type Check,
  type EvidenceFormat,
  MalformedEvidenceError,
  resultFromChecks,
  type VerificationResult,
} from "./result.ts";
import { verifySgxQuote } from "./intel/sgx_quote.ts";
import { sevChainFromBlobs, verifySevChain } from "./amd/sev_chain.ts";
import { type SnpVerifyOptions, verifySnpReport } from "./amd/snp_verify.ts";
import { verifyTdxQuote } from "./intel/tdx_quote.ts";

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
}

function hexClaim(value: unknown): Uint8Array | null {
  if (typeof value !== "string") return null;
  try {
    return Uint8Array.fromHex(value);
  } catch {
    return null;
  }
}

function padTo(bytes: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(Math.max(size, bytes.length));
  out.set(bytes);
  return out;
}

/** Policy checks for the formats whose verifiers take no policy beyond debug. */
function commonPolicyChecks(
  result: VerificationResult,
  policy: Policy,
  options: VerifyEvidenceOptions,
): Check[] {
  const checks: Check[] = [];
  const claims = result.claims;
  if (policy.platforms) {
    checks.push({
      id: "platform",
      description: `The policy accepts ${result.format} evidence`,
      ok: policy.platforms.includes(result.format),
      detail: `allowed: ${policy.platforms.join(", ")}`,
    });
  }
  const measurements = [
    ...(policy.measurements ?? []),
    ...(options.measurement ? [options.measurement] : []),
  ];
  if (measurements.length > 0) {
    const m = hexClaim(claims.measurement);
    const ok = m !== null && measurements.some((x) => bytesEqual(padTo(x, m.length), m));
    checks.push({
      id: "measurement",
      description: "The measurement is one the policy expects",
      ok,
      detail: m === null ? "the evidence has no measurement" : String(claims.measurement),
    });
  }
  const expected = options.reportData ?? policy.reportData;
  if (expected) {
    const got = hexClaim(claims.reportData ?? claims.userData);
    const ok = got !== null && bytesEqual(padTo(expected, got.length), got);
    checks.push({
      id: "report-data",
      description: "The report data is what the verifier expects",
      ok,
      detail: got === null
        ? "the evidence carries no report data"
        : String(claims.reportData ?? claims.userData),
    });
  }
  if (policy.maxAgeSeconds !== undefined && typeof claims.time === "string") {
    const age = (options.at.getTime() - new Date(claims.time).getTime()) / 1000;
    checks.push({
      id: "max-age",
      description: `The evidence is at most ${policy.maxAgeSeconds} s old`,
      ok: age <= policy.maxAgeSeconds,
      detail: `made ${claims.time}, ${Math.round(age)} s before ${options.at.toISOString()}`,
    });
  }
  return checks;
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
      const result = detected.format === "sev"
        ? await verifySevChain(sevChainFromBlobs([detected.evidence, ...certs]), {
          at: options.at,
          trustedRoots: options.trustedRoots,
        })
        : detected.format === "tdx"
        ? await verifyTdxQuote(detected.evidence, intel)
        : detected.format === "sgx"
        ? await verifySgxQuote(detected.evidence, intel)
        : await verifyNitroDocument(detected.evidence, common);
      const checks = [...result.checks, ...commonPolicyChecks(result, policy, options)];
      return resultFromChecks(result.format, {
        checks,
        claims: result.claims,
        simulated: result.simulated,
      });
    }
  }
}
