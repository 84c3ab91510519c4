/**
 * Reading X.509 certificates and CRLs (RFC 5280 §4.1, §5.1) for attestation
 * verifiers, with nothing but runtime/der_reader.ts and WebCrypto: the
 * signed bytes, the signature and its algorithm, serial, issuer and subject,
 * validity, the SubjectPublicKeyInfo and extensions of a certificate; the
 * issuer, dates and revoked serials of a CRL. `enarx deploy` verifies a
 * keep's evidence with this, and so does not load @peculiar/x509 (about
 * 90 ms of CPU to load its CommonJS dependencies).
 *
 * Names and serials are rendered as @peculiar/x509 renders them (the rest of
 * enarx, the embedded AMD subjects and recorded claims use that form), which
 * tests/attestation/x509_reader_test.ts checks on every certificate under
 * tests/testdata. Malformed input throws RangeError naming what is wrong.
 *
 * @module
 */
import {
  derBytes,
  derChildren,
  type DerElement,
  derValue,
  ecdsaDerToRaw,
  expectDer,
  readDerElement,
  readOid,
  readSmallInteger,
} from "./der_reader.ts";

/** A signature AlgorithmIdentifier, as WebCrypto names its parts. */
export interface SignatureAlgorithm {
  /** The algorithm's OID. */
  oid: string;
  /** "RSA-PSS", "RSASSA-PKCS1-v1_5", "ECDSA", or the OID when unknown. */
  name: string;
  /** The digest, e.g. "SHA-384", when the algorithm names one. */
  hash?: string;
  /** RSA-PSS: the salt length (default 20). */
  saltLength?: number;
  /** RSA-PSS: the MGF1 digest (default SHA-1); WebCrypto needs it equal to `hash`. */
  maskHash?: string;
}

/** A certificate's SubjectPublicKeyInfo. */
export interface PublicKeyInfo {
  /** The SubjectPublicKeyInfo DER, for `crypto.subtle.importKey("spki", …)`. */
  spki: Uint8Array;
  /** "ECDSA" (with `namedCurve`), "RSA", "RSA-PSS", "Ed25519", or the OID. */
  name: string;
  /** The curve of an EC key, e.g. "P-384", or its OID when unknown. */
  namedCurve?: string;
}

/** One extension. */
export interface CertificateExtension {
  /** extnID. */
  oid: string;
  /** Whether it is marked critical. */
  critical: boolean;
  /** The contents of extnValue's OCTET STRING. */
  value: Uint8Array;
}

/** The parts of a signed structure that a signature check reads. */
export interface SignedStructure {
  /** The exact signed bytes (tbsCertificate or tbsCertList). */
  tbs: Uint8Array;
  /** The signature (the BIT STRING's bytes). */
  signature: Uint8Array;
  /** The outer signatureAlgorithm. */
  signatureAlgorithm: SignatureAlgorithm;
  /** Whether the outer and the signed AlgorithmIdentifiers are byte for byte equal. */
  algorithmsAgree: boolean;
}

/** What the verifiers read of a certificate. */
export interface CertificateFields extends SignedStructure {
  /** The certificate's DER (a copy). */
  der: Uint8Array;
  /** The serial number's INTEGER bytes, a leading zero octet dropped, lower-case hex. */
  serialNumber: string;
  /** The issuer, rendered (`CN=…, O=…`, in the certificate's order). */
  issuer: string;
  /** The subject, rendered likewise. */
  subject: string;
  /** The subject's first common name, or null. */
  subjectCommonName: string | null;
  /** Start of validity. */
  notBefore: Date;
  /** End of validity. */
  notAfter: Date;
  /** The subject's key. */
  publicKey: PublicKeyInfo;
  /** The extensions, in order. */
  extensions: CertificateExtension[];
  /** BasicConstraints' cA, or null without the extension. */
  basicConstraintsCa: boolean | null;
}

/** One revoked certificate of a CRL. */
export interface RevokedEntry {
  /** Its serial number, as {@link CertificateFields.serialNumber}. */
  serialNumber: string;
  /** When it was revoked. */
  revocationDate: Date;
}

/** What the verifiers read of a CRL. */
export interface CrlFields extends SignedStructure {
  /** The issuer, rendered as a certificate's. */
  issuer: string;
  /** thisUpdate. */
  thisUpdate: Date;
  /** nextUpdate, when present. */
  nextUpdate: Date | null;
  /** The revoked certificates. */
  entries: RevokedEntry[];
}

const HASHES: Record<string, string> = {
  "1.3.14.3.2.26": "SHA-1",
  "2.16.840.1.101.3.4.2.1": "SHA-256",
  "2.16.840.1.101.3.4.2.2": "SHA-384",
  "2.16.840.1.101.3.4.2.3": "SHA-512",
};
const RSA_PKCS1: Record<string, string> = {
  "1.2.840.113549.1.1.5": "SHA-1",
  "1.2.840.113549.1.1.11": "SHA-256",
  "1.2.840.113549.1.1.12": "SHA-384",
  "1.2.840.113549.1.1.13": "SHA-512",
};
const ECDSA: Record<string, string> = {
  "1.2.840.10045.4.3.2": "SHA-256",
  "1.2.840.10045.4.3.3": "SHA-384",
  "1.2.840.10045.4.3.4": "SHA-512",
};
const RSA_PSS_OID = "1.2.840.113549.1.1.10";
const MGF1_OID = "1.2.840.113549.1.1.8";
const CURVES: Record<string, string> = {
  "1.2.840.10045.3.1.7": "P-256",
  "1.3.132.0.34": "P-384",
  "1.3.132.0.35": "P-521",
};
const KEY_ALGORITHMS: Record<string, string> = {
  "1.2.840.10045.2.1": "ECDSA",
  "1.2.840.113549.1.1.1": "RSA",
  [RSA_PSS_OID]: "RSA-PSS",
  "1.3.101.112": "Ed25519",
};
/** Short names of attribute types, as @peculiar/x509 renders them. */
const ATTRIBUTE_NAMES: Record<string, string> = {
  "2.5.4.3": "CN",
  "2.5.4.7": "L",
  "2.5.4.8": "ST",
  "2.5.4.10": "O",
  "2.5.4.11": "OU",
  "2.5.4.6": "C",
  "0.9.2342.19200300.100.1.25": "DC",
  "1.2.840.113549.1.9.1": "E",
  "2.5.4.42": "G",
  "2.5.4.43": "I",
  "2.5.4.4": "SN",
  "2.5.4.12": "T",
};
const BASIC_CONSTRAINTS_OID = "2.5.29.19";

/** The digest of a hash AlgorithmIdentifier (parameters NULL or absent). */
function hashOf(bytes: Uint8Array, e: DerElement): string {
  const [oid] = derChildren(bytes, e);
  const hash = HASHES[readOid(bytes, oid)];
  if (hash === undefined) throw new RangeError(`Unknown digest at ${e.start}`);
  return hash;
}

/** RSASSA-PSS-params (RFC 4055 §3.1), defaults SHA-1, MGF1-SHA-1, salt 20. */
function pssParams(bytes: Uint8Array, params: DerElement | undefined): SignatureAlgorithm {
  const alg: SignatureAlgorithm = {
    oid: RSA_PSS_OID,
    name: "RSA-PSS",
    hash: "SHA-1",
    saltLength: 20,
    maskHash: "SHA-1",
  };
  if (params === undefined) return alg;
  if (params.tag !== 0x30) throw new RangeError(`RSA-PSS parameters at ${params.start} malformed`);
  for (const field of derChildren(bytes, params)) {
    const [inner, ...rest] = derChildren(bytes, field);
    if (inner === undefined || rest.length > 0) {
      throw new RangeError(`RSA-PSS parameter at ${field.start} is malformed`);
    }
    if (field.tag === 0xa0) alg.hash = hashOf(bytes, inner);
    else if (field.tag === 0xa1) {
      const [mgf, mgfHash] = derChildren(bytes, inner);
      if (readOid(bytes, mgf) !== MGF1_OID || mgfHash === undefined) {
        throw new RangeError(`RSA-PSS mask generation at ${inner.start} is not MGF1`);
      }
      alg.maskHash = hashOf(bytes, mgfHash);
    } else if (field.tag === 0xa2) alg.saltLength = readSmallInteger(bytes, inner);
    else if (field.tag === 0xa3) {
      if (readSmallInteger(bytes, inner) !== 1) throw new RangeError("RSA-PSS trailer is not 1");
    } else throw new RangeError(`RSA-PSS parameter at ${field.start} has an unknown tag`);
  }
  return alg;
}

/** A signature AlgorithmIdentifier. */
function signatureAlgorithm(bytes: Uint8Array, e: DerElement): SignatureAlgorithm {
  if (e.tag !== 0x30) throw new RangeError(`AlgorithmIdentifier at ${e.start} is not a SEQUENCE`);
  const [oidElement, params, ...rest] = derChildren(bytes, e);
  if (oidElement === undefined || rest.length > 0) {
    throw new RangeError(`AlgorithmIdentifier at ${e.start} is malformed`);
  }
  const oid = readOid(bytes, oidElement);
  if (oid === RSA_PSS_OID) return pssParams(bytes, params);
  if (RSA_PKCS1[oid] !== undefined) {
    return { oid, name: "RSASSA-PKCS1-v1_5", hash: RSA_PKCS1[oid] };
  }
  if (ECDSA[oid] !== undefined) return { oid, name: "ECDSA", hash: ECDSA[oid] };
  return { oid, name: oid };
}

/** A Time (RFC 5280 §4.1.2.5): UTCTime (years 1950–2049) or GeneralizedTime, in UTC. */
function readTime(bytes: Uint8Array, e: DerElement): Date {
  if (e.end - e.valueStart > 24) throw new RangeError(`Time at ${e.start} is too long`);
  const text = String.fromCharCode(...derValue(bytes, e));
  const m = e.tag === 0x17
    ? /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(text)
    : e.tag === 0x18
    ? /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(?:\.(\d{1,3}))?Z$/.exec(text)
    : null;
  if (m === null) throw new RangeError(`Time at ${e.start} is malformed ("${text}")`);
  let year = Number(m[1]);
  if (e.tag === 0x17) year += year < 50 ? 2000 : 1900;
  const [month, day, hour, minute, second] = m.slice(2, 7).map(Number);
  const ms = m[7] === undefined ? 0 : Number(m[7].padEnd(3, "0"));
  const date = new Date(Date.UTC(year, month - 1, day, hour, minute, second, ms));
  if (
    date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day || hour > 23 || minute > 59 ||
    second > 59
  ) {
    throw new RangeError(`Time at ${e.start} is not a valid date ("${text}")`);
  }
  // Date.UTC maps years 0-99 to 1900-1999.
  date.setUTCFullYear(year);
  return date;
}

/** A directory string's text, or undefined for a type rendered as hex. */
function attributeText(bytes: Uint8Array, e: DerElement): string | undefined {
  const value = derValue(bytes, e);
  switch (e.tag) {
    case 0x0c: // UTF8String
      return new TextDecoder().decode(value);
    case 0x13: // PrintableString
    case 0x14: // TeletexString
    case 0x16: // IA5String
      return Array.from(value, (b) => String.fromCharCode(b)).join("");
    case 0x1e: // BMPString
      return new TextDecoder("utf-16be").decode(value);
    case 0x1c: { // UniversalString
      const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
      let s = "";
      for (let i = 0; i + 4 <= value.length; i += 4) {
        const c = view.getUint32(i);
        s += c <= 0x10ffff ? String.fromCodePoint(c) : "\ufffd";
      }
      return s;
    }
    default:
      return undefined;
  }
}

/** RFC 4514-style escaping, exactly as @peculiar/x509 applies it. */
function escapeValue(text: string): string {
  return text
    .replace(/([,+"\\<>;])/g, "\\$1")
    .replace(/^([ #])/, "\\$1")
    .replace(/([ ]$)/, "\\$1")
    .replace(/([\r\n\t])/, (c) => `\\${new TextEncoder().encode(c).toHex().toUpperCase()}`);
}

/** A Name rendered as `T=v, T=v+T=v` in its own order, and its first CN. */
function readName(bytes: Uint8Array, e: DerElement): { text: string; commonName: string | null } {
  if (e.tag !== 0x30) throw new RangeError(`Name at ${e.start} is not a SEQUENCE`);
  let commonName: string | null = null;
  const rdns = derChildren(bytes, e).map((rdn) => {
    if (rdn.tag !== 0x31) throw new RangeError(`RDN at ${rdn.start} is not a SET`);
    return derChildren(bytes, rdn).map((atv) => {
      const [typeElement, valueElement, ...rest] = derChildren(bytes, atv);
      if (atv.tag !== 0x30 || valueElement === undefined || rest.length > 0) {
        throw new RangeError(`Attribute at ${atv.start} is malformed`);
      }
      const type = readOid(bytes, typeElement);
      const text = attributeText(bytes, valueElement);
      if (type === "2.5.4.3" && commonName === null) commonName = text ?? "";
      const shown = text === undefined
        ? `#${derBytes(bytes, valueElement).toHex()}`
        : escapeValue(text);
      return `${ATTRIBUTE_NAMES[type] ?? type}=${shown}`;
    }).join("+");
  });
  return { text: rdns.join(", "), commonName };
}

/** A SubjectPublicKeyInfo: its DER and algorithm. */
function readPublicKey(bytes: Uint8Array, e: DerElement): PublicKeyInfo {
  const [alg, key, ...rest] = e.tag === 0x30 ? derChildren(bytes, e) : [];
  if (alg?.tag !== 0x30 || key?.tag !== 0x03 || rest.length > 0) {
    throw new RangeError(`SubjectPublicKeyInfo at ${e.start} is malformed`);
  }
  const [oidElement, params] = derChildren(bytes, alg);
  const oid = readOid(bytes, oidElement);
  const info: PublicKeyInfo = { spki: derBytes(bytes, e), name: KEY_ALGORITHMS[oid] ?? oid };
  if (info.name === "ECDSA") {
    if (params?.tag !== 0x06) throw new RangeError(`EC key at ${e.start} names no curve`);
    const curve = readOid(bytes, params);
    info.namedCurve = CURVES[curve] ?? curve;
  }
  return info;
}

/** A BOOLEAN's value (any non-zero octet is true). */
function readBoolean(bytes: Uint8Array, e: DerElement): boolean {
  if (e.tag !== 0x01 || e.end - e.valueStart !== 1) {
    throw new RangeError(`BOOLEAN at ${e.start} is malformed`);
  }
  return bytes[e.valueStart] !== 0;
}

/** `Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension` (RFC 5280 §4.1). */
function readExtensions(bytes: Uint8Array, e: DerElement): CertificateExtension[] {
  if (e.tag !== 0x30) throw new RangeError(`Extensions at ${e.start} are not a SEQUENCE`);
  return derChildren(bytes, e).map((ext) => {
    const parts = ext.tag === 0x30 ? derChildren(bytes, ext) : [];
    const critical = parts.length === 3 ? readBoolean(bytes, parts[1]) : false;
    const value = parts[parts.length - 1];
    if (parts.length < 2 || parts.length > 3 || value.tag !== 0x04) {
      throw new RangeError(`Extension at ${ext.start} is malformed`);
    }
    return { oid: readOid(bytes, parts[0]), critical, value: derValue(bytes, value).slice() };
  });
}

/** BasicConstraints' cA (RFC 5280 §4.2.1.9), or null without the extension. */
function basicConstraintsCa(extensions: CertificateExtension[]): boolean | null {
  const ext = extensions.find((e) => e.oid === BASIC_CONSTRAINTS_OID);
  if (ext === undefined) return null;
  const seq = readDerElement(ext.value, 0);
  if (seq.tag !== 0x30 || seq.end !== ext.value.length) {
    throw new RangeError("BasicConstraints is malformed");
  }
  const parts = derChildren(ext.value, seq);
  let k = 0;
  let ca = false;
  if (parts[k]?.tag === 0x01) ca = readBoolean(ext.value, parts[k++]);
  if (parts[k]?.tag === 0x02) readSmallInteger(ext.value, parts[k++]);
  if (k !== parts.length) throw new RangeError("BasicConstraints is malformed");
  return ca;
}

/** The outer `SEQUENCE { tbs, algorithm, BIT STRING }`, filling `der` exactly. */
function readSigned(der: Uint8Array, what: string): {
  tbs: DerElement;
  fields: DerElement[];
  signed: Omit<SignedStructure, "algorithmsAgree">;
  outerAlgorithm: Uint8Array;
} {
  const outer = expectDer(der, 0, { tag: 0x30, limit: der.length, what });
  if (outer.end !== der.length) {
    throw new RangeError(`${der.length - outer.end} bytes follow the ${what}`);
  }
  const [tbs, alg, sig, ...rest] = derChildren(der, outer);
  if (tbs?.tag !== 0x30 || alg?.tag !== 0x30 || sig?.tag !== 0x03 || rest.length > 0) {
    throw new RangeError(
      `Not a signed ${what}: expected SEQUENCE { SEQUENCE, SEQUENCE, BIT STRING }`,
    );
  }
  if (sig.end === sig.valueStart || der[sig.valueStart] !== 0) {
    throw new RangeError(`The ${what}'s signature BIT STRING has unused bits`);
  }
  return {
    tbs,
    fields: derChildren(der, tbs),
    signed: {
      tbs: derBytes(der, tbs),
      signature: der.subarray(sig.valueStart + 1, sig.end),
      signatureAlgorithm: signatureAlgorithm(der, alg),
    },
    outerAlgorithm: derBytes(der, alg),
  };
}

/**
 * Reads a DER certificate (RFC 5280 §4.1). Throws RangeError for anything
 * else: wrong tags, lengths past the end, trailing bytes, bad times.
 */
export function readCertificate(input: Uint8Array): CertificateFields {
  const der = input.slice();
  const { fields, signed, outerAlgorithm } = readSigned(der, "certificate");
  let i = 0;
  const next = (tag: number, what: string): DerElement => {
    const e = fields[i++];
    if (e?.tag !== tag) throw new RangeError(`The certificate's ${what} is missing or malformed`);
    return e;
  };
  if (fields[0]?.tag === 0xa0) {
    const [version, ...rest] = derChildren(der, fields[i++]);
    if (readSmallInteger(der, version) > 2 || rest.length > 0) {
      throw new RangeError("The certificate's version is not 1, 2 or 3");
    }
  }
  const serial = next(0x02, "serial number");
  if (serial.end === serial.valueStart) throw new RangeError("The serial number is empty");
  const tbsAlgorithm = next(0x30, "signature algorithm");
  const issuer = readName(der, next(0x30, "issuer"));
  const [notBefore, notAfter, ...more] = derChildren(der, next(0x30, "validity"));
  if (notBefore === undefined || notAfter === undefined || more.length > 0) {
    throw new RangeError("The certificate's validity is malformed");
  }
  const subject = readName(der, next(0x30, "subject"));
  const publicKey = readPublicKey(der, next(0x30, "public key"));
  while (fields[i]?.tag === 0x81 || fields[i]?.tag === 0xa1 || fields[i]?.tag === 0xa2) i++;
  let extensions: CertificateExtension[] = [];
  if (fields[i]?.tag === 0xa3) {
    const [inner, ...rest] = derChildren(der, fields[i++]);
    if (inner === undefined || rest.length > 0) {
      throw new RangeError("The certificate's extensions are malformed");
    }
    extensions = readExtensions(der, inner);
  }
  if (i !== fields.length) throw new RangeError("The certificate has unexpected fields");
  return {
    ...signed,
    algorithmsAgree: derBytes(der, tbsAlgorithm).toHex() === outerAlgorithm.toHex(),
    der,
    serialNumber: serialHex(der, serial),
    issuer: issuer.text,
    subject: subject.text,
    subjectCommonName: subject.commonName,
    notBefore: readTime(der, notBefore),
    notAfter: readTime(der, notAfter),
    publicKey,
    extensions,
    basicConstraintsCa: basicConstraintsCa(extensions),
  };
}

/**
 * A serial number as @peculiar/x509 renders it: the INTEGER's bytes in hex,
 * a first zero octet (the sign octet of a serial whose top bit is set)
 * dropped (zero itself stays "00").
 */
function serialHex(der: Uint8Array, e: DerElement): string {
  const value = derValue(der, e);
  return (value[0] === 0 && value.length > 1 ? value.subarray(1) : value).toHex();
}

/** `revokedCertificates` of a tbsCertList. */
function readRevoked(der: Uint8Array, e: DerElement): RevokedEntry[] {
  return derChildren(der, e).map((entry) => {
    const [serial, date, extensions, ...rest] = entry.tag === 0x30 ? derChildren(der, entry) : [];
    if (serial?.tag !== 0x02 || date === undefined || rest.length > 0) {
      throw new RangeError(`Revoked entry at ${entry.start} is malformed`);
    }
    if (extensions !== undefined) readExtensions(der, extensions);
    return { serialNumber: serialHex(der, serial), revocationDate: readTime(der, date) };
  });
}

/** Reads a DER CRL (RFC 5280 §5.1); throws RangeError when malformed. */
export function readCrl(input: Uint8Array): CrlFields {
  const der = input.slice();
  const { fields, signed, outerAlgorithm } = readSigned(der, "CRL");
  let i = 0;
  if (fields[i]?.tag === 0x02) i++;
  const tbsAlgorithm = fields[i++];
  const issuerElement = fields[i++];
  const thisUpdate = fields[i++];
  if (tbsAlgorithm?.tag !== 0x30 || issuerElement === undefined || thisUpdate === undefined) {
    throw new RangeError("The CRL's signed part is malformed");
  }
  const issuer = readName(der, issuerElement);
  let nextUpdate: Date | null = null;
  if (fields[i]?.tag === 0x17 || fields[i]?.tag === 0x18) nextUpdate = readTime(der, fields[i++]);
  let entries: RevokedEntry[] = [];
  if (fields[i]?.tag === 0x30) entries = readRevoked(der, fields[i++]);
  if (fields[i]?.tag === 0xa0) {
    const [inner, ...rest] = derChildren(der, fields[i++]);
    if (inner === undefined || rest.length > 0) {
      throw new RangeError("The CRL's extensions are malformed");
    }
    readExtensions(der, inner);
  }
  if (i !== fields.length) throw new RangeError("The CRL has unexpected fields");
  return {
    ...signed,
    algorithmsAgree: derBytes(der, tbsAlgorithm).toHex() === outerAlgorithm.toHex(),
    issuer: issuer.text,
    thisUpdate: readTime(der, thisUpdate),
    nextUpdate,
    entries,
  };
}

const CURVE_SIZES: Record<string, number> = { "P-256": 32, "P-384": 48, "P-521": 66 };

/**
 * Whether `signer`'s key made `signed`'s signature (a certificate or CRL),
 * with the signature algorithm `signed` names (RSA-PSS, RSASSA-PKCS1-v1_5
 * or ECDSA), and its outer algorithm is the signed one (RFC 5280 §4.1.1.2).
 * False for a bad signature, a malformed one, or an algorithm the key cannot
 * make; never throws for bad input.
 */
export async function checkSignedBy(
  signed: SignedStructure,
  signer: CertificateFields,
): Promise<boolean> {
  const alg = signed.signatureAlgorithm;
  const key = signer.publicKey;
  if (!signed.algorithmsAgree || alg.hash === undefined) return false;
  let importParams: RsaHashedImportParams | EcKeyImportParams;
  let verifyParams: RsaPssParams | EcdsaParams | Algorithm;
  let signature = signed.signature;
  try {
    if (alg.name === "RSA-PSS" && alg.maskHash === alg.hash && key.name.startsWith("RSA")) {
      importParams = { name: "RSA-PSS", hash: alg.hash };
      verifyParams = { name: "RSA-PSS", saltLength: alg.saltLength ?? 20 };
    } else if (alg.name === "RSASSA-PKCS1-v1_5" && key.name === "RSA") {
      importParams = { name: "RSASSA-PKCS1-v1_5", hash: alg.hash };
      verifyParams = { name: "RSASSA-PKCS1-v1_5" };
    } else if (alg.name === "ECDSA" && key.name === "ECDSA" && key.namedCurve! in CURVE_SIZES) {
      importParams = { name: "ECDSA", namedCurve: key.namedCurve! };
      verifyParams = { name: "ECDSA", hash: alg.hash };
      signature = ecdsaDerToRaw(signature, CURVE_SIZES[key.namedCurve!]);
    } else return false;
    const cryptoKey = await crypto.subtle.importKey(
      "spki",
      key.spki as Uint8Array<ArrayBuffer>,
      importParams,
      false,
      ["verify"],
    );
    return await crypto.subtle.verify(
      verifyParams,
      cryptoKey,
      signature as Uint8Array<ArrayBuffer>,
      signed.tbs as Uint8Array<ArrayBuffer>,
    );
  } catch {
    return false;
  }
}
