/**
 * Reading DER (ITU-T X.690), just enough for the X.509 that attestation
 * verifiers read: elements, their children, OBJECT IDENTIFIERs, INTEGERs,
 * the signed parts of a certificate or CRL, ECDSA signatures, PEM and
 * fingerprints. It loads nothing else, so a verifier that needs only these
 * does not pay for @peculiar/x509 (about 90 ms of CPU to load its CommonJS
 * dependencies). runtime/der.ts writes DER; runtime/x509_reader.ts reads
 * certificates and CRLs with this.
 *
 * Every reader throws RangeError, naming the offset, for malformed input.
 *
 * @module
 */
import { derEcdsaSignature } from "./der.ts";
import { EnarxError } from "./errors.ts";

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

/**
 * Reads the element at `offset` and checks its tag; throws RangeError naming
 * `what` when the tag differs.
 */
export function expectDer(
  bytes: Uint8Array,
  offset: number,
  options: { tag: number; limit: number; what: string },
): DerElement {
  const e = readDerElement(bytes, offset, { limit: options.limit });
  if (e.tag !== options.tag) {
    throw new RangeError(
      `${options.what} at ${offset} has tag 0x${e.tag.toString(16)}, not 0x${
        options.tag.toString(16)
      }`,
    );
  }
  return e;
}

/** The elements inside constructed `parent`, which must fill it exactly. */
export function derChildren(bytes: Uint8Array, parent: DerElement): DerElement[] {
  const out: DerElement[] = [];
  for (let p = parent.valueStart; p < parent.end;) {
    const e = readDerElement(bytes, p, { limit: parent.end });
    out.push(e);
    p = e.end;
  }
  return out;
}

/** The bytes of an element (header included). */
export function derBytes(bytes: Uint8Array, e: DerElement): Uint8Array {
  return bytes.subarray(e.start, e.end);
}

/** The value of an element (header excluded). */
export function derValue(bytes: Uint8Array, e: DerElement): Uint8Array {
  return bytes.subarray(e.valueStart, e.end);
}

/**
 * The dotted form of an OBJECT IDENTIFIER element (X.690 §8.19); throws
 * RangeError when `e` is missing or not an OID.
 */
export function readOid(bytes: Uint8Array, e: DerElement | undefined): string {
  if (e === undefined) throw new RangeError("An OBJECT IDENTIFIER is missing");
  if (e.tag !== 0x06 || e.end === e.valueStart) {
    throw new RangeError(`OBJECT IDENTIFIER at ${e.start} is malformed`);
  }
  const arcs: number[] = [];
  let n = 0;
  for (let i = e.valueStart; i < e.end; i++) {
    if (n === 0 && bytes[i] === 0x80) throw new RangeError(`OID at ${e.start} is not minimal`);
    n = n * 128 + (bytes[i] & 0x7f);
    if (n > Number.MAX_SAFE_INTEGER / 128) throw new RangeError(`OID at ${e.start} is too long`);
    if ((bytes[i] & 0x80) === 0) {
      arcs.push(n);
      n = 0;
    } else if (i === e.end - 1) throw new RangeError(`OID at ${e.start} is truncated`);
  }
  const first = arcs[0] < 40 ? 0 : arcs[0] < 80 ? 1 : 2;
  return [first, arcs[0] - 40 * first, ...arcs.slice(1)].join(".");
}

/**
 * A small non-negative INTEGER element's value; throws RangeError when it is
 * missing, negative or larger than 2^48.
 */
export function readSmallInteger(bytes: Uint8Array, e: DerElement | undefined): number {
  if (e === undefined) throw new RangeError("An INTEGER is missing");
  const len = e.end - e.valueStart;
  if (e.tag !== 0x02 || len === 0 || len > 6 || bytes[e.valueStart] & 0x80) {
    throw new RangeError(`INTEGER at ${e.start} is not a small non-negative number`);
  }
  let n = 0;
  for (let i = e.valueStart; i < e.end; i++) n = n * 256 + bytes[i];
  return n;
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
  if (sig.end === sig.valueStart || der[sig.valueStart] !== 0) {
    throw new RangeError("Signature BIT STRING has unused bits");
  }
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

/** An INTEGER's magnitude left-padded to `size` bytes; throws RangeError when too large. */
function paddedScalar(bytes: Uint8Array, e: DerElement, size: number): Uint8Array {
  if (e.tag !== 0x02 || e.end === e.valueStart) throw new RangeError("Bad ECDSA signature");
  let p = e.valueStart;
  while (p < e.end - 1 && bytes[p] === 0) p++;
  const magnitude = bytes.subarray(p, e.end);
  if (magnitude.length > size) throw new RangeError("Bad ECDSA signature");
  const out = new Uint8Array(size);
  out.set(magnitude, size - magnitude.length);
  return out;
}

/**
 * Converts a DER `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` to
 * the raw `r ‖ s` form WebCrypto takes, each left-padded to `size` bytes
 * (48 for P-384, 32 for P-256). Throws RangeError when malformed.
 */
export function ecdsaDerToRaw(der: Uint8Array, size: number): Uint8Array {
  const seq = readDerElement(der, 0);
  if (seq.tag !== 0x30 || seq.end !== der.length) throw new RangeError("Bad ECDSA signature");
  const parts = derChildren(der, seq);
  if (parts.length !== 2) throw new RangeError("Bad ECDSA signature");
  const out = new Uint8Array(2 * size);
  out.set(paddedScalar(der, parts[0], size), 0);
  out.set(paddedScalar(der, parts[1], size), size);
  return out;
}

/**
 * Converts a raw `r ‖ s` ECDSA signature (big-endian scalars of equal size)
 * to DER `SEQUENCE { r, s }` with minimal INTEGERs, as X.509 and CRL
 * signatures are stored.
 */
export function ecdsaRawToDer(raw: Uint8Array): Uint8Array {
  if (raw.length === 0 || raw.length % 2 !== 0) throw new RangeError("Bad ECDSA signature");
  return derEcdsaSignature(raw);
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
