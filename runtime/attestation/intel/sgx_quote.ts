/**
 * Verifies Intel SGX DCAP ECDSA quotes (version 3, and version 4 with an SGX
 * body): the quote signature, the attestation-key binding, the QE report and
 * its PCK signature, the PCK chain to Intel's SGX Root CA, and the enclave's
 * debug attribute. Claims give MRENCLAVE, MRSIGNER, ISV product id and SVN,
 * attributes, report data, and the FMSPC and TCB of the PCK certificate.
 *
 * @module
 */
import { MalformedEvidenceError, resultFromChecks, type VerificationResult } from "../result.ts";
import {
  debugCheck,
  parseIntelQuote,
  type QuoteVerifyOptions,
  sgxBodyClaims,
  TEE_TYPE_SGX,
  verifyQuoteSignatures,
} from "./intel_quote.ts";

/** Options of {@link verifySgxQuote}. */
export type SgxVerifyOptions = QuoteVerifyOptions;

/**
 * Verifies an SGX quote as of `options.at`. Resolves to a result listing the
 * checks `header`, `quote-signature`, `attestation-key-binding`,
 * `qe-report-signature`, `pck-chain`, `root`, `validity`, `pck-extension`,
 * `qe-identity`, with CRLs `revocation`, with TCB Info collateral `tcb-info`
 * and `tcb-status` (see intel_collateral.ts), and `debug`; rejects with a
 * MalformedEvidenceError (exit status `dataError`) when the evidence is not a well-formed SGX quote.
 */
export async function verifySgxQuote(
  evidence: Uint8Array,
  options: SgxVerifyOptions,
): Promise<VerificationResult> {
  const quote = parseIntelQuote(evidence);
  if (quote.teeType !== TEE_TYPE_SGX) {
    throw new MalformedEvidenceError(
      `The evidence is a TDX quote (version ${quote.version}), not an SGX quote; use --format tdx`,
    );
  }
  const { checks, claims } = await verifyQuoteSignatures(quote, options);
  const body = sgxBodyClaims(quote.body);
  checks.push(debugCheck(body.debug as boolean, { policy: options.policy, what: "enclave" }));
  return resultFromChecks("sgx", {
    checks,
    claims: {
      ...claims,
      ...body,
      measurement: body.mrEnclave,
    },
  });
}
