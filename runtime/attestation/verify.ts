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
import { decodeEvidenceBundle, looksLikeEvidenceBundle } from "./bundle.ts";
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
import { looksLikeSevCerts, sevChainFromBlobs, verifySevChain } from "./amd/sev_chain.ts";
import { SNP_REPORT_SIZE } from "./amd/snp_report.ts";
import { type SnpVerifyOptions, verifySnpReport } from "./amd/snp_verify.ts";
import { verifyTdxQuote } from "./intel/tdx_quote.ts";

/** The largest evidence accepted: 1 MiB. Real evidence is a few KiB. */
export const MAX_EVIDENCE_SIZE = 1024 * 1024;

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

/** What {@link detectEvidence} found: the format and the evidence proper. */
export interface DetectedEvidence {
  /** The format. */
  format: EvidenceFormat;
  /** The evidence, unwrapped from a bundle or an Azure HCL report. */
  evidence: Uint8Array;
  /** Certificates that came with it (from a bundle). */
  certs: Uint8Array[];
  /** How it was wrapped: "raw", "bundle" or "azure-hcl". */
  container: "raw" | "bundle" | "azure-hcl";
}

const HCL_MAGIC = [0x48, 0x43, 0x4c, 0x41]; // "HCLA"

/**
 * Detects the format of evidence: an evidence bundle, a raw SNP report (1184
 * bytes, version 2 to 5), an Azure HCL report wrapping one, an Intel quote
 * (version 3 to 5, ECDSA P-256 attestation key; TDX when tee_type is 0x81),
 * or a Nitro COSE_Sign1 document. Throws MalformedEvidenceError otherwise.
 */
export function detectEvidence(bytes: Uint8Array): DetectedEvidence {
  if (bytes.length === 0) throw new MalformedEvidenceError("The evidence is empty");
  if (bytes.length > MAX_EVIDENCE_SIZE) {
    throw new MalformedEvidenceError(
      `The evidence is ${bytes.length} bytes, over the limit of ${MAX_EVIDENCE_SIZE}; ` +
        `pass a report, a quote, a Nitro document or an evidence bundle`,
    );
  }
  if (looksLikeEvidenceBundle(bytes)) {
    const b = decodeEvidenceBundle(bytes);
    return { format: b.format, evidence: b.report, certs: b.certs, container: "bundle" };
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length === SNP_REPORT_SIZE) {
    const version = view.getUint32(0, true);
    if (version >= 2 && version <= 5) {
      return { format: "snp", evidence: bytes, certs: [], container: "raw" };
    }
  }
  if (bytes.length >= 0x20 + SNP_REPORT_SIZE && HCL_MAGIC.every((b, i) => bytes[i] === b)) {
    return {
      format: "snp",
      evidence: bytes.subarray(0x20, 0x20 + SNP_REPORT_SIZE),
      certs: [],
      container: "azure-hcl",
    };
  }
  if (bytes[0] === 0x84 || (bytes[0] === 0xd2 && bytes[1] === 0x84)) {
    return { format: "nitro", evidence: bytes, certs: [], container: "raw" };
  }
  if (bytes.length >= 48) {
    const version = view.getUint16(0, true);
    const keyType = view.getUint16(2, true);
    if (keyType === 2 && version >= 3 && version <= 5) {
      const teeType = view.getUint32(4, true);
      const format = version === 5 || (version === 4 && teeType === 0x81) ? "tdx" : "sgx";
      return { format, evidence: bytes, certs: [], container: "raw" };
    }
  }
  if (looksLikeSevCerts(bytes)) {
    return { format: "sev", evidence: bytes, certs: [], container: "raw" };
  }
  throw new MalformedEvidenceError(
    `Cannot tell the format of ${bytes.length} bytes of evidence; expected an SEV-SNP report ` +
      `(1184 bytes), a TDX or SGX quote, a Nitro document or an evidence bundle; ` +
      `or name it with --format`,
  );
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
