/**
 * P-256 key pairs without WebCrypto's `generateKey`. In Deno 2.9 a process's
 * first P-256 (or P-384) `generateKey` costs about 33 ms of CPU (later ones
 * are cheap; X25519 and every import are cheap), and a keep and a deploy
 * client are short processes that generate one or two keys each. Here the
 * private scalar is drawn from `crypto.getRandomValues` (uniform in
 * [1, n-1] by rejection), imported as PKCS #8 without its optional public
 * key, and WebCrypto computes the public point (its JWK export): about
 * 0.5 ms in all.
 *
 * @module
 */

/** The order n of the P-256 group (SEC 2, 2.4.2), big-endian. */
const ORDER = new Uint8Array(
  "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"
    .match(/../g)!.map((b) => parseInt(b, 16)),
);

/**
 * The DER of a PKCS #8 PrivateKeyInfo (RFC 5208) for an EC key on P-256
 * (id-ecPublicKey, prime256v1) holding an ECPrivateKey (RFC 5915, version 1)
 * with no parameters and no public key, up to the 32 bytes of the scalar.
 */
const PKCS8_PREFIX = new Uint8Array([
  0x30,
  0x41,
  0x02,
  0x01,
  0x00, // SEQUENCE (65 bytes), version 0
  0x30,
  0x13, // AlgorithmIdentifier
  0x06,
  0x07,
  0x2a,
  0x86,
  0x48,
  0xce,
  0x3d,
  0x02,
  0x01, // id-ecPublicKey
  0x06,
  0x08,
  0x2a,
  0x86,
  0x48,
  0xce,
  0x3d,
  0x03,
  0x01,
  0x07, // prime256v1
  0x04,
  0x27,
  0x30,
  0x25, // OCTET STRING { ECPrivateKey SEQUENCE
  0x02,
  0x01,
  0x01, // version 1
  0x04,
  0x20, // privateKey OCTET STRING (32 bytes) }
]);

/** The WebCrypto algorithm a pair is for. */
export type P256Algorithm = "ECDH" | "ECDSA";

const USAGES: Record<P256Algorithm, { private: KeyUsage[]; public: KeyUsage[] }> = {
  ECDH: { private: ["deriveBits"], public: [] },
  ECDSA: { private: ["sign"], public: ["verify"] },
};

/** Whether the 32-byte big-endian `d` is in [1, n-1]. */
function validScalar(d: Uint8Array): boolean {
  if (d.every((b) => b === 0)) return false;
  for (let i = 0; i < 32; i++) {
    if (d[i] !== ORDER[i]) return d[i] < ORDER[i];
  }
  return false; // d = n
}

/**
 * The key pair of the 32-byte big-endian scalar `d` (tests use a published
 * vector's). Rejects when `d` is not in [1, n-1]. The private key is
 * extractable only when asked; the public key always is.
 */
export async function p256KeyPairFromScalar(
  d: Uint8Array,
  algorithm: P256Algorithm,
  extractable = false,
): Promise<CryptoKeyPair> {
  if (d.length !== 32 || !validScalar(d)) {
    throw new RangeError("A P-256 private scalar is 32 bytes in [1, n-1]");
  }
  const params = { name: algorithm, namedCurve: "P-256" };
  const usages = USAGES[algorithm];
  const der = new Uint8Array(PKCS8_PREFIX.length + 32);
  der.set(PKCS8_PREFIX);
  der.set(d, PKCS8_PREFIX.length);
  try {
    const full = await crypto.subtle.importKey("pkcs8", der, params, true, usages.private);
    const jwk = await crypto.subtle.exportKey("jwk", full);
    const publicKey = await crypto.subtle.importKey(
      "jwk",
      { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y },
      params,
      true,
      usages.public,
    );
    const privateKey = extractable
      ? full
      : await crypto.subtle.importKey("jwk", jwk, params, false, usages.private);
    return { privateKey, publicKey };
  } finally {
    der.fill(0);
  }
}

/** A fresh P-256 key pair for `algorithm` (see the module comment). */
export async function generateP256(
  algorithm: P256Algorithm,
  extractable = false,
): Promise<CryptoKeyPair> {
  const d = new Uint8Array(32);
  do crypto.getRandomValues(d); while (!validScalar(d));
  try {
    return await p256KeyPairFromScalar(d, algorithm, extractable);
  } finally {
    d.fill(0);
  }
}
