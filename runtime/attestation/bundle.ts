/**
 * The evidence bundle: one CBOR map (deterministic encoding) that carries
 * evidence and the certificates needed to verify it, as the deploy flow
 * sends it from the keep to the client and as `enarx attest verify` reads it:
 *
 * ```cddl
 * evidence-bundle = {
 *   "format": "snp" / "tdx" / "sgx" / "nitro" / "sev",
 *   "report": bstr,          ; the raw evidence (SNP report, quote, document, SEV PDH)
 *   "certs": [* bstr],       ; DER certificates, e.g. VCEK, ASK, ARK
 * }
 * ```
 *
 * Specified in spec/attestation-json.md, section "Evidence bundle".
 *
 * @module
 */
import { decodeCbor, encodeCbor } from "../protocol/cbor.ts";
import { type EvidenceFormat, MalformedEvidenceError } from "./result.ts";

/** Evidence with its certificates. */
export interface EvidenceBundle {
  /** The evidence format. */
  format: EvidenceFormat;
  /** The raw evidence: an SNP report, a TDX/SGX quote, a Nitro document. */
  report: Uint8Array;
  /** DER certificates (for SNP: the VCEK or VLEK, optionally ASK and ARK). */
  certs: Uint8Array[];
}

/** The largest bundle accepted: 1 MiB (a report and a few certificates are a few KiB). */
export const MAX_BUNDLE_SIZE = 1024 * 1024;

const FORMATS: readonly EvidenceFormat[] = ["snp", "tdx", "sgx", "nitro", "sev"];

/** Encodes a bundle as deterministic CBOR. */
export function encodeEvidenceBundle(bundle: EvidenceBundle): Uint8Array {
  return encodeCbor({ format: bundle.format, report: bundle.report, certs: bundle.certs });
}

/**
 * Decodes a bundle. Throws MalformedEvidenceError when the bytes are not a
 * deterministic CBOR map with exactly the keys above and the right types.
 */
export function decodeEvidenceBundle(bytes: Uint8Array): EvidenceBundle {
  let value: unknown;
  try {
    value = decodeCbor(bytes, { maxSize: MAX_BUNDLE_SIZE, what: "evidence bundle" });
  } catch (error) {
    throw new MalformedEvidenceError(
      error instanceof Error ? error.message : "The evidence bundle is not valid CBOR",
      { cause: error },
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new MalformedEvidenceError("The evidence bundle is not a CBOR map");
  }
  const map = value as Record<string, unknown>;
  for (const key of Object.keys(map)) {
    if (!["format", "report", "certs"].includes(key)) {
      throw new MalformedEvidenceError(`The evidence bundle has an unknown key "${key}"`);
    }
  }
  const { format, report, certs } = map;
  if (typeof format !== "string" || !FORMATS.includes(format as EvidenceFormat)) {
    throw new MalformedEvidenceError(
      `The evidence bundle's format "${String(format)}" is not one of ${FORMATS.join(", ")}`,
    );
  }
  if (!(report instanceof Uint8Array) || report.length === 0) {
    throw new MalformedEvidenceError('The evidence bundle\'s "report" is not a byte string');
  }
  if (!Array.isArray(certs) || !certs.every((c) => c instanceof Uint8Array)) {
    throw new MalformedEvidenceError(
      'The evidence bundle\'s "certs" is not a list of byte strings',
    );
  }
  return { format: format as EvidenceFormat, report, certs: certs as Uint8Array[] };
}

/** True when the bytes look like a bundle (a CBOR map of 2 to 3 pairs starting with a text key). */
export function looksLikeEvidenceBundle(bytes: Uint8Array): boolean {
  return bytes.length > 8 && (bytes[0] === 0xa2 || bytes[0] === 0xa3) &&
    (bytes[1] & 0xe0) === 0x60;
}
