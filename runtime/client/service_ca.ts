/**
 * The deployer as the certificate authority of a keep's `prot = "tls"`
 * services (`enarx deploy --ca ca.pem --ca-key ca.key`): the CA certificate
 * and its PKCS#8 key (P-256 ECDSA or RSA) are read and checked against each
 * other before anything is sent; after the keep's evidence is verified, the
 * keep's CSR (which reached the client only over the TLS connection pinned
 * to the key sealed to the attested keep) is checked and a short-lived leaf
 * certificate is issued for it. The CA key stays in this process.
 *
 * @module
 */
import * as x509 from "../x509.ts";
import { EnarxError } from "../errors.ts";
import { type ServiceName, serviceNames } from "../wasm/certificate_names.ts";

/** How long an issued service certificate is valid: a week (a keep lives a day by default). */
export const SERVICE_CERT_VALIDITY_MS = 7 * 86_400_000;

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

async function readFileText(path: string, flag: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (cause) {
    const why = cause instanceof Error ? cause.message : String(cause);
    throw inputError("ca-unreadable", `Cannot read ${flag} "${path}": ${why}`, "noInput");
  }
}

/** The import and signing algorithms for a CA whose certificate has `key`. */
function caAlgorithms(key: x509.PublicKey, path: string) {
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
    `--ca "${path}" has a ${alg.name}${
      alg.namedCurve ? ` ${alg.namedCurve}` : ""
    } key; use a P-256 ECDSA or an RSA CA`,
    "dataError",
  );
}

/** Reads the CA certificate(s) of `path`: PEM, the CA's own first, which must be a CA. */
async function readCaCertificates(path: string): Promise<x509.X509Certificate[]> {
  const blocks = x509.pemBlocks(await readFileText(path, "--ca"));
  let certs: x509.X509Certificate[];
  try {
    certs = blocks.map((der) => new x509.X509Certificate(der));
  } catch {
    certs = [];
  }
  if (certs.length === 0) {
    throw inputError(
      "ca-invalid",
      `--ca "${path}" holds no readable PEM certificate; pass the CA's certificate (PEM)`,
      "dataError",
    );
  }
  const basic = certs[0].getExtension(x509.BasicConstraintsExtension);
  if (basic?.ca !== true) {
    throw inputError(
      "ca-invalid",
      `--ca "${path}" is not a CA certificate (no basicConstraints cA); pass the CA's own`,
      "dataError",
    );
  }
  return certs;
}

/**
 * Reads `--ca` (PEM certificates, the CA's first) and `--ca-key` (PKCS#8
 * PEM) and checks that the key is the certificate's: EnarxError 66 for a
 * file that cannot be read, 65 naming the file for one that is wrong.
 */
export async function loadServiceCa(caPath: string, keyPath: string): Promise<ServiceCa> {
  const certs = await readCaCertificates(caPath);
  const { importAlg, signing } = caAlgorithms(certs[0].publicKey, caPath);
  const keyDer = x509.pemBlocks(await readFileText(keyPath, "--ca-key"), "PRIVATE KEY")[0];
  let key: CryptoKey;
  try {
    if (keyDer === undefined) throw new Error("no PRIVATE KEY block");
    key = await crypto.subtle.importKey("pkcs8", keyDer, importAlg, false, ["sign"]);
  } catch {
    throw inputError(
      "ca-key-invalid",
      `--ca-key "${keyPath}" is not a PKCS#8 PEM ("BEGIN PRIVATE KEY") ${importAlg.name} key ` +
        `as --ca "${caPath}" needs; convert it with "openssl pkcs8 -topk8 -nocrypt"`,
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
      `--ca-key "${keyPath}" is not the key of --ca "${caPath}"; pass the CA's own key`,
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

function sanEntries(names: ServiceName[]): x509.JsonGeneralNames {
  return names.map((n) => ({ type: n.type, value: n.value }));
}

/**
 * Issues the keep's leaf certificate for the CSR's key: the names are the
 * deployer's (not the CSR's), valid an hour back to a week ahead (not past
 * the CA's end), serverAuth and clientAuth. Returns the chain, DER.
 */
export async function issueServiceCertificate(
  ca: ServiceCa,
  csr: x509.Pkcs10CertificateRequest,
  options: { names: readonly string[]; now?: Date },
): Promise<Uint8Array[]> {
  const names = serviceNames(options.names);
  const now = options.now ?? new Date();
  const caCert = new x509.X509Certificate(ca.chain[0].slice());
  const end = Math.min(now.getTime() + SERVICE_CERT_VALIDITY_MS, caCert.notAfter.getTime());
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] = (serial[0] & 0x7f) | 0x01; // positive, no leading zero byte
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serial.toHex(),
    subject: `CN=${names[0].value}`,
    issuer: caCert.subjectName,
    notBefore: new Date(now.getTime() - 3_600_000),
    notAfter: new Date(end),
    publicKey: csr.publicKey,
    signingKey: ca.key,
    signingAlgorithm: ca.signing,
    extensions: [
      new x509.SubjectAlternativeNameExtension(sanEntries(names)),
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      await x509.AuthorityKeyIdentifierExtension.create(caCert, false, crypto),
      await x509.SubjectKeyIdentifierExtension.create(csr.publicKey, false, crypto),
    ],
  }, crypto);
  return [new Uint8Array(leaf.rawData), ...ca.chain];
}
