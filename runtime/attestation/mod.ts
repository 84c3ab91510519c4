/**
 * Attestation: verify SEV-SNP, TDX, SGX and Nitro evidence against a policy,
 * and the simulated SNP platform (snp-sim) for machines without a TEE.
 *
 * ```ts
 * const result = await verifyEvidence(bytes, { at: new Date(), policy });
 * if (!result.ok) throw new Error(result.checks.filter((c) => !c.ok)[0].detail);
 * ```
 *
 * @module
 */
export {
  type Check,
  type ClaimMap,
  type Claims,
  type ClaimValue,
  type EvidenceFormat,
  MalformedEvidenceError,
  type NitroClaims,
  resultFromChecks,
  type SevClaims,
  type SgxClaims,
  type SnpClaims,
  type TdxClaims,
  type VerificationResult,
} from "./result.ts";
export {
  collateralCheck,
  TCB_NOT_EVALUATED,
  verifyEvidence,
  type VerifyEvidenceOptions,
} from "./verify.ts";
export { claimsToJson, type JsonClaim } from "./claims_json.ts";
export { type DetectedEvidence, detectEvidence, MAX_EVIDENCE_SIZE } from "./evidence_format.ts";
export {
  type EvidenceInputPaths,
  type EvidenceInputs,
  readCertificateFiles,
  readCollateralFiles,
  readCrlFiles,
  readEvidenceInputs,
  readInputFile,
  readSevCertificateFiles,
  readSevDirectory,
} from "./evidence_input.ts";
export {
  decodeEvidenceBundle,
  encodeEvidenceBundle,
  type EvidenceBundle,
  looksLikeEvidenceBundle,
} from "./bundle.ts";
export {
  DEFAULT_POLICY,
  type MinimumTcb,
  parsePolicy,
  type Policy,
  PolicyError,
  policyFromTable,
  readPolicyFile,
  type ServiceCaFiles,
} from "./policy.ts";
export {
  evaluatePolicy,
  genericPolicyProfile,
  type PolicyEvaluationOptions,
  type PolicyProfile,
  type PolicySubject,
  SNP_POLICY_PROFILE,
} from "./policy_checks.ts";
export {
  parseSnpReport,
  SNP_REPORT_SIZE,
  type SnpProduct,
  type SnpReport,
  type SnpTcb,
} from "./amd/snp_report.ts";
export {
  amdCertExtensions,
  clearSnpCertificateCache,
  type SnpVerifyOptions,
  splitCertificateInputs,
  verifySnpReport,
} from "./amd/snp_verify.ts";
export { parseSnpCertTable, SNP_CERT_GUIDS, type SnpCertTableEntry } from "./amd/snp_cert_table.ts";
export { verifyTdxQuote } from "./intel/tdx_quote.ts";
export { verifySgxQuote } from "./intel/sgx_quote.ts";
export { verifyNitroDocument } from "./aws/nitro.ts";
export {
  looksLikeSevCerts,
  type SevChainCerts,
  sevChainFromBlobs,
  type SevChainOptions,
  verifySevChain,
} from "./amd/sev_chain.ts";
export { type AmdCaCert, parseAmdCaCert, parseSevCert, type SevCert } from "./amd/sev_cert.ts";
export {
  SNP_SIM_STATE_FILE,
  type SnpSimReport,
  type SnpSimReportOptions,
  SnpSimulator,
} from "./amd/snp_sim.ts";
export {
  evaluateTcbLevel,
  type IntelCollateral,
  MalformedCollateralError,
  NO_MATCHING_LEVEL,
  parseIntelCollateral,
  TCB_STATUSES,
  type TcbStatus,
  verifyCollateralSignature,
} from "./intel/intel_collateral.ts";
