/**
 * Tells the format of evidence from its declared layouts: an evidence
 * bundle, an SEV-SNP ATTESTATION_REPORT (its size and VERSION field), an
 * Azure HCL report wrapping one, an Intel DCAP quote (the header's version,
 * attestation key type and TEE type), a Nitro COSE_Sign1 document, or a
 * legacy SEV certificate chain.
 *
 * @module
 */
import { FieldReader } from "./_bytes.ts";
import { decodeEvidenceBundle, looksLikeEvidenceBundle } from "./bundle.ts";
import { type EvidenceFormat, MalformedEvidenceError } from "./result.ts";
import { looksLikeSevCerts } from "./amd/sev_cert.ts";
import { SNP_REPORT_LAYOUT, SNP_REPORT_SIZE, SNP_REPORT_VERSIONS } from "./amd/snp_report.ts";
import {
  ATTESTATION_KEY_ECDSA_P256,
  fieldNumber,
  QUOTE_HEADER,
  QUOTE_HEADER_SIZE,
  TEE_TYPE_TDX,
} from "./intel/quote_header.ts";

/** The largest evidence accepted: 1 MiB. Real evidence is a few KiB. */
export const MAX_EVIDENCE_SIZE = 1024 * 1024;

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

/** Azure's HCL report: "HCLA", then a 0x20-byte header before the SNP report. */
const HCL_MAGIC = [0x48, 0x43, 0x4c, 0x41];
const HCL_REPORT_OFFSET = 0x20;

/** Intel quote versions: 3 (SGX), 4 (SGX or TDX by TEE type), 5 (TDX). */
const QUOTE_VERSIONS = [3, 4, 5];

function isSnpReport(bytes: Uint8Array): boolean {
  if (bytes.length !== SNP_REPORT_SIZE) return false;
  const version = new FieldReader(bytes, SNP_REPORT_LAYOUT).uint("version");
  return SNP_REPORT_VERSIONS.includes(version);
}

function isAzureHcl(bytes: Uint8Array): boolean {
  return bytes.length >= HCL_REPORT_OFFSET + SNP_REPORT_SIZE &&
    HCL_MAGIC.every((b, i) => bytes[i] === b);
}

function isCoseSign1(bytes: Uint8Array): boolean {
  // A CBOR array of four (0x84), optionally behind tag 18 (0xd2).
  return bytes[0] === 0x84 || (bytes[0] === 0xd2 && bytes[1] === 0x84);
}

/** "tdx" or "sgx" when the bytes start with an Intel quote header, else undefined. */
function intelQuoteFormat(bytes: Uint8Array): "tdx" | "sgx" | undefined {
  if (bytes.length < QUOTE_HEADER_SIZE) return undefined;
  const version = fieldNumber(bytes, QUOTE_HEADER.version);
  const keyType = fieldNumber(bytes, QUOTE_HEADER.attestationKeyType);
  if (keyType !== ATTESTATION_KEY_ECDSA_P256 || !QUOTE_VERSIONS.includes(version)) {
    return undefined;
  }
  const teeType = fieldNumber(bytes, QUOTE_HEADER.teeType);
  return version === 5 || (version === 4 && teeType === TEE_TYPE_TDX) ? "tdx" : "sgx";
}

function raw(format: EvidenceFormat, evidence: Uint8Array): DetectedEvidence {
  return { format, evidence, certs: [], container: "raw" };
}

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
  if (isSnpReport(bytes)) return raw("snp", bytes);
  if (isAzureHcl(bytes)) {
    const report = bytes.subarray(HCL_REPORT_OFFSET, HCL_REPORT_OFFSET + SNP_REPORT_SIZE);
    return { format: "snp", evidence: report, certs: [], container: "azure-hcl" };
  }
  if (isCoseSign1(bytes)) return raw("nitro", bytes);
  const quote = intelQuoteFormat(bytes);
  if (quote !== undefined) return raw(quote, bytes);
  if (looksLikeSevCerts(bytes)) return raw("sev", bytes);
  throw new MalformedEvidenceError(
    `Cannot tell the format of ${bytes.length} bytes of evidence; expected an SEV-SNP report ` +
      `(1184 bytes), a TDX or SGX quote, a Nitro document or an evidence bundle; ` +
      `or name it with --format`,
  );
}
