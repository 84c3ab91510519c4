/**
 * The report-data binding of deploy step 4: the 64 bytes that wasmldr asks
 * the TEE to put in its evidence, and that the client recomputes in step 5.
 *
 * report_data = SHA-512("enarx/v1 report-data\0" || nonce (32) || sealing key (65))
 *
 * The label separates this use of the hash from any other; the nonce makes
 * the evidence fresh for this deploy; the sealing key ties the evidence to
 * the one key the client will seal its TLS key to, so a host that swaps the
 * key must also forge evidence (spec/protocol.md, "Report data").
 *
 * @module
 */
import { bytesEqualConstantTime, concatBytes } from "../bytes.ts";
import { EnarxError } from "../errors.ts";

/** The domain-separation label, NUL-terminated. */
export const REPORT_DATA_LABEL = "enarx/v1 report-data\0";

/** Length of the client's nonce in bytes. */
export const NONCE_LENGTH = 32;

/** Computes the 64-byte report data binding `nonce` and `sealingKey`. */
export async function computeReportData(
  nonce: Uint8Array,
  sealingKey: Uint8Array,
): Promise<Uint8Array> {
  if (nonce.length !== NONCE_LENGTH) {
    throw new EnarxError(
      "nonce-invalid",
      `The nonce is ${nonce.length} bytes, not ${NONCE_LENGTH}; send a fresh 32-byte nonce`,
      { exit: "protocol" },
    );
  }
  const label = new TextEncoder().encode(REPORT_DATA_LABEL);
  const input = concatBytes(label, nonce, sealingKey);
  return new Uint8Array(await crypto.subtle.digest("SHA-512", input));
}

/** Returns a fresh random 32-byte nonce. */
export function freshNonce(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(NONCE_LENGTH));
}

/**
 * Compares two byte strings in time that depends only on their lengths.
 * The same function as runtime/bytes.ts's {@link bytesEqualConstantTime}, kept
 * under this name for its importers.
 */
export const bytesEqual: (a: Uint8Array, b: Uint8Array) => boolean = bytesEqualConstantTime;
