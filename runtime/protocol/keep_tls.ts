/**
 * The one-use TLS key of a deploy and how the client pins it (deploy steps 6
 * to 9).
 *
 * The client generates a P-256 key K, seals its private half to the attested
 * keep, and makes for itself an *anchor* certificate: self-signed by K, with
 * subject `CN=enarx-keep-<id>` and SAN dNSName `<id>.keep.enarx.invalid`.
 * wasmldr opens K and makes its own self-signed certificate for K with the
 * same subject and SAN and a random serial. The client connects with
 * `Deno.startTls({hostname: "<id>.keep.enarx.invalid", caCerts: [anchor]})`:
 * rustls/webpki then accepts the keep's certificate only if it is signed by
 * the anchor's public key, which is K. Only the client and the attested keep
 * hold K, so a certificate that verifies proves the peer is the keep (or the
 * client itself). This was checked by experiment and is tested in
 * tests/protocol/keep_tls_test.ts: the keep's own certificate (same key, another
 * serial) is accepted; a certificate with the same names made by any other
 * key fails with "BadSignature"; webpki does not need CA:true on an anchor,
 * and the end-entity certificate must not claim CA:true, so neither does.
 *
 * @module
 */
import { generateP256 } from "./p256_keys.ts";
import {
  derEcdsaSignature,
  derElement,
  derOid,
  derSequence,
  derTime,
  derUnsignedInteger,
  derUtf8String,
  randomSerial,
} from "../der.ts";
import { EnarxError } from "../errors.ts";

const ECDSA_P256 = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGNING = { name: "ECDSA", hash: "SHA-256" } as const;
/** ecdsa-with-SHA256 (RFC 5758), with absent parameters. */
const ECDSA_WITH_SHA256 = derSequence(derOid("1.2.840.10045.4.3.2"));

/**
 * Says why this process's TLS trust would weaken the pin, or returns
 * undefined. Deno adds a connection's `caCerts` to its default roots; with
 * `DENO_TLS_CA_STORE=system` or `DENO_CERT` it also trusts the machine's
 * or a file's CAs, and a CA that certifies any name could then certify
 * `<id>.keep.enarx.invalid` and pose as the keep (docs/security.md).
 */
export function pinningTrustProblem(
  getEnv: (name: string) => string | undefined = (name) => Deno.env.get(name),
): string | undefined {
  const store = getEnv("DENO_TLS_CA_STORE");
  if (store !== undefined && store.split(",").some((s) => s.trim() === "system")) {
    return `DENO_TLS_CA_STORE is "${store}": Deno would also trust this machine's CAs for the ` +
      `keep's TLS; unset it (enarx deploy pins the keep's key and needs no CA)`;
  }
  const cert = getEnv("DENO_CERT");
  if (cert !== undefined && cert !== "") {
    return `DENO_CERT is "${cert}": Deno would also trust that CA for the keep's TLS; unset it ` +
      `(use --keepmgr-ca to verify the keepmgr)`;
  }
  return undefined;
}

/** Returns the TLS server name of a keep: `<id>.keep.enarx.invalid`. */
export function keepHostname(keepId: string): string {
  if (!/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(keepId)) {
    throw new EnarxError(
      "keep-id-invalid",
      `The keep id "${keepId}" is not a DNS label (letters, digits, "-", at most 63); the keepmgr sent a bad reply`,
      { exit: "protocol" },
    );
  }
  return `${keepId}.keep.enarx.invalid`;
}

/** The one-use TLS key: a P-256 ECDSA key pair with its PKCS#8 encoding. */
export interface TlsKey {
  /** The key pair, usable for signing certificates. */
  keys: CryptoKeyPair;
  /** The private key as PKCS#8 DER (what the client seals to the keep). */
  pkcs8: Uint8Array;
}

/** Generates a fresh one-use P-256 TLS key. */
export async function generateTlsKey(): Promise<TlsKey> {
  const keys = await generateP256("ECDSA", true);
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  return { keys, pkcs8 };
}

/**
 * Imports a P-256 private key from PKCS#8 DER and recovers its public key.
 * Throws EnarxError `tls-key-invalid` when it is not a P-256 key.
 */
export async function importTlsKey(pkcs8: Uint8Array): Promise<TlsKey> {
  try {
    const privateKey = await crypto.subtle.importKey(
      "pkcs8",
      new Uint8Array(pkcs8),
      ECDSA_P256,
      true,
      ["sign"],
    );
    const jwk = await crypto.subtle.exportKey("jwk", privateKey);
    const publicKey = await crypto.subtle.importKey(
      "jwk",
      { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y, ext: true },
      ECDSA_P256,
      true,
      ["verify"],
    );
    return { keys: { privateKey, publicKey }, pkcs8 };
  } catch (cause) {
    throw new EnarxError(
      "tls-key-invalid",
      "The sealed TLS key is not a PKCS#8 P-256 private key; the client sent a bad key",
      { exit: "dataError", cause },
    );
  }
}

/**
 * Makes a self-signed certificate for `key` naming keep `keepId` (the same
 * subject and SAN for the client's anchor and the keep's own certificate).
 * Returns PEM. `serial` is hex; by default a random 16-byte positive serial.
 */
export async function makeKeepCertificate(
  key: TlsKey,
  keepId: string,
  options: { serial?: string; now?: Date } = {},
): Promise<string> {
  const hostname = keepHostname(keepId);
  const now = options.now ?? new Date();
  const serial = Uint8Array.fromHex(options.serial ?? randomSerial());
  // Issuer and subject: CN=enarx-keep-<id>.
  const name = derSequence(
    derElement(0x31, derSequence(derOid("2.5.4.3"), derUtf8String(`enarx-keep-${keepId}`))),
  );
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", key.keys.publicKey));
  // subjectAltName (2.5.29.17) with one dNSName ([2] IMPLICIT IA5String).
  const san = derSequence(
    derOid("2.5.29.17"),
    derElement(0x04, derSequence(derElement(0x82, new TextEncoder().encode(hostname)))),
  );
  const tbs = derSequence(
    derElement(0xa0, derUnsignedInteger(Uint8Array.of(2))), // version v3
    derUnsignedInteger(serial),
    ECDSA_WITH_SHA256,
    name,
    // A day either side tolerates clock skew between client and host; the
    // key is used for one deploy only, so the window costs nothing.
    derSequence(
      derTime(new Date(now.getTime() - 86_400_000)),
      derTime(new Date(now.getTime() + 86_400_000)),
    ),
    name,
    spki,
    derElement(0xa3, derSequence(san)),
  );
  const signature = new Uint8Array(await crypto.subtle.sign(SIGNING, key.keys.privateKey, tbs));
  const cert = derSequence(
    tbs,
    ECDSA_WITH_SHA256,
    derElement(0x03, Uint8Array.of(0), derEcdsaSignature(signature)),
  );
  return pemFromDer(cert, "CERTIFICATE");
}

/** Encodes DER bytes as PEM with `label` (e.g. "PRIVATE KEY"). */
export function pemFromDer(der: Uint8Array, label: string): string {
  const lines = der.toBase64().match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** Options of {@link connectPinned}. */
export interface ConnectPinnedOptions {
  /** The keep id: the TLS server name is `<id>.keep.enarx.invalid`. */
  keepId: string;
  /** The client's anchor certificate (PEM) for its one-use key. */
  anchorPem: string;
  /** Aborts the TCP connect and the handshake. */
  signal?: AbortSignal;
}

/**
 * Connects to a keep's HTTPS listener, accepting only a certificate signed by
 * the anchor's key (the pin), and completes the handshake. Throws EnarxError
 * `keep-unreachable` when TCP fails and `keep-cert-mismatch` when the keep's
 * certificate is not for the pinned key.
 */
export async function connectPinned(
  host: string,
  port: number,
  options: ConnectPinnedOptions,
): Promise<Deno.TlsConn> {
  const hostname = keepHostname(options.keepId);
  let tcp: Deno.TcpConn;
  try {
    tcp = await Deno.connect({ hostname: host, port, signal: options.signal });
    // The request head, body and the keep's answers are small TLS records:
    // with Nagle each could wait for a delayed ACK (40 ms) of the one before.
    tcp.setNoDelay(true);
  } catch (cause) {
    throw new EnarxError(
      "keep-unreachable",
      `Cannot connect to the keep at "${host}:${port}": ${
        errorText(cause)
      }; check that the keepmgr's forward port is reachable`,
      { exit: "unavailable", cause },
    );
  }
  let tls: Deno.TlsConn | undefined;
  const onAbort = () => {
    try {
      (tls ?? tcp).close();
    } catch { /* already closed */ }
  };
  options.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    tls = await Deno.startTls(tcp, { hostname, caCerts: [options.anchorPem] });
    await tls.handshake();
    return tls;
  } catch (cause) {
    try {
      (tls ?? tcp).close();
    } catch { /* already closed */ }
    const text = errorText(cause);
    if (/certificate|BadSignature|UnknownIssuer|NotValidForName|CertNotValid/i.test(text)) {
      throw new EnarxError(
        "keep-cert-mismatch",
        `The keep at "${host}:${port}" presented a certificate that is not for the pinned one-use key (${text}); the host may be impersonating the keep, do not trust it`,
        { exit: "verificationFailed", cause },
      );
    }
    throw new EnarxError(
      "keep-unreachable",
      `The TLS handshake with the keep at "${host}:${port}" failed: ${text}; the keep may have stopped`,
      { exit: "unavailable", cause },
    );
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
