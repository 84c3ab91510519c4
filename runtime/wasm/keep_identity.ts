/**
 * A keep's TLS identity for `prot = "tls"` sockets: a fresh P-256 key made
 * with WebCrypto in this process's memory (never written to a file), and a
 * certificate for it: self-signed, or issued by a callback (a later
 * `enarx deploy --ca` hands the CSR to the deployer's CA). Deno's TLS takes
 * the key as PKCS#8 PEM text, so the text exists, in memory only, for as
 * long as the keep runs.
 *
 * @module
 */
import * as x509 from "../x509.ts";
import { EnarxError } from "../errors.ts";
import { type ServiceName, serviceNames } from "./certificate_names.ts";
import { randomSerial } from "../der.ts";
import { pemFromDer } from "../protocol/keep_tls.ts";

const ECDSA_P256 = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGNING = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

/** What an issuer gets: the keep's public key and a CSR signed by its private key. */
export interface CertificateRequest {
  /** The keep's public key (SPKI DER). */
  publicKey: Uint8Array;
  /** A PKCS#10 request for the names, PEM. */
  csrPem: string;
  /** The names the certificate must hold. */
  names: ServiceName[];
}

/** Issues the keep's certificate: returns a PEM chain, the keep's certificate first. */
export type CertificateIssuer = (request: CertificateRequest) => Promise<string>;

/** Options of {@link createKeepIdentity}. */
export interface KeepIdentityOptions {
  /** The certificate's names (`--service-name`; default localhost and 127.0.0.1). */
  names?: readonly string[];
  /** Issues the certificate; default self-signed. */
  issuer?: CertificateIssuer;
  /** The time the certificate starts to be valid from (default now). */
  now?: Date;
}

/** A keep's TLS key and certificate, as Deno's TLS takes them. */
export interface KeepIdentity {
  /** The certificate chain, PEM, the keep's own first. */
  certPem: string;
  /** The private key, PKCS#8 PEM (memory only). */
  keyPem: string;
  /** SHA-256 of the keep's certificate (DER), lower-case hex. */
  fingerprint: string;
  /** The names it holds. */
  names: ServiceName[];
}

function sanEntries(names: ServiceName[]): x509.JsonGeneralNames {
  return names.map((n) => ({ type: n.type, value: n.value }));
}

/**
 * The extensions of a service's certificate, self-signed by the keep or
 * issued by the deployer's CA (runtime/client/service_ca.ts): its names, not
 * a CA, for signatures, as a TLS server and client.
 */
export function serviceLeafExtensions(names: ServiceName[]): x509.Extension[] {
  return [
    new x509.SubjectAlternativeNameExtension(sanEntries(names)),
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([
      x509.ExtendedKeyUsage.serverAuth,
      x509.ExtendedKeyUsage.clientAuth,
    ]),
  ];
}

function pem(der: ArrayBuffer, label: string): string {
  return pemFromDer(new Uint8Array(der), label);
}

async function selfSigned(keys: CryptoKeyPair, names: ServiceName[], now: Date): Promise<string> {
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${names[0].value}`,
    // An hour back tolerates clients with a slow clock; a keep lives far less than 30 days.
    notBefore: new Date(now.getTime() - 3_600_000),
    notAfter: new Date(now.getTime() + 30 * 86_400_000),
    signingAlgorithm: SIGNING,
    keys,
    extensions: serviceLeafExtensions(names),
  }, crypto);
  return cert.toString("pem");
}

function certificateRequest(
  keys: CryptoKeyPair,
  names: ServiceName[],
): Promise<x509.Pkcs10CertificateRequest> {
  return x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${names[0].value}`,
    keys,
    signingAlgorithm: SIGNING,
    extensions: [new x509.SubjectAlternativeNameExtension(sanEntries(names))],
  }, crypto);
}

async function issued(
  keys: CryptoKeyPair,
  names: ServiceName[],
  issuer: CertificateIssuer,
): Promise<string> {
  const csr = await certificateRequest(keys, names);
  const publicKey = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  const chain = await issuer({ publicKey, csrPem: csr.toString("pem"), names });
  checkChainKey(chain, publicKey);
  return chain;
}

/** Throws unless the chain's first certificate is for `publicKey` (SPKI DER). */
function checkChainKey(chain: string, publicKey: Uint8Array): void {
  const first = x509.pemBlocks(chain)[0];
  const spki = first === undefined
    ? undefined
    : new Uint8Array(new x509.X509Certificate(first).publicKey.rawData);
  if (spki === undefined || spki.toHex() !== publicKey.toHex()) {
    throw new EnarxError(
      "keep-certificate-mismatch",
      "The issued certificate chain does not start with a certificate for the keep's key; " +
        "the issuer must certify the CSR's public key",
      { exit: "protocol" },
    );
  }
}

/**
 * Makes a keep's identity: a new P-256 key and a certificate for `names`.
 * Throws UsageError for a bad name, EnarxError (76) when an issuer returns a
 * chain that is not for the key.
 */
export async function createKeepIdentity(
  options: KeepIdentityOptions = {},
): Promise<KeepIdentity> {
  const names = serviceNames(options.names);
  // Extractable only because Deno's TLS takes the key as PEM text.
  const keys = await crypto.subtle.generateKey(ECDSA_P256, true, ["sign", "verify"]);
  const certPem = options.issuer === undefined
    ? await selfSigned(keys, names, options.now ?? new Date())
    : await issued(keys, names, options.issuer);
  const keyPem = pem(await crypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY");
  const fingerprint = await x509.sha256Fingerprint(x509.pemBlocks(certPem)[0]);
  return { certPem, keyPem, fingerprint, names };
}

/**
 * A keep identity made in two steps (`enarx deploy`): the key, a CSR and a
 * self-signed certificate now, for the deployer to see; the certificate
 * served chosen later by {@link PreparedIdentity.finish}.
 */
export interface PreparedIdentity {
  /** The names the certificate is for. */
  names: ServiceName[];
  /** A PKCS#10 request for the names, DER, signed by the new key. */
  csr: Uint8Array;
  /** A self-signed certificate for the key and names, DER. */
  selfSigned: Uint8Array;
  /**
   * The identity with `chain` (DER, the keep's certificate first), or with
   * the self-signed certificate when none. Throws EnarxError
   * `keep-certificate-mismatch` (76) when the chain is not for the key.
   */
  finish(chain?: readonly Uint8Array[]): Promise<KeepIdentity>;
}

/** Makes a new P-256 key with its CSR and self-signed certificate (see {@link PreparedIdentity}). */
export async function prepareKeepIdentity(
  options: { names?: readonly string[]; now?: Date } = {},
): Promise<PreparedIdentity> {
  const names = serviceNames(options.names);
  const keys = await crypto.subtle.generateKey(ECDSA_P256, true, ["sign", "verify"]);
  const selfPem = await selfSigned(keys, names, options.now ?? new Date());
  const csr = new Uint8Array((await certificateRequest(keys, names)).rawData);
  const publicKey = new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
  return {
    names,
    csr,
    selfSigned: x509.pemBlocks(selfPem)[0],
    async finish(chain) {
      const certPem = chain === undefined
        ? selfPem
        : chain.map((der) => pem(der.slice().buffer, "CERTIFICATE")).join("");
      if (chain !== undefined) checkChainKey(certPem, publicKey);
      const keyPem = pem(await crypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY");
      const fingerprint = await x509.sha256Fingerprint(x509.pemBlocks(certPem)[0]);
      return { certPem, keyPem, fingerprint, names };
    },
  };
}
