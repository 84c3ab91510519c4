/**
 * Sealing the client's one-use TLS key to an attested keep (deploy step 6),
 * with HPKE (RFC 9180) in base mode: DHKEM(P-256, HKDF-SHA256), HKDF-SHA256,
 * AES-128-GCM (hpke.ts, on WebCrypto). The keep's public key is the raw uncompressed P-256 point
 * (65 bytes) that its evidence binds into report data (see report_data.ts).
 *
 * Per spec/protocol.md, `info` is `"enarx/v1 sealed-key\0" || keep id` and
 * `aad` is the client's nonce, so a ciphertext made for one keep or one
 * deploy cannot be opened as another's.
 *
 * @module
 */
import {
  generateP256KeyPair,
  hpkeOpen,
  hpkeSeal,
  importP256PublicKey,
  serializeP256PublicKey,
} from "./hpke.ts";
import { EnarxError } from "../errors.ts";

/** The suite name carried in the create-keep reply. */
export const SEALING_SUITE = "DHKEM-P256-HKDF-SHA256/HKDF-SHA256/AES-128-GCM";

/** Length of a raw uncompressed P-256 public key (0x04 || X || Y). */
export const SEALING_PUBLIC_KEY_LENGTH = 65;

const INFO_LABEL = new TextEncoder().encode("enarx/v1 sealed-key\0");

/** A sealed message: the HPKE encapsulated key and the ciphertext. */
export interface Sealed {
  /** HPKE `enc`, the sender's ephemeral public key (65 bytes). */
  enc: Uint8Array;
  /** The AEAD ciphertext with its tag. */
  ct: Uint8Array;
}

/** What binds a sealed message to one keep and one deploy. */
export interface SealingContext {
  /** The keep id the keepmgr assigned. */
  keepId: string;
  /** The client's 32-byte nonce. */
  nonce: Uint8Array;
}

/** Returns HPKE `info` for a keep: the domain label followed by the keep id. */
export function sealingInfo(keepId: string): Uint8Array {
  const id = new TextEncoder().encode(keepId);
  const info = new Uint8Array(INFO_LABEL.length + id.length);
  info.set(INFO_LABEL, 0);
  info.set(id, INFO_LABEL.length);
  return info;
}

/**
 * Seals `plaintext` to a keep's raw P-256 public key. Throws EnarxError
 * `sealing-key-invalid` when the key is not a valid P-256 point.
 */
export async function sealToKeep(
  publicKey: Uint8Array,
  plaintext: Uint8Array,
  context: SealingContext,
): Promise<Sealed> {
  if (publicKey.length !== SEALING_PUBLIC_KEY_LENGTH || publicKey[0] !== 0x04) {
    throw new EnarxError(
      "sealing-key-invalid",
      `The keep's sealing key is ${publicKey.length} bytes, not a ${SEALING_PUBLIC_KEY_LENGTH}-byte uncompressed P-256 point; the keepmgr sent a bad reply`,
      { exit: "protocol" },
    );
  }
  try {
    const recipient = await importP256PublicKey(publicKey);
    return await hpkeSeal(recipient, publicKey, plaintext, {
      info: sealingInfo(context.keepId),
      aad: context.nonce,
    });
  } catch (cause) {
    // Encapsulation fails only when the public key is not a valid point.
    throw new EnarxError(
      "sealing-key-invalid",
      "The keep's sealing key is not a point on P-256; the keepmgr sent a bad reply",
      { exit: "protocol", cause },
    );
  }
}

/**
 * The keep's ephemeral HPKE key pair (deploy step 4). The private key never
 * leaves the object and is not extractable.
 */
export class SealingKeyPair {
  readonly #keys: CryptoKeyPair;
  /** The raw uncompressed P-256 public key (65 bytes) that evidence binds. */
  readonly publicKey: Uint8Array;

  private constructor(keys: CryptoKeyPair, publicKey: Uint8Array) {
    this.#keys = keys;
    this.publicKey = publicKey;
  }

  /** Generates a fresh key pair. */
  static async generate(): Promise<SealingKeyPair> {
    const keys = await generateP256KeyPair();
    return new SealingKeyPair(keys, await serializeP256PublicKey(keys.publicKey));
  }

  /**
   * Opens a sealed message made for this key, this keep and this nonce.
   * Throws EnarxError `unseal-failed` when it was made for anything else or
   * was tampered with.
   */
  async open(sealed: Sealed, context: SealingContext): Promise<Uint8Array> {
    try {
      return await hpkeOpen(this.#keys, this.publicKey, sealed.enc, sealed.ct, {
        info: sealingInfo(context.keepId),
        aad: context.nonce,
      });
    } catch (cause) {
      throw new EnarxError(
        "unseal-failed",
        `The sealed key for keep "${context.keepId}" does not open with this keep's key; it was sealed for another keep or deploy, or altered on the way`,
        { exit: "verificationFailed", cause },
      );
    }
  }
}
