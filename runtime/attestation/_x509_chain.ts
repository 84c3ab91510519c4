/**
 * X.509 helpers shared by the AMD SNP, Intel quote and Nitro verifiers:
 * strict PEM parsing, parsing and signature checks through the one
 * certificate cache (_cert_cache.ts; a warm verifier parses each certificate
 * once), with the signature scheme per vendor, and a chain walk that reports three checks — the links, the anchor, and the
 * validity at an explicit time. Private to runtime/attestation/.
 *
 * @module
 */
import { ecdsaDerToRaw, ecdsaRawToDer } from "../der_reader.ts";
import { type CertificateFields, checkSignedBy, readCertificate } from "../x509_reader.ts";
import { cachedParse, cachedSignature } from "./_cert_cache.ts";
import { type Check, MalformedEvidenceError } from "./result.ts";
import { bytesEqual } from "../bytes.ts";

/** Parses a DER certificate, reusing an earlier parse of the same bytes; throws a `dataError`. */
export function certificateFromDer(der: Uint8Array, what: string): CertificateFields {
  try {
    return cachedParse("x509", der, () => readCertificate(der));
  } catch (error) {
    throw new MalformedEvidenceError(
      `Cannot parse the ${what} as an X.509 certificate (${
        error instanceof Error ? error.message : String(error)
      }); the evidence is corrupt`,
      { cause: error },
    );
  }
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----\n([A-Za-z0-9+/=\n]*?)-----END CERTIFICATE-----/y;

/**
 * Decodes base64 strictly: the text must re-encode to itself, so that no two
 * texts decode to the same bytes (a changed character is always a changed
 * certificate or an error).
 */
function strictBase64(text: string): Uint8Array | undefined {
  if (text.length === 0 || text.length % 4 !== 0) return undefined;
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.fromBase64(text, { lastChunkHandling: "strict" });
  } catch {
    return undefined;
  }
  return bytes.toBase64() === text ? bytes : undefined;
}

/**
 * Parses a PEM certificate list strictly: only `CERTIFICATE` blocks, separated
 * by line breaks, optionally followed by NUL bytes (as some quoting enclaves
 * write). Returns the DER of each block in order; throws a `dataError`.
 */
export function pemCertificates(text: string, what: string): Uint8Array[] {
  const fail = (why: string) =>
    new MalformedEvidenceError(
      `The ${what} is not a valid PEM certificate list: ${why}; the evidence is corrupt`,
    );
  const body = text.replace(/\0+$/, "");
  const out: Uint8Array[] = [];
  let at = 0;
  while (at < body.length) {
    if (body[at] === "\n") {
      at++;
      continue;
    }
    PEM_BLOCK.lastIndex = at;
    const m = PEM_BLOCK.exec(body);
    if (m === null) throw fail(`unexpected text at character ${at}`);
    const lines = m[1].split("\n").filter((l, i, all) => l !== "" || i !== all.length - 1);
    if (lines.some((l) => l === "" || l.length > 76)) throw fail(`bad line in block ${out.length}`);
    const der = strictBase64(lines.join(""));
    if (der === undefined) throw fail(`bad base64 in block ${out.length}`);
    out.push(der);
    at = PEM_BLOCK.lastIndex;
  }
  if (out.length === 0) throw fail("no certificate");
  return out;
}

/** Accepts certificates given as DER or as PEM text (one or more); throws a `dataError`. */
export function certificatesFromBytes(bytes: Uint8Array, what: string): Uint8Array[] {
  if (bytes.length > 0 && bytes[0] === 0x30) return [bytes];
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes);
  return pemCertificates(text.replaceAll("\r\n", "\n"), what);
}

// ---------------------------------------------------------------------------
// Strict signature check. A BER reader tolerates a non-minimal ECDSA-Sig-Value
// or BIT STRING, so the same signed certificate could be re-encoded in many
// ways; here the outer structure, the algorithm and the signature must be
// exactly DER (X.690 §10), and the outer signatureAlgorithm must equal the
// signed one (RFC 5280 §4.1.1.2).

interface Der {
  tag: number;
  start: number;
  valueStart: number;
  end: number;
}

/** Reads one DER element at `at`, refusing indefinite or non-minimal lengths. */
function readDer(bytes: Uint8Array, at: number, limit: number): Der {
  if (at + 2 > limit) throw new RangeError("DER truncated");
  const tag = bytes[at];
  let length = bytes[at + 1];
  let valueStart = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 3 || valueStart + n > limit || bytes[valueStart] === 0) {
      throw new RangeError("DER length is not minimal");
    }
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + bytes[valueStart + i];
    if (length < 0x80) throw new RangeError("DER length is not minimal");
    valueStart += n;
  }
  if (valueStart + length > limit) throw new RangeError("DER truncated");
  return { tag, start: at, valueStart, end: valueStart + length };
}

/** ecdsa-with-SHA256/384/512 AlgorithmIdentifiers (RFC 5758 §3.2: no parameters). */
const ECDSA_ALGORITHMS: [string, string][] = [
  ["300a06082a8648ce3d040302", "SHA-256"],
  ["300a06082a8648ce3d040303", "SHA-384"],
  ["300a06082a8648ce3d040304", "SHA-512"],
];

/** The signed bytes, hash and raw r‖s (for `size`-byte scalars) of a certificate. */
function signedPartsStrict(
  der: Uint8Array,
  size: number,
): { tbs: Uint8Array; hash: string; signature: Uint8Array } {
  const cert = readDer(der, 0, der.length);
  if (cert.tag !== 0x30 || cert.end !== der.length) throw new RangeError("Not one SEQUENCE");
  const tbs = readDer(der, cert.valueStart, cert.end);
  const alg = readDer(der, tbs.end, cert.end);
  const sig = readDer(der, alg.end, cert.end);
  if (tbs.tag !== 0x30 || alg.tag !== 0x30 || sig.tag !== 0x03 || sig.end !== cert.end) {
    throw new RangeError("Not a Certificate");
  }
  // tbsCertificate: [0] version, serialNumber, signature AlgorithmIdentifier, ...
  let inner = readDer(der, tbs.valueStart, tbs.end);
  if (inner.tag === 0xa0) inner = readDer(der, inner.end, tbs.end);
  if (inner.tag !== 0x02) throw new RangeError("No serial number");
  const tbsAlg = readDer(der, inner.end, tbs.end);
  const algHex = der.subarray(alg.start, alg.end).toHex();
  if (algHex !== der.subarray(tbsAlg.start, tbsAlg.end).toHex()) {
    throw new RangeError("Outer and signed algorithms differ");
  }
  const hash = ECDSA_ALGORITHMS.find(([h]) => h === algHex)?.[1];
  if (hash === undefined) throw new RangeError("Not an ECDSA signature");
  if (der[sig.valueStart] !== 0) throw new RangeError("BIT STRING has unused bits");
  const seq = readDer(der, sig.valueStart + 1, sig.end);
  if (seq.tag !== 0x30 || seq.end !== sig.end) throw new RangeError("Not an ECDSA-Sig-Value");
  // Exactly DER: the value must re-encode to itself (minimal INTEGERs, no padding).
  const sigValue = der.subarray(seq.start, seq.end);
  const signature = ecdsaDerToRaw(sigValue, size);
  if (signature.length !== 2 * size || !bytesEqual(ecdsaRawToDer(signature), sigValue)) {
    throw new RangeError("The ECDSA-Sig-Value is not DER");
  }
  return { tbs: der.subarray(tbs.start, tbs.end), hash, signature };
}

const CURVE_SIZES: Record<string, number> = { "P-256": 32, "P-384": 48, "P-521": 66 };
const issuerKeys = new WeakMap<CertificateFields, Promise<CryptoKey>>();

function issuerKey(issuer: CertificateFields): Promise<CryptoKey> {
  let key = issuerKeys.get(issuer);
  if (key === undefined) {
    key = crypto.subtle.importKey(
      "spki",
      issuer.publicKey.spki as Uint8Array<ArrayBuffer>,
      { name: "ECDSA", namedCurve: issuer.publicKey.namedCurve! },
      false,
      ["verify"],
    );
    issuerKeys.set(issuer, key);
  }
  return key;
}

/**
 * How a certificate's signature is checked: "ecdsa-strict" (Intel, AWS)
 * accepts only exactly-DER ECDSA; "x509" (AMD) any algorithm the issuer's
 * key makes, RSA-PSS included.
 */
export type SignatureScheme = "ecdsa-strict" | "x509";

/**
 * Whether `issuer`'s key made `subject`'s signature under `scheme`; asked once
 * per pair of parsed certificates (the shared cache of _cert_cache.ts).
 */
export function signedBy(
  subject: CertificateFields,
  issuer: CertificateFields,
  scheme: SignatureScheme = "ecdsa-strict",
): Promise<boolean> {
  return cachedSignature(
    scheme,
    { subject, issuer },
    () => scheme === "x509" ? checkSignedBy(subject, issuer) : signedByStrict(subject, issuer),
  );
}

async function signedByStrict(
  subject: CertificateFields,
  issuer: CertificateFields,
): Promise<boolean> {
  const key = issuer.publicKey;
  const size = key.name === "ECDSA" ? CURVE_SIZES[key.namedCurve!] : undefined;
  if (size === undefined) throw new RangeError("The issuer's key is not an ECDSA key");
  const parts = signedPartsStrict(subject.der, size);
  return await crypto.subtle.verify(
    { name: "ECDSA", hash: parts.hash },
    await issuerKey(issuer),
    parts.signature.slice(),
    parts.tbs.slice(),
  );
}

/** Options of {@link findIssuer}. */
export interface FindIssuerOptions<T> {
  /** The certificate of a candidate. */
  certificate: (candidate: T) => CertificateFields;
  /** How signatures are checked (default "ecdsa-strict"). */
  scheme?: SignatureScheme;
}

/**
 * The first of `candidates` that issued `subject`: its subject is `subject`'s
 * issuer and its key made `subject`'s signature under the scheme. The one
 * issuer search of every vendor's chain: AMD's unordered certificate sets and
 * embedded intermediates, and Intel's and AWS's chains that leave the root out.
 */
export async function findIssuer<T>(
  subject: CertificateFields,
  candidates: readonly T[],
  options: FindIssuerOptions<T>,
): Promise<T | undefined> {
  for (const candidate of candidates) {
    const issuer = options.certificate(candidate);
    if (issuer.subject !== subject.issuer) continue;
    if (await signedBy(subject, issuer, options.scheme)) return candidate;
  }
  return undefined;
}

function isCa(cert: CertificateFields): boolean {
  return cert.basicConstraintsCa === true;
}

/** The three checks of a certificate chain, and the parsed certificates leaf first. */
export interface ChainOutcome {
  /** Every certificate is signed by the next, whose subject is its issuer and which is a CA. */
  chain: Check;
  /** The chain ends in (or is issued by) one of the trusted roots. */
  root: Check;
  /** Every certificate, the root included, is valid at the verification time. */
  validity: Check;
  /** The certificates from leaf to root (the root appended when the chain omitted it). */
  certificates: CertificateFields[];
}

/** Options of {@link verifyCertificateChain}. */
export interface ChainOptions {
  /** The trusted roots, DER. */
  roots: Uint8Array[];
  /** The verification time. */
  at: Date;
  /** The id of the link check, e.g. `pck-chain`. */
  chainId: string;
  /** What the chain is, for messages, e.g. `PCK certificate chain`. */
  what: string;
  /** The chain must end in a copy of a trusted root (not merely be issued by one). */
  rootIncluded?: boolean;
}

/**
 * Verifies a chain given leaf first. The root may be the last element (it must
 * then equal a trusted root byte for byte) or may be left out (the last
 * element must then be signed by a trusted root). Never reads the clock.
 */
export async function verifyCertificateChain(
  chainDer: Uint8Array[],
  options: ChainOptions,
): Promise<ChainOutcome> {
  const certs = chainDer.map((der, i) => certificateFromDer(der, `${options.what} element ${i}`));
  const anchor = await anchorChain(chainDer, certs, options);
  const path = anchor.path;
  const linkFailure = await chainLinkFailure(path);
  const validityFailure = chainValidityFailure(path, options.at);
  return {
    chain: {
      id: options.chainId,
      description: `Each certificate of the ${options.what} is signed by the next`,
      ok: linkFailure === undefined,
      detail: linkFailure ?? `${path.length} certificates`,
    },
    root: {
      id: "root",
      description: `The ${options.what} ends in a trusted root`,
      ok: anchor.ok,
      detail: anchor.detail,
    },
    validity: {
      id: "validity",
      description:
        `Every certificate of the ${options.what} is valid at ${options.at.toISOString()}`,
      ok: path.length > 0 && validityFailure === undefined,
      detail: validityFailure ?? (path.length > 0 ? "All valid" : "No certificates"),
    },
    certificates: path,
  };
}

/**
 * Finds the chain's trusted root: a copy of one in the chain (the path ends
 * there) or, unless `rootIncluded`, one that issued the last certificate (it
 * is appended to the path).
 */
async function anchorChain(
  chainDer: Uint8Array[],
  certs: CertificateFields[],
  options: ChainOptions,
): Promise<{ path: CertificateFields[]; ok: boolean; detail: string }> {
  const rootIndex = chainDer.findIndex((der) => options.roots.some((r) => bytesEqual(r, der)));
  if (rootIndex >= 0) {
    const ok = rootIndex === certs.length - 1;
    return {
      path: certs.slice(0, rootIndex + 1),
      ok,
      detail: ok
        ? `Anchored at trusted root "${certs[rootIndex].subject}"`
        : `${certs.length - rootIndex - 1} unexpected certificate(s) after the trusted root`,
    };
  }
  if (certs.length === 0) return { path: certs, ok: false, detail: "No certificates" };
  const last = certs[certs.length - 1];
  const notTrusted = `The chain ends at "${last.subject}", which is not a trusted root`;
  if (options.rootIncluded) return { path: certs, ok: false, detail: notTrusted };
  const roots = options.roots.map((der, i) => certificateFromDer(der, `trusted root ${i}`));
  const root = await findIssuer(last, roots, { certificate: (c) => c });
  if (root !== undefined) {
    return { path: [...certs, root], ok: true, detail: `Issued by trusted root "${root.subject}"` };
  }
  return { path: certs, ok: false, detail: notTrusted };
}

/** Why the path's links fail (issuer names, CA flags, signatures), or undefined. */
async function chainLinkFailure(path: CertificateFields[]): Promise<string | undefined> {
  if (path.length === 0) return "No certificates";
  for (let i = 0; i + 1 < path.length; i++) {
    const [child, parent] = [path[i], path[i + 1]];
    if (child.issuer !== parent.subject) {
      return `"${child.subject}" names issuer "${child.issuer}" but is followed by "${parent.subject}"`;
    }
    if (!isCa(parent)) return `"${parent.subject}" is not a CA certificate`;
    if (!await signedBy(child, parent)) {
      return `The signature on "${child.subject}" does not verify with "${parent.subject}"`;
    }
  }
  return undefined;
}

/** Why a certificate of the path is not valid at `at`, or undefined. */
function chainValidityFailure(path: CertificateFields[], at: Date): string | undefined {
  const t = at.getTime();
  for (const cert of path) {
    if (t < cert.notBefore.getTime()) {
      return `"${cert.subject}" is not valid before ${cert.notBefore.toISOString()}`;
    }
    if (t > cert.notAfter.getTime()) {
      return `"${cert.subject}" expired ${cert.notAfter.toISOString()}`;
    }
  }
  return undefined;
}

/** A short description of a certificate for claims. */
export function certificateSummary(cert: CertificateFields): Record<string, string> {
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    serialNumber: cert.serialNumber,
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
  };
}
