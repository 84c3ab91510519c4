/**
 * X.509 for enarx: @peculiar/x509 (which needs "reflect-metadata" loaded
 * first, so every module imports it through this one), for making
 * certificates and requests, and checking a signature between two of its
 * parsed certificates. The DER helpers (signed parts, ECDSA signature forms,
 * PEM, fingerprints) live in runtime/der_reader.ts and are re-exported here;
 * attestation verifiers read certificates with runtime/x509_reader.ts, which
 * does not load @peculiar/x509.
 *
 * @module
 */
import "reflect-metadata";
import type * as x509 from "@peculiar/x509";
import { bytesEqual } from "./bytes.ts";
import { ecdsaDerToRaw, signedParts } from "./der_reader.ts";

export * from "@peculiar/x509";
export {
  type DerElement,
  ecdsaDerToRaw,
  ecdsaRawToDer,
  pemBlocks,
  readDerElement,
  sha256Fingerprint,
  type SignedParts,
  signedParts,
} from "./der_reader.ts";

/** WebCrypto parameters to import a key and verify with it. */
export interface VerifyAlgorithm {
  /** For `importKey`. */
  importParams: RsaHashedImportParams | EcKeyImportParams;
  /** For `verify`. */
  verifyParams: RsaPssParams | EcdsaParams | AlgorithmIdentifier;
  /** Raw ECDSA signature size per component, or 0 for RSA. */
  ecComponentSize: number;
}

const CURVE_SIZES: Record<string, number> = { "P-256": 32, "P-384": 48, "P-521": 66 };

/**
 * The WebCrypto algorithm to check signatures made by `signer`'s key with the
 * signature algorithm `signed` names (RSA-PSS, RSASSA-PKCS1-v1_5 or ECDSA).
 * Throws RangeError for anything else.
 */
export function verifyAlgorithmFor(
  signer: x509.X509Certificate,
  signed: x509.X509Certificate | x509.X509Crl,
): VerifyAlgorithm {
  const alg = signed.signatureAlgorithm as Algorithm & {
    hash?: Algorithm;
    saltLength?: number;
  };
  const hash = alg.hash?.name;
  if (hash === undefined) throw new RangeError(`Unsupported signature algorithm "${alg.name}"`);
  if (alg.name === "RSA-PSS") {
    return {
      importParams: { name: "RSA-PSS", hash },
      verifyParams: { name: "RSA-PSS", saltLength: alg.saltLength ?? 20 },
      ecComponentSize: 0,
    };
  }
  if (alg.name === "RSASSA-PKCS1-v1_5") {
    return {
      importParams: { name: "RSASSA-PKCS1-v1_5", hash },
      verifyParams: { name: "RSASSA-PKCS1-v1_5" },
      ecComponentSize: 0,
    };
  }
  if (alg.name === "ECDSA") {
    const curve = (signer.publicKey.algorithm as EcKeyAlgorithm).namedCurve;
    const size = CURVE_SIZES[curve];
    if (size === undefined) throw new RangeError(`Unsupported curve "${curve}"`);
    return {
      importParams: { name: "ECDSA", namedCurve: curve },
      verifyParams: { name: "ECDSA", hash },
      ecComponentSize: size,
    };
  }
  throw new RangeError(`Unsupported signature algorithm "${alg.name}"`);
}

/**
 * Checks that `signed` (a certificate or CRL) carries a valid signature by
 * `signer`'s key, and that its outer signature algorithm is the signed one
 * (RFC 5280 §4.1.1.2). Returns false for a bad signature, a malformed one, or
 * an algorithm the key cannot make; it never throws for bad input.
 */
export async function verifySignedBy(
  signed: x509.X509Certificate | x509.X509Crl,
  signer: x509.X509Certificate,
): Promise<boolean> {
  try {
    const alg = verifyAlgorithmFor(signer, signed);
    const parts = signedParts(new Uint8Array(signed.rawData));
    if (!bytesEqual(parts.algorithm, parts.tbsAlgorithm)) return false;
    const key = await crypto.subtle.importKey(
      "spki",
      signer.publicKey.rawData,
      alg.importParams,
      false,
      ["verify"],
    );
    const signature = alg.ecComponentSize > 0
      ? ecdsaDerToRaw(parts.signature, alg.ecComponentSize)
      : parts.signature;
    return await crypto.subtle.verify(
      alg.verifyParams,
      key,
      signature as Uint8Array<ArrayBuffer>,
      parts.tbs as Uint8Array<ArrayBuffer>,
    );
  } catch {
    return false;
  }
}
