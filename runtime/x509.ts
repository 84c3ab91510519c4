/**
 * X.509 for enarx: @peculiar/x509 (which needs "reflect-metadata" loaded
 * first, so every module imports it through this one), plus the few DER and
 * WebCrypto helpers that attestation verifiers share: the exact signed bytes
 * of a certificate or CRL, DER to raw ECDSA signatures, and checking a
 * certificate's signature with its issuer's key.
 *
 * @module
 */
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { EnarxError } from "./errors.ts";
import { bytesEqual } from "./bytes.ts";

export * from "@peculiar/x509";

/** One DER element: its tag, where its value starts and where it ends. */
export interface DerElement {
  /** The identifier octet (single-byte tags only). */
  tag: number;
  /** Offset of the first byte of the element (its tag). */
  start: number;
  /** Offset of the first byte of the value. */
  valueStart: number;
  /** Offset just past the value. */
  end: number;
}

/**
 * Reads the DER element at `offset` of `bytes`; throws RangeError when the
 * header is malformed or the value runs past `limit` (default: the end).
 */
export function readDerElement(
  bytes: Uint8Array,
  offset: number,
  options: { limit?: number } = {},
): DerElement {
  const limit = options.limit ?? bytes.length;
  if (offset + 2 > limit) throw new RangeError(`DER element at ${offset} is truncated`);
  const tag = bytes[offset];
  if ((tag & 0x1f) === 0x1f) throw new RangeError(`DER multi-byte tag at ${offset}`);
  let p = offset + 1;
  let length = bytes[p++];
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 4 || p + n > limit) {
      throw new RangeError(`DER length at ${offset} is malformed`);
    }
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + bytes[p++];
  }
  if (p + length > limit) throw new RangeError(`DER element at ${offset} runs past its container`);
  return { tag, start: offset, valueStart: p, end: p + length };
}

/** The parts of a signed X.509 structure (certificate or CRL). */
export interface SignedParts {
  /** The exact DER bytes that were signed (tbsCertificate or tbsCertList). */
  tbs: Uint8Array;
  /** The signature bytes from the BIT STRING (without its unused-bits octet). */
  signature: Uint8Array;
  /** The outer signatureAlgorithm, DER (not signed). */
  algorithm: Uint8Array;
  /** The signature AlgorithmIdentifier inside the signed bytes, DER. */
  tbsAlgorithm: Uint8Array;
}

/**
 * Splits `SEQUENCE { tbs, signatureAlgorithm, BIT STRING }` (RFC 5280 §4.1,
 * §5.1) into the signed bytes and the signature, without re-encoding.
 */
export function signedParts(der: Uint8Array): SignedParts {
  const outer = readDerElement(der, 0);
  if (outer.tag !== 0x30) throw new RangeError("Not a DER SEQUENCE");
  const tbs = readDerElement(der, outer.valueStart, { limit: outer.end });
  const alg = readDerElement(der, tbs.end, { limit: outer.end });
  const sig = readDerElement(der, alg.end, { limit: outer.end });
  if (tbs.tag !== 0x30 || alg.tag !== 0x30 || sig.tag !== 0x03 || sig.end !== outer.end) {
    throw new RangeError("Not a signed X.509 structure");
  }
  if (der[sig.valueStart] !== 0) throw new RangeError("Signature BIT STRING has unused bits");
  // In tbsCertificate the AlgorithmIdentifier follows [0] version and the
  // serial INTEGER; in tbsCertList it follows the optional version INTEGER.
  let p = tbs.valueStart;
  let inner = readDerElement(der, p, { limit: tbs.end });
  while (inner.tag === 0xa0 || inner.tag === 0x02) {
    p = inner.end;
    inner = readDerElement(der, p, { limit: tbs.end });
  }
  if (inner.tag !== 0x30) throw new RangeError("No signature algorithm in the signed part");
  return {
    tbs: der.subarray(tbs.start, tbs.end),
    signature: der.subarray(sig.valueStart + 1, sig.end),
    algorithm: der.subarray(alg.start, alg.end),
    tbsAlgorithm: der.subarray(inner.start, inner.end),
  };
}

const ecdsaSignatures = new x509.AsnEcSignatureFormatter();

/** The WebCrypto ECDSA algorithm whose scalars are `size` bytes (32 for P-256, 48 for P-384). */
function ecdsaAlgorithmOfSize(size: number): EcKeyAlgorithm {
  for (const [namedCurve, bytes] of x509.AsnEcSignatureFormatter.namedCurveSize) {
    if (bytes === size) return { name: "ECDSA", namedCurve };
  }
  throw new RangeError(`No ECDSA curve has ${size}-byte scalars`);
}

/**
 * Converts a DER `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` to
 * the raw `r ‖ s` form WebCrypto takes, each left-padded to `size` bytes
 * (48 for P-384, 32 for P-256), with @peculiar/x509's signature formatter.
 * Throws RangeError when malformed.
 */
export function ecdsaDerToRaw(der: Uint8Array, size: number): Uint8Array {
  const seq = readDerElement(der, 0);
  if (seq.tag !== 0x30 || seq.end !== der.length) throw new RangeError("Bad ECDSA signature");
  let raw: ArrayBuffer | null;
  try {
    raw = ecdsaSignatures.toWebSignature(ecdsaAlgorithmOfSize(size), der.slice());
  } catch (error) {
    throw new RangeError("Bad ECDSA signature", { cause: error });
  }
  if (raw === null || raw.byteLength !== 2 * size) throw new RangeError("Bad ECDSA signature");
  return new Uint8Array(raw);
}

/**
 * Converts a raw `r ‖ s` ECDSA signature (big-endian scalars of equal size)
 * to DER `SEQUENCE { r, s }`, as X.509 and CRL signatures are stored, with
 * @peculiar/x509's signature formatter.
 */
export function ecdsaRawToDer(raw: Uint8Array): Uint8Array {
  const der = ecdsaSignatures.toAsnSignature(ecdsaAlgorithmOfSize(raw.length / 2), raw.slice());
  if (der === null) throw new RangeError("Bad ECDSA signature");
  return new Uint8Array(der);
}

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

/** SHA-256 of DER bytes, as lower-case hex (a certificate's fingerprint). */
export async function sha256Fingerprint(der: Uint8Array | ArrayBuffer): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", der as Uint8Array<ArrayBuffer>),
  );
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Splits PEM text into the DER bytes of each `-----BEGIN <label>-----` block,
 * in order. Text outside the blocks is ignored; returns [] when there is none.
 * Throws EnarxError `pem-malformed` (exit 65) when a block is not base64.
 */
export function pemBlocks(text: string, label = "CERTIFICATE"): Uint8Array<ArrayBuffer>[] {
  const re = new RegExp(`-----BEGIN ${label}-----([^-]*)-----END ${label}-----`, "g");
  const out: Uint8Array<ArrayBuffer>[] = [];
  for (const m of text.matchAll(re)) {
    const b64 = m[1].replace(/\s+/g, "");
    let der: Uint8Array<ArrayBuffer>;
    try {
      der = Uint8Array.fromBase64(b64);
    } catch {
      throw new EnarxError(
        "pem-malformed",
        `PEM block ${out.length + 1} ("-----BEGIN ${label}-----") is not valid base64; ` +
          `pass the file as the issuer published it`,
        { exit: "dataError" },
      );
    }
    out.push(der);
  }
  return out;
}
