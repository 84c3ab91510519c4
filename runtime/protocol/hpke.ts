/**
 * HPKE (RFC 9180) in base mode, single shot, for the one suite enarx uses:
 * DHKEM(P-256, HKDF-SHA256) (kem_id 0x0010), HKDF-SHA256 (kdf_id 0x0001)
 * and AES-128-GCM (aead_id 0x0001). Every primitive is WebCrypto's (ECDH on
 * P-256, HMAC-SHA256, AES-GCM), so a process that seals or opens loads no
 * JavaScript cryptography and no npm package. Written from the RFC's
 * sections 4 (DHKEM), 5.1 (key schedule) and 5.2 (encryption, sequence 0);
 * tests/protocol/hpke_test.ts checks it against the RFC's test vector A.3.1
 * and against the @hpke/core library both ways.
 *
 * @module
 */

import { generateP256 } from "./p256_keys.ts";
import { concatBytes as concat } from "../bytes.ts";

const encoder = new TextEncoder();
const VERSION_LABEL = encoder.encode("HPKE-v1");
/** "KEM" || I2OSP(kem_id, 2). */
const KEM_SUITE_ID = new Uint8Array([...encoder.encode("KEM"), 0x00, 0x10]);
/** "HPKE" || I2OSP(kem_id, 2) || I2OSP(kdf_id, 2) || I2OSP(aead_id, 2). */
const HPKE_SUITE_ID = new Uint8Array([
  ...encoder.encode("HPKE"),
  0x00,
  0x10,
  0x00,
  0x01,
  0x00,
  0x01,
]);
/** Nh of HKDF-SHA256, Nsecret of the KEM. */
const HASH_LENGTH = 32;
/** Nk and Nn of AES-128-GCM. */
const KEY_LENGTH = 16;
const NONCE_LENGTH = 12;
/** mode_base. */
const MODE_BASE = 0x00;

const ECDH_P256 = { name: "ECDH", namedCurve: "P-256" } as const;

async function hmac(key: Uint8Array, data: Uint8Array): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey(
    "raw",
    key as Uint8Array<ArrayBuffer>,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, data as Uint8Array<ArrayBuffer>));
}

/** LabeledExtract (RFC 9180 4): HKDF-Extract; an empty salt is Nh zero bytes (RFC 5869). */
function labeledExtract(
  suiteId: Uint8Array,
  salt: Uint8Array,
  label: string,
  ikm: Uint8Array,
): Promise<Uint8Array> {
  const key = salt.length === 0 ? new Uint8Array(HASH_LENGTH) : salt;
  return hmac(key, concat(VERSION_LABEL, suiteId, encoder.encode(label), ikm));
}

/** LabeledExpand (RFC 9180 4): HKDF-Expand of `length` bytes. */
async function labeledExpand(
  suiteId: Uint8Array,
  prk: Uint8Array,
  label: string,
  info: Uint8Array,
  length: number,
): Promise<Uint8Array> {
  const labeledInfo = concat(
    new Uint8Array([length >> 8, length & 0xff]),
    VERSION_LABEL,
    suiteId,
    encoder.encode(label),
    info,
  );
  const out = new Uint8Array(length);
  let block = new Uint8Array(0);
  for (let i = 1, at = 0; at < length; i++) {
    block = new Uint8Array(await hmac(prk, concat(block, labeledInfo, new Uint8Array([i]))));
    out.set(block.subarray(0, Math.min(block.length, length - at)), at);
    at += block.length;
  }
  return out;
}

/** ExtractAndExpand (RFC 9180 4.1): the KEM's shared secret from the DH value. */
async function extractAndExpand(dh: Uint8Array, kemContext: Uint8Array): Promise<Uint8Array> {
  const prk = await labeledExtract(KEM_SUITE_ID, new Uint8Array(0), "eae_prk", dh);
  const secret = await labeledExpand(KEM_SUITE_ID, prk, "shared_secret", kemContext, HASH_LENGTH);
  prk.fill(0);
  return secret;
}

/** The P-256 x-coordinate of `privateKey` times `publicKey` (DH, RFC 9180 7.1.1). */
async function dh(privateKey: CryptoKey, publicKey: CryptoKey): Promise<Uint8Array> {
  return new Uint8Array(
    await crypto.subtle.deriveBits({ name: "ECDH", public: publicKey }, privateKey, 256),
  );
}

/** The AEAD key and base nonce of mode_base with no PSK (RFC 9180 5.1). */
async function keySchedule(
  sharedSecret: Uint8Array,
  info: Uint8Array,
): Promise<{ key: CryptoKey; nonce: Uint8Array }> {
  const none = new Uint8Array(0);
  const pskIdHash = await labeledExtract(HPKE_SUITE_ID, none, "psk_id_hash", none);
  const infoHash = await labeledExtract(HPKE_SUITE_ID, none, "info_hash", info);
  const context = concat(new Uint8Array([MODE_BASE]), pskIdHash, infoHash);
  const secret = await labeledExtract(HPKE_SUITE_ID, sharedSecret, "secret", none);
  const keyBytes = await labeledExpand(HPKE_SUITE_ID, secret, "key", context, KEY_LENGTH);
  const nonce = await labeledExpand(HPKE_SUITE_ID, secret, "base_nonce", context, NONCE_LENGTH);
  secret.fill(0);
  const key = await crypto.subtle.importKey(
    "raw",
    keyBytes as Uint8Array<ArrayBuffer>,
    {
      name: "AES-GCM",
    },
    false,
    ["encrypt", "decrypt"],
  );
  keyBytes.fill(0);
  return { key, nonce };
}

/**
 * Imports a serialized P-256 public key (the 65-byte uncompressed point).
 * Rejects (WebCrypto's DataError) when it is not a point on the curve.
 */
export function importP256PublicKey(raw: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey("raw", raw as Uint8Array<ArrayBuffer>, ECDH_P256, true, []);
}

/** Generates a P-256 key pair for the KEM; the private key is not extractable. */
export function generateP256KeyPair(): Promise<CryptoKeyPair> {
  return generateP256("ECDH");
}

/** SerializePublicKey: the uncompressed point (65 bytes). */
export async function serializeP256PublicKey(key: CryptoKey): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.exportKey("raw", key));
}

/** What {@link hpkeSeal} and {@link hpkeOpen} take besides keys and data. */
export interface HpkeParameters {
  /** HPKE `info`, bound into the key schedule. */
  info: Uint8Array;
  /** Additional authenticated data of the one message. */
  aad: Uint8Array;
}

/**
 * The shared part of SetupBaseS and SetupBaseR (RFC 9180 5.1.1): DH between
 * `privateKey` and `publicKey`, the KEM's shared secret over `kemContext`
 * (enc || pkRm), and the AEAD key with the nonce of sequence number 0.
 */
async function setUp(
  privateKey: CryptoKey,
  publicKey: CryptoKey,
  kemContext: Uint8Array,
  parameters: HpkeParameters,
): Promise<{ key: CryptoKey; gcm: AesGcmParams }> {
  const shared = await dh(privateKey, publicKey);
  const sharedSecret = await extractAndExpand(shared, kemContext);
  shared.fill(0);
  const { key, nonce } = await keySchedule(sharedSecret, parameters.info);
  sharedSecret.fill(0);
  const gcm = {
    name: "AES-GCM",
    iv: nonce as Uint8Array<ArrayBuffer>,
    additionalData: parameters.aad as Uint8Array<ArrayBuffer>,
  };
  return { key, gcm };
}

/**
 * SealBase (RFC 9180 6.1) of one message to the recipient's public key
 * `recipient` (serialized as `recipientRaw`). `ephemeral` is for tests (the
 * RFC's vectors fix it); otherwise a fresh pair is generated. Rejects when
 * the recipient key is unusable.
 */
export async function hpkeSeal(
  recipient: CryptoKey,
  recipientRaw: Uint8Array,
  plaintext: Uint8Array,
  parameters: HpkeParameters,
  ephemeral?: CryptoKeyPair,
): Promise<{ enc: Uint8Array; ct: Uint8Array }> {
  const pair = ephemeral ?? await generateP256KeyPair();
  const enc = await serializeP256PublicKey(pair.publicKey);
  const context = await setUp(pair.privateKey, recipient, concat(enc, recipientRaw), parameters);
  const ct = await crypto.subtle.encrypt(
    context.gcm,
    context.key,
    plaintext as Uint8Array<ArrayBuffer>,
  );
  return { enc, ct: new Uint8Array(ct) };
}

/**
 * OpenBase (RFC 9180 6.1) of one message with the recipient's key pair
 * (`recipientRaw` is its serialized public key). Rejects when `enc` is not
 * a P-256 point or the ciphertext does not authenticate (wrong key, info,
 * aad or an altered byte).
 */
export async function hpkeOpen(
  recipient: CryptoKeyPair,
  recipientRaw: Uint8Array,
  enc: Uint8Array,
  ct: Uint8Array,
  parameters: HpkeParameters,
): Promise<Uint8Array> {
  const ephemeral = await importP256PublicKey(enc);
  const kemContext = concat(enc, recipientRaw);
  const context = await setUp(recipient.privateKey, ephemeral, kemContext, parameters);
  const pt = await crypto.subtle.decrypt(context.gcm, context.key, ct as Uint8Array<ArrayBuffer>);
  return new Uint8Array(pt);
}
