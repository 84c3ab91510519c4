/**
 * Verifies Intel TDX quotes (version 4 with the TD 1.0 body, version 5 with
 * the TD 1.0 or 1.5 body): the quote signature, the attestation-key binding,
 * the QE report and its PCK signature, the PCK chain to Intel's SGX Root CA,
 * and the TD's debug attribute. Claims give MRTD, RTMR0–3, MRSEAM, TD
 * attributes, report data, TEE TCB SVN, and the FMSPC and TCB of the PCK.
 *
 * @module
 */
import {
  type ClaimMap,
  MalformedEvidenceError,
  resultFromChecks,
  type TdxClaims,
  type VerificationResult,
} from "../result.ts";
import {
  debugCheck,
  fieldBytes,
  fieldUint,
  parseIntelQuote,
  type QuoteVerifyOptions,
  TD_REPORT_BODY,
  TEE_TYPE_TDX,
  verifyQuoteSignatures,
} from "./intel_quote.ts";

/** Options of {@link verifyTdxQuote}. */
export type TdxVerifyOptions = QuoteVerifyOptions;

/** TDATTRIBUTES bits (TDX module ABI, TDINFO_STRUCT.ATTRIBUTES). */
export const TD_ATTRIBUTES = {
  /** Bit 0: the TD runs in debug mode; the host can read and change its state. */
  debug: 1n << 0n,
  /** Bit 28: EPT violations are not turned into #VE. */
  septVeDisable: 1n << 28n,
  /** Bit 30: protection keys supervisor. */
  pks: 1n << 30n,
  /** Bit 31: key locker. */
  kl: 1n << 31n,
  /** Bit 63: performance monitoring. */
  perfmon: 1n << 63n,
} as const;

/** Claims of a TD quote body (584 or 648 bytes). */
export function tdBodyClaims(body: Uint8Array): TdxClaims {
  const bytes = (f: { offset: number; size: number }) => fieldBytes(body, f).slice();
  const u64 = (f: { offset: number; size: number }) =>
    `0x${(fieldUint(body, f) as bigint).toString(16)}`;
  const attributes = fieldUint(body, TD_REPORT_BODY.tdAttributes) as bigint;
  const claims: ClaimMap = {
    teeTcbSvn: bytes(TD_REPORT_BODY.teeTcbSvn),
    mrSeam: bytes(TD_REPORT_BODY.mrSeam),
    mrSignerSeam: bytes(TD_REPORT_BODY.mrSignerSeam),
    seamAttributes: u64(TD_REPORT_BODY.seamAttributes),
    tdAttributes: u64(TD_REPORT_BODY.tdAttributes),
    debug: (attributes & TD_ATTRIBUTES.debug) !== 0n,
    septVeDisable: (attributes & TD_ATTRIBUTES.septVeDisable) !== 0n,
    xfam: u64(TD_REPORT_BODY.xfam),
    mrTd: bytes(TD_REPORT_BODY.mrTd),
    mrConfigId: bytes(TD_REPORT_BODY.mrConfigId),
    mrOwner: bytes(TD_REPORT_BODY.mrOwner),
    mrOwnerConfig: bytes(TD_REPORT_BODY.mrOwnerConfig),
    rtmr0: bytes(TD_REPORT_BODY.rtmr0),
    rtmr1: bytes(TD_REPORT_BODY.rtmr1),
    rtmr2: bytes(TD_REPORT_BODY.rtmr2),
    rtmr3: bytes(TD_REPORT_BODY.rtmr3),
    reportData: bytes(TD_REPORT_BODY.reportData),
  };
  if (body.length >= TD_REPORT_BODY.mrServiceTd.offset + TD_REPORT_BODY.mrServiceTd.size) {
    claims.teeTcbSvn2 = bytes(TD_REPORT_BODY.teeTcbSvn2);
    claims.mrServiceTd = bytes(TD_REPORT_BODY.mrServiceTd);
  }
  claims.measurement = claims.mrTd;
  return claims as TdxClaims;
}

/**
 * Verifies a TDX quote as of `options.at`. Resolves to a result listing the
 * checks `header`, `quote-signature`, `attestation-key-binding`,
 * `qe-report-signature`, `pck-chain`, `root`, `validity`, `pck-extension`,
 * `qe-identity`, with CRLs `revocation`, with TCB Info collateral `tcb-info`
 * and `tcb-status` (see intel_collateral.ts), and `debug`; rejects with a
 * MalformedEvidenceError (exit status `dataError`) when the evidence is not a well-formed TDX quote.
 */
export async function verifyTdxQuote(
  evidence: Uint8Array,
  options: TdxVerifyOptions,
): Promise<VerificationResult> {
  const quote = parseIntelQuote(evidence);
  if (quote.teeType !== TEE_TYPE_TDX) {
    throw new MalformedEvidenceError(
      `The evidence is an SGX quote (version ${quote.version}), not a TDX quote; use --format sgx`,
    );
  }
  const { checks, claims } = await verifyQuoteSignatures(quote, options);
  const body = tdBodyClaims(quote.body);
  checks.push(debugCheck(body.debug as boolean, { policy: options.policy, what: "trust domain" }));
  return resultFromChecks("tdx", { checks, claims: { ...claims, ...body } });
}
