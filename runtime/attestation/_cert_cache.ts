/**
 * The one certificate cache of runtime/attestation. Every verifier (AMD SNP
 * and legacy SEV, Intel TDX and SGX, AWS Nitro) keeps here what it parsed
 * from certificate bytes, keyed by the bytes and the kind of parse, and the
 * outcome of each signature check between two parsed certificates, keyed by
 * the pair and the signature scheme. A warm verifier so parses each
 * certificate once and checks each link once, whichever vendor's chain it
 * belongs to. Private to runtime/attestation/.
 *
 * @module
 */

/** At most this many parsed values are kept per kind of parse. */
const CACHE_LIMIT = 512;
const parsedByKind = new Map<string, Map<string, unknown>>();
let signatures = new WeakMap<object, Map<string, WeakMap<object, Promise<boolean>>>>();

/** The bytes as a string key (one UTF-16 unit per byte; exact, unlike a hash). */
function bytesKey(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return s;
}

/**
 * Returns what `parse` made of `bytes` the last time it was asked for this
 * `kind` (e.g. "x509", "amd-ca"), or calls it now. A parse that throws is not
 * kept, so bad input fails every time with the caller's own error.
 */
export function cachedParse<T>(kind: string, bytes: Uint8Array, parse: () => T): T {
  let cache = parsedByKind.get(kind);
  if (cache === undefined) {
    cache = new Map();
    parsedByKind.set(kind, cache);
  }
  const key = bytesKey(bytes);
  if (cache.has(key)) return cache.get(key) as T;
  const value = parse();
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(key, value);
  return value;
}

/**
 * Whether `issuer` signed `subject` under `scheme` (e.g. "ecdsa-strict" for
 * Intel and AWS, "x509" for AMD's RSA-PSS and ECDSA): `verify`'s answer,
 * asked once per pair of parsed objects and scheme.
 */
export function cachedSignature(
  scheme: string,
  { subject, issuer }: { subject: object; issuer: object },
  verify: () => Promise<boolean>,
): Promise<boolean> {
  let bySubject = signatures.get(subject);
  if (bySubject === undefined) {
    bySubject = new Map();
    signatures.set(subject, bySubject);
  }
  let byIssuer = bySubject.get(scheme);
  if (byIssuer === undefined) {
    byIssuer = new WeakMap();
    bySubject.set(scheme, byIssuer);
  }
  let outcome = byIssuer.get(issuer);
  if (outcome === undefined) {
    outcome = verify().catch(() => false);
    byIssuer.set(issuer, outcome);
  }
  return outcome;
}

/** Forgets every parsed certificate and checked signature (for a cold benchmark). */
export function clearCertificateCache(): void {
  parsedByKind.clear();
  signatures = new WeakMap();
}
