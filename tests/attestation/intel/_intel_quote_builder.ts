/**
 * Builds Intel DCAP quotes (SGX v3, SGX or TDX v4, TDX v5) signed by a test
 * PKI made here with WebCrypto and @peculiar/x509: a root CA, a platform CA
 * and a PCK leaf carrying the SGX extension. Used by the SGX and TDX tests to
 * exercise the parser and verifier end to end beyond the real samples.
 *
 * @module
 */
import {
  BasicConstraintsExtension,
  Extension,
  KeyUsageFlags,
  KeyUsagesExtension,
  type X509Certificate,
  X509CertificateGenerator,
} from "../../../runtime/x509.ts";
import {
  INTEL_QE_MRSIGNER,
  INTEL_QE_VENDOR_ID,
  INTEL_TD_QE_MRSIGNER,
  SGX_EXTENSION_OID,
} from "../../../runtime/attestation/intel/intel_quote.ts";
import { concatBytes as concat } from "../../../runtime/bytes.ts";

const EC = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;

// --- a tiny DER writer, enough for the SGX extension -----------------------

function tlv(tag: number, ...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const length = parts.reduce((n, p) => n + p.length, 0);
  const head = length < 0x80
    ? [tag, length]
    : length < 0x100
    ? [tag, 0x81, length]
    : [tag, 0x82, length >> 8, length & 0xff];
  const out = new Uint8Array(head.length + length);
  out.set(head);
  let at = head.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function oid(text: string): Uint8Array {
  const [a, b, ...rest] = text.split(".").map(Number);
  const bytes = [a * 40 + b];
  for (const n of rest) {
    const groups = [n & 0x7f];
    for (let v = n >>> 7; v > 0; v >>>= 7) groups.unshift((v & 0x7f) | 0x80);
    bytes.push(...groups);
  }
  return tlv(0x06, new Uint8Array(bytes));
}

function int(n: number): Uint8Array {
  const bytes = [n & 0xff];
  for (let v = n >>> 8; v > 0; v >>>= 8) bytes.unshift(v & 0xff);
  if (bytes[0] & 0x80) bytes.unshift(0);
  return tlv(0x02, new Uint8Array(bytes));
}

const seq = (...parts: Uint8Array[]) => tlv(0x30, ...parts);
const octets = (bytes: Uint8Array) => tlv(0x04, bytes);

/** What the test PCK's SGX extension says. */
export interface TestPckFacts {
  fmspc: Uint8Array;
  pceId: Uint8Array;
  sgxTcbComponents: number[];
  pceSvn: number;
  cpuSvn: Uint8Array;
}

/** Default facts of the test PCK. */
export const TEST_PCK_FACTS: TestPckFacts = {
  fmspc: Uint8Array.from([0x00, 0x90, 0x6e, 0xd5, 0x00, 0x00]),
  pceId: Uint8Array.from([0x00, 0x00]),
  sgxTcbComponents: [2, 2, 2, 2, 3, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 200],
  pceSvn: 13,
  cpuSvn: Uint8Array.from([2, 2, 2, 2, 3, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 200]),
};

/** Encodes the PCK SGX extension value (PCK Certificate and CRL Profile). */
export function sgxExtensionValue(facts: TestPckFacts): Uint8Array<ArrayBuffer> {
  const o = (suffix: string) => oid(`${SGX_EXTENSION_OID}.${suffix}`);
  const tcb = facts.sgxTcbComponents.map((v, i) => seq(o(`2.${i + 1}`), int(v)));
  return seq(
    seq(o("1"), octets(new Uint8Array(16).fill(0xab))),
    seq(
      o("2"),
      seq(...tcb, seq(o("2.17"), int(facts.pceSvn)), seq(o("2.18"), octets(facts.cpuSvn))),
    ),
    seq(o("3"), octets(facts.pceId)),
    seq(o("4"), octets(facts.fmspc)),
    seq(o("5"), tlv(0x0a, Uint8Array.of(1))),
  );
}

// --- the test PKI -----------------------------------------------------------

/** A root CA, a platform CA and a PCK leaf, with their keys. */
export interface TestPki {
  rootCert: X509Certificate;
  caCert: X509Certificate;
  pckCert: X509Certificate;
  pckKey: CryptoKeyPair;
  /** The platform CA's keys (to sign test CRLs). */
  caKey: CryptoKeyPair;
  /** DER of the root, to pass as `trustedRoots`. */
  rootDer: Uint8Array;
  /** The chain as PEM, leaf first, root last. */
  chainPem: string;
}

/** Options of {@link makeTestPki}. */
export interface TestPkiOptions {
  notBefore?: Date;
  notAfter?: Date;
  /** The PCK leaf's own validity end (defaults to notAfter). */
  pckNotAfter?: Date;
  /** Omit the SGX extension from the PCK. */
  noSgxExtension?: boolean;
  /** Make the platform CA a non-CA certificate. */
  caNotCa?: boolean;
  facts?: TestPckFacts;
}

function pemOf(cert: X509Certificate): string {
  return cert.toString("pem").replaceAll("\r\n", "\n") + "\n";
}

/** Makes a fresh test PKI (P-256, ecdsa-with-SHA256), shaped like Intel's. */
export async function makeTestPki(options: TestPkiOptions = {}): Promise<TestPki> {
  const notBefore = options.notBefore ?? new Date("2024-01-01T00:00:00Z");
  const notAfter = options.notAfter ?? new Date("2034-01-01T00:00:00Z");
  const gen = () =>
    crypto.subtle.generateKey(EC, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
  const [rootKey, caKey, pckKey] = await Promise.all([gen(), gen(), gen()]);
  const caExt = (ca: boolean) => [
    new BasicConstraintsExtension(ca, ca ? 1 : undefined, true),
    new KeyUsagesExtension(
      ca ? KeyUsageFlags.keyCertSign | KeyUsageFlags.cRLSign : KeyUsageFlags.digitalSignature,
      true,
    ),
  ];
  const rootCert = await X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=Test SGX Root CA, O=enarx tests",
    notBefore,
    notAfter,
    keys: rootKey,
    signingAlgorithm: SIGN,
    extensions: caExt(true),
  });
  const caCert = await X509CertificateGenerator.create({
    serialNumber: "02",
    subject: "CN=Test SGX PCK Platform CA, O=enarx tests",
    issuer: rootCert.subject,
    notBefore,
    notAfter,
    publicKey: caKey.publicKey,
    signingKey: rootKey.privateKey,
    signingAlgorithm: SIGN,
    extensions: caExt(!options.caNotCa),
  });
  const pckExtensions: Extension[] = caExt(false);
  if (!options.noSgxExtension) {
    pckExtensions.push(
      new Extension(SGX_EXTENSION_OID, false, sgxExtensionValue(options.facts ?? TEST_PCK_FACTS)),
    );
  }
  const pckCert = await X509CertificateGenerator.create({
    serialNumber: "03",
    subject: "CN=Test SGX PCK Certificate, O=enarx tests",
    issuer: caCert.subject,
    notBefore,
    notAfter: options.pckNotAfter ?? notAfter,
    publicKey: pckKey.publicKey,
    signingKey: caKey.privateKey,
    signingAlgorithm: SIGN,
    extensions: pckExtensions,
  });
  return {
    rootCert,
    caCert,
    pckCert,
    pckKey,
    caKey,
    rootDer: new Uint8Array(rootCert.rawData),
    chainPem: pemOf(pckCert) + pemOf(caCert) + pemOf(rootCert),
  };
}

// --- quotes -----------------------------------------------------------------

/** Options of {@link buildQuote}. */
export interface BuildQuoteOptions {
  version: 3 | 4 | 5;
  tee: "sgx" | "tdx";
  /** v5 only: the TD body version (default td15). */
  tdBody?: "td10" | "td15";
  /** Called with the body to fill it in (measurements, attributes, report data). */
  fillBody?: (body: Uint8Array) => void;
  /** Certification data type of the innermost data (default 5, the PEM chain). */
  certDataType?: number;
  /** The innermost certification data (default the PKI's PEM chain). */
  certData?: Uint8Array;
  /** Overrides for the QE report. */
  qeMrSigner?: string;
  qeIsvProdId?: number;
  qeDebug?: boolean;
  /** Make the QE report data not match the attestation key. */
  breakBinding?: boolean;
  /** Sign the QE report with this key instead of the PCK's. */
  qeSigningKey?: CryptoKey;
  /** QE vendor id (hex). */
  qeVendorId?: string;
  /** Bytes appended after the signature data. */
  trailing?: number;
}

function le(n: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = Math.floor(n / 2 ** (8 * i)) & 0xff;
  return out;
}

async function sign(key: CryptoKey, data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.sign(SIGN, key, data.slice()));
}

/** Builds a signed quote with the test PKI. */
export async function buildQuote(pki: TestPki, options: BuildQuoteOptions): Promise<Uint8Array> {
  const tdx = options.tee === "tdx";
  const header = new Uint8Array(48);
  header.set(le(options.version, 2), 0);
  header.set(le(2, 2), 2);
  if (options.version === 3) {
    header.set(le(8, 2), 8);
    header.set(le(13, 2), 10);
  } else header.set(le(tdx ? 0x81 : 0, 4), 4);
  header.set(Uint8Array.fromHex(options.qeVendorId ?? INTEL_QE_VENDOR_ID), 12);
  header.set(new Uint8Array(16).fill(0x5a), 28);
  const bodyType = !tdx ? "sgx" : options.version === 5 ? options.tdBody ?? "td15" : "td10";
  const body = new Uint8Array({ sgx: 384, td10: 584, td15: 648 }[bodyType]);
  options.fillBody?.(body);
  const descriptor = options.version === 5
    ? concat(le({ sgx: 1, td10: 2, td15: 3 }[bodyType], 2), le(body.length, 4))
    : new Uint8Array(0);
  const signed = concat(header, descriptor, body);

  const attKey = await crypto.subtle.generateKey(EC, true, ["sign", "verify"]) as CryptoKeyPair;
  const attPub = new Uint8Array(await crypto.subtle.exportKey("raw", attKey.publicKey)).slice(1);
  const quoteSig = await sign(attKey.privateKey, signed);

  const qeAuth = new Uint8Array(32).map((_, i) => i);
  const qeReport = new Uint8Array(384);
  qeReport.set(le(options.qeDebug ? 0x17 : 0x15, 8), 48);
  qeReport.set(new Uint8Array(32).fill(0x11), 64);
  qeReport.set(
    Uint8Array.fromHex(options.qeMrSigner ?? (tdx ? INTEL_TD_QE_MRSIGNER : INTEL_QE_MRSIGNER)),
    128,
  );
  qeReport.set(le(options.qeIsvProdId ?? (tdx ? 2 : 1), 2), 256);
  qeReport.set(le(7, 2), 258);
  const binding = new Uint8Array(
    await crypto.subtle.digest("SHA-256", concat(attPub, qeAuth)),
  );
  if (options.breakBinding) binding[0] ^= 1;
  qeReport.set(binding, 320);
  const qeSig = await sign(options.qeSigningKey ?? pki.pckKey.privateKey, qeReport);

  const certData = options.certData ?? new TextEncoder().encode(pki.chainPem);
  const inner = concat(le(options.certDataType ?? 5, 2), le(certData.length, 4), certData);
  const qePart = concat(qeReport, qeSig, le(qeAuth.length, 2), qeAuth, inner);
  const sigData = options.version === 3
    ? concat(quoteSig, attPub, qePart)
    : concat(quoteSig, attPub, le(6, 2), le(qePart.length, 4), qePart);
  return concat(
    signed,
    le(sigData.length, 4),
    sigData,
    new Uint8Array(options.trailing ?? 0).fill(0xee),
  );
}
