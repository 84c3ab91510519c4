/**
 * Revocation of an Intel PCK certificate chain by CRLs: the PCK CRL (issued
 * by the Intel SGX PCK Platform or Processor CA) and the root CRL (issued by
 * the Intel SGX Root CA, revoking intermediate CAs). Each CRL must be signed
 * by the chain certificate that issued it and be current at the verification
 * time (thisUpdate ≤ at ≤ nextUpdate); a certificate whose serial it lists
 * fails the `revocation` check. Intel SGX PCK Certificate and CRL Profile
 * Specification; RFC 5280 §5.
 *
 * @module
 */
import { pemBlocks } from "../../der_reader.ts";
import {
  type CertificateFields,
  checkSignedBy,
  type CrlFields,
  readCrl,
} from "../../x509_reader.ts";
import type { Check } from "../result.ts";
import { MalformedCollateralError } from "./intel_collateral.ts";

/** CRLs larger than this are refused (Intel's PCK CRLs are a few KiB). */
export const MAX_CRL_BYTES = 4 * 1024 * 1024;

/** Splits CRL inputs (DER, or PEM with `X509 CRL` or `CRL` blocks) into DER CRLs. */
export function crlDerList(inputs: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const [i, input] of inputs.entries()) {
    if (input.length > MAX_CRL_BYTES) {
      throw new MalformedCollateralError(
        `CRL ${i} is ${input.length} bytes, more than the ${MAX_CRL_BYTES} allowed; check the file`,
      );
    }
    const head = new TextDecoder().decode(input.subarray(0, 64)).trimStart();
    if (head.startsWith("-----BEGIN")) {
      let blocks: Uint8Array[];
      try {
        const text = new TextDecoder().decode(input);
        blocks = [...pemBlocks(text, "X509 CRL"), ...pemBlocks(text, "CRL")];
      } catch (error) {
        throw new MalformedCollateralError(`CRL ${i} has bad PEM base64; check the file`, {
          cause: error,
        });
      }
      if (blocks.length === 0) {
        throw new MalformedCollateralError(
          `CRL ${i} is PEM without an "X509 CRL" or "CRL" block; pass a DER or PEM CRL`,
        );
      }
      out.push(...blocks);
    } else out.push(input);
  }
  return out;
}

/** Parses a DER CRL; throws {@link MalformedCollateralError} (exit status 65). */
export function parseCrl(der: Uint8Array, what: string): CrlFields {
  try {
    return readCrl(der);
  } catch (error) {
    throw new MalformedCollateralError(
      `The ${what} (${der.length} bytes) is not a valid DER or PEM CRL; pass the CRL as Intel's ` +
        `PCS serves it`,
      { cause: error },
    );
  }
}

function serial(s: string): string {
  return s.replace(/^0+(?=.)/, "").toLowerCase();
}

/**
 * Makes the `revocation` check of a PCK chain (leaf first, root last) with
 * the given CRLs. A CRL from an issuer outside the chain is noted and
 * ignored; the check fails when no CRL applies, when an applicable CRL has a
 * bad signature or is not current at `at`, or when it lists a certificate
 * of the chain.
 */
export async function pckRevocationCheck(
  chain: readonly CertificateFields[],
  crls: readonly Uint8Array[],
  options: { at: Date },
): Promise<Check> {
  const at = options.at;
  const problems: string[] = [];
  const notes: string[] = [];
  let applied = 0;
  for (const [i, der] of crlDerList(crls).entries()) {
    const crl = parseCrl(der, `CRL ${i}`);
    const issuer = chain.find((c) => c.subject === crl.issuer);
    if (issuer === undefined) {
      notes.push(`a CRL from "${crl.issuer}" does not apply to this chain`);
      continue;
    }
    applied++;
    if (!await checkSignedBy(crl, issuer)) {
      problems.push(`the CRL from "${crl.issuer}" has a bad signature`);
      continue;
    }
    if (at < crl.thisUpdate) {
      problems.push(
        `the CRL from "${crl.issuer}" is issued ${crl.thisUpdate.toISOString()}, after ${at.toISOString()}`,
      );
    } else if (crl.nextUpdate !== null && at > crl.nextUpdate) {
      problems.push(
        `the CRL from "${crl.issuer}" was due for update ${crl.nextUpdate.toISOString()}; ` +
          `fetch a current one or verify with --at inside its window`,
      );
    }
    const revoked = new Map(crl.entries.map((e) => [serial(e.serialNumber), e.revocationDate]));
    for (const cert of chain) {
      if (cert.issuer !== crl.issuer || cert === issuer && cert.subject === cert.issuer) continue;
      const when = revoked.get(serial(cert.serialNumber));
      if (when !== undefined && when <= at) {
        problems.push(
          `"${cert.subject}" (serial ${
            serial(cert.serialNumber)
          }) is revoked since ${when.toISOString()}`,
        );
      }
    }
    notes.push(`CRL of "${crl.issuer}": ${crl.entries.length} revoked, none of this chain`);
  }
  if (applied === 0) {
    problems.push(
      `no CRL from an issuer of this chain (${
        chain.slice(1).map((c) => `"${c.subject}"`).join(", ")
      }) was given`,
    );
  }
  return {
    id: "revocation",
    description: "No certificate of the PCK chain is revoked by the supplied CRLs",
    ok: problems.length === 0,
    detail: problems.length === 0 ? notes.join("; ") : problems.join("; "),
  };
}
