/**
 * The deployer as the certificate authority of a keep's `prot = "tls"`
 * services (`enarx deploy --ca ca.pem --ca-key ca.key`): the CA certificate
 * and its PKCS#8 key (P-256 ECDSA or RSA) are read and checked against each
 * other before anything is sent; after the keep's evidence is verified, the
 * keep's CSR (which reached the client only over the TLS connection pinned
 * to the key sealed to the attested keep) is checked and a short-lived leaf
 * certificate is issued for it. The CA key stays in this process.
 *
 * The two files may also come from a policy's `[service_ca]` (`cert`, `key`;
 * runtime/attestation/policy.ts): the errors then name those keys and the
 * policy file instead of the flags.
 *
 * @module
 */
import * as x509 from "../x509.ts";
import { EnarxError, UsageError } from "../errors.ts";
import { serviceNames } from "../wasm/certificate_names.ts";
import { serviceLeafExtensions } from "../wasm/keep_identity.ts";
import { randomSerial } from "../der.ts";

/** How long an issued service certificate is valid by default: a week (a keep lives a day by default). */
export const SERVICE_CERT_VALIDITY_MS = 7 * 86_400_000;

/**
 * The longest validity `--cert-days` may ask for: 200 days, the most the
 * CA/Browser Forum's Baseline Requirements allow a publicly trusted TLS
 * certificate issued from 15 March 2026 (a private CA is not bound by them,
 * but a keep's certificate is not renewed, so a bound keeps its key from
 * being trusted for years).
 */
export const MAX_SERVICE_CERT_DAYS = 200;

/** How the errors of {@link loadServiceCa} name the two files. */
export interface ServiceCaLabels {
  /** The certificate's name, e.g. `--ca` (the default) or `service_ca.cert`. */
  cert: string;
  /** The key's name, e.g. `--ca-key` (the default) or `service_ca.key`. */
  key: string;
  /** Appended after each quoted path, e.g. ` (policy "p.toml")`; default none. */
  origin?: string;
}

const FLAG_LABELS: ServiceCaLabels = { cert: "--ca", key: "--ca-key" };

/** `--ca "ca.pem"`, or `service_ca.cert "/x/ca.pem" (policy "/x/p.toml")`. */
function named(labels: ServiceCaLabels, which: "cert" | "key", path: string): string {
  return `${labels[which]} "${path}"${labels.origin ?? ""}`;
}

/** A CA that issues keeps' service certificates; its key never leaves this process. */
export interface ServiceCa {
  /** Every certificate of the --ca file, DER, the CA's own first; sent after the leaf. */
  chain: Uint8Array[];
  /** The CA's private key (not extractable). */
  key: CryptoKey;
  /** The signature algorithm the key signs with. */
  signing: EcdsaParams | Algorithm;
}

/** A keep's service certificate, as the client learnt it over the attested channel. */
export interface ServiceCertificate {
  /** SHA-256 of the keep's certificate (DER), lower-case hex. */
  fingerprint: string;
  /** The names it holds. */
  names: string[];
  /** True when the deployer's CA issued it; false: self-signed by the keep. */
  issued: boolean;
  /** The chain the keep serves, DER, its own certificate first. */
  chain: Uint8Array[];
}

function inputError(code: string, message: string, exit: "dataError" | "noInput") {
  return new EnarxError(code, message, { exit });
}

async function readFileText(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (cause) {
    const why = cause instanceof Error ? cause.message : String(cause);
    throw inputError("ca-unreadable", `Cannot read ${what}: ${why}`, "noInput");
  }
}

/** The import and signing algorithms for a CA whose certificate has `key`. */
function caAlgorithms(key: x509.PublicKey, what: string) {
  const alg = key.algorithm as { name: string; namedCurve?: string };
  if (alg.name === "ECDSA" && alg.namedCurve === "P-256") {
    return {
      importAlg: { name: "ECDSA", namedCurve: "P-256" },
      signing: { name: "ECDSA", hash: "SHA-256" },
    };
  }
  if (alg.name === "RSASSA-PKCS1-v1_5" || alg.name === "RSA-PSS") {
    const rsa = { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" };
    return { importAlg: rsa, signing: rsa };
  }
  throw inputError(
    "ca-unsupported",
    `${what} has a ${alg.name}${
      alg.namedCurve ? ` ${alg.namedCurve}` : ""
    } key; use a P-256 ECDSA or an RSA CA`,
    "dataError",
  );
}

/** Reads the CA certificate(s) of `what`: PEM, the CA's own first, which must be a CA. */
async function readCaCertificates(path: string, what: string): Promise<x509.X509Certificate[]> {
  const blocks = x509.pemBlocks(await readFileText(path, what));
  let certs: x509.X509Certificate[];
  try {
    certs = blocks.map((der) => new x509.X509Certificate(der));
  } catch {
    certs = [];
  }
  if (certs.length === 0) {
    throw inputError(
      "ca-invalid",
      `${what} holds no readable PEM certificate; pass the CA's certificate (PEM)`,
      "dataError",
    );
  }
  const basic = certs[0].getExtension(x509.BasicConstraintsExtension);
  if (basic?.ca !== true) {
    throw inputError(
      "ca-invalid",
      `${what} is not a CA certificate (no basicConstraints cA); pass the CA's own`,
      "dataError",
    );
  }
  return certs;
}

/**
 * Reads `--ca` (PEM certificates, the CA's first) and `--ca-key` (PKCS#8
 * PEM) and checks that the key is the certificate's: EnarxError 66 for a
 * file that cannot be read, 65 naming the file for one that is wrong.
 * `options.labels` names the files in errors (default the flags).
 */
export async function loadServiceCa(
  caPath: string,
  keyPath: string,
  options: { labels?: ServiceCaLabels } = {},
): Promise<ServiceCa> {
  const labels = options.labels ?? FLAG_LABELS;
  const caName = named(labels, "cert", caPath);
  const keyName = named(labels, "key", keyPath);
  const certs = await readCaCertificates(caPath, caName);
  const { importAlg, signing } = caAlgorithms(certs[0].publicKey, caName);
  const keyDer = x509.pemBlocks(await readFileText(keyPath, keyName), "PRIVATE KEY")[0];
  let key: CryptoKey;
  try {
    if (keyDer === undefined) throw new Error("no PRIVATE KEY block");
    key = await crypto.subtle.importKey("pkcs8", keyDer, importAlg, false, ["sign"]);
  } catch {
    throw inputError(
      "ca-key-invalid",
      `${keyName} is not a PKCS#8 PEM ("BEGIN PRIVATE KEY") ${importAlg.name} key ` +
        `as ${caName} needs; convert it with "openssl pkcs8 -topk8 -nocrypt"`,
      "dataError",
    );
  }
  // The key must be the certificate's: sign, and verify with the certificate's key.
  const probe = crypto.getRandomValues(new Uint8Array(32));
  const signature = await crypto.subtle.sign(signing, key, probe);
  const publicKey = await certs[0].publicKey.export(importAlg, ["verify"], crypto);
  if (!await crypto.subtle.verify(signing, publicKey, signature, probe)) {
    throw inputError(
      "ca-key-mismatch",
      `${keyName} is not the key of ${caName}; pass the CA's own key`,
      "dataError",
    );
  }
  return {
    chain: certs.map((c) => new Uint8Array(c.rawData)),
    key,
    signing,
  };
}

/**
 * Checks the keep's answer to POST /v1/service-key: the CSR is signed by its
 * key, and the self-signed certificate is for the same key and signed by it.
 * Throws EnarxError `service-key-invalid` (76).
 */
export async function checkServiceKeyAnswer(
  answer: { csr: Uint8Array; certificate: Uint8Array },
): Promise<{ csr: x509.Pkcs10CertificateRequest; selfSigned: x509.X509Certificate }> {
  let csr: x509.Pkcs10CertificateRequest;
  let selfSigned: x509.X509Certificate;
  let ok: boolean;
  try {
    csr = new x509.Pkcs10CertificateRequest(answer.csr.slice());
    selfSigned = new x509.X509Certificate(answer.certificate.slice());
    ok = await csr.verify(crypto) && await selfSigned.verify({ signatureOnly: true }, crypto) &&
      new Uint8Array(csr.publicKey.rawData).toHex() ===
        new Uint8Array(selfSigned.publicKey.rawData).toHex();
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new EnarxError(
      "service-key-invalid",
      "The keep's service-key answer is not a CSR and a self-signed certificate for one key " +
        "signed by it; the keep is broken",
      { exit: "protocol" },
    );
  }
  return { csr: csr!, selfSigned: selfSigned! };
}

/**
 * Checks a certificate lifetime in days (`--cert-days`): a whole number
 * from 1 to {@link MAX_SERVICE_CERT_DAYS}; UsageError (64) naming `what`.
 */
export function checkCertDays(days: string | number, what = "--cert-days"): number {
  const n = typeof days === "number" ? days : /^\d+$/.test(days) ? Number(days) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_SERVICE_CERT_DAYS) {
    throw new UsageError(
      `${what} "${days}" is not a whole number of days from 1 to ${MAX_SERVICE_CERT_DAYS}; ` +
        `a keep's certificate is not renewed, so give the keep's lifetime (default 7)`,
    );
  }
  return n;
}

/**
 * Issues the keep's leaf certificate for the CSR's key: the names are the
 * deployer's (not the CSR's), valid an hour back to `days` ahead (default
 * 7; checked by {@link checkCertDays}; not past the CA's end), serverAuth
 * and clientAuth. Returns the chain, DER.
 */
export async function issueServiceCertificate(
  ca: ServiceCa,
  csr: x509.Pkcs10CertificateRequest,
  options: { names: readonly string[]; now?: Date; days?: number },
): Promise<Uint8Array[]> {
  const names = serviceNames(options.names);
  const now = options.now ?? new Date();
  const caCert = new x509.X509Certificate(ca.chain[0].slice());
  const validity = options.days === undefined
    ? SERVICE_CERT_VALIDITY_MS
    : checkCertDays(options.days, "days") * 86_400_000;
  const end = Math.min(now.getTime() + validity, caCert.notAfter.getTime());
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${names[0].value}`,
    issuer: caCert.subjectName,
    notBefore: new Date(now.getTime() - 3_600_000),
    notAfter: new Date(end),
    publicKey: csr.publicKey,
    signingKey: ca.key,
    signingAlgorithm: ca.signing,
    extensions: [
      ...serviceLeafExtensions(names),
      await x509.AuthorityKeyIdentifierExtension.create(caCert, false, crypto),
      await x509.SubjectKeyIdentifierExtension.create(csr.publicKey, false, crypto),
    ],
  }, crypto);
  return [new Uint8Array(leaf.rawData), ...ca.chain];
}
