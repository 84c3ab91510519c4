/**
 * COSE_Sign1 (RFC 9052 §4.2, formerly RFC 8152): parse the four-element
 * structure, build the `Sig_structure` that is signed, and sign or verify it
 * with ECDSA (ES256, ES384, ES512; RFC 9053 §2.1, signatures as raw r‖s).
 * CBOR goes through the protocol's codec (well-formed mode for what AWS
 * encodes, deterministic encoding for what we sign); the protected header and
 * payload are kept as the exact bytes received, since those are what the
 * signature covers.
 *
 * @module
 */
import { decodeCborGeneric, encodeCbor } from "../../protocol/cbor.ts";
import { MalformedEvidenceError } from "../result.ts";

/** CBOR tag of a COSE_Sign1 (RFC 9052 §2). */
export const COSE_SIGN1_TAG = 18;
/** COSE header label `alg` (RFC 9052 §3.1). */
export const COSE_HEADER_ALG = 1;

/** The ECDSA algorithms this module verifies, by COSE algorithm id (RFC 9053 §2.1). */
export const COSE_ECDSA_ALGORITHMS: Readonly<
  Record<number, { name: string; hash: string; namedCurve: string; size: number }>
> = {
  [-7]: { name: "ES256", hash: "SHA-256", namedCurve: "P-256", size: 64 },
  [-35]: { name: "ES384", hash: "SHA-384", namedCurve: "P-384", size: 96 },
  [-36]: { name: "ES512", hash: "SHA-512", namedCurve: "P-521", size: 132 },
};

/** COSE algorithm id of ES384 (ECDSA P-384 with SHA-384). */
export const COSE_ALG_ES384 = -35;

/** A parsed COSE_Sign1. */
export interface CoseSign1 {
  /** Whether the input carried CBOR tag 18. */
  tagged: boolean;
  /** The protected header exactly as received (a serialized map, or empty). */
  protectedBytes: Uint8Array;
  /** The protected header decoded; an empty map when `protectedBytes` is empty. */
  protectedHeader: Map<unknown, unknown>;
  /** The unprotected header as decoded: a Map when well-formed, anything else otherwise. */
  unprotectedHeader: unknown;
  /** The payload exactly as received. */
  payload: Uint8Array;
  /** The signature bytes. */
  signature: Uint8Array;
}

/** Documents larger than this are refused before decoding. */
export const MAX_COSE_BYTES = 1 << 20;

function malformed(message: string, cause?: unknown): MalformedEvidenceError {
  return new MalformedEvidenceError(message, { cause });
}

/**
 * Decodes one CBOR item strictly (definite lengths, minimal heads, no
 * duplicate keys, no tags or `undefined`); maps come back as Map.
 */
export function decodeCborStrict(bytes: Uint8Array, what: string): unknown {
  try {
    return decodeCborGeneric(bytes, { what });
  } catch (error) {
    // The codec's own reason (byte offset and what is wrong), without its advice.
    const reason = error instanceof Error && error.cause instanceof Error
      ? error.cause.message
      : String(error);
    throw malformed(`The ${what} is not valid CBOR (${reason}); the evidence is corrupt`, error);
  }
}

/**
 * Parses a COSE_Sign1, tagged (`D2 84 …`) or untagged (`84 …`). Throws an
 * MalformedEvidenceError (exit `dataError`) unless the input is an array of four items
 * whose protected header, payload and signature are byte strings and whose
 * protected header (when not empty) is a CBOR map. The unprotected header is
 * returned as decoded; checking that it is a map is the caller's policy.
 */
export function parseCoseSign1(bytes: Uint8Array): CoseSign1 {
  if (!(bytes instanceof Uint8Array) || bytes.length === 0) {
    throw malformed("The COSE_Sign1 document is empty; check the evidence file");
  }
  if (bytes.length > MAX_COSE_BYTES) {
    throw malformed(
      `The COSE_Sign1 document is ${bytes.length} bytes, more than the ${MAX_COSE_BYTES} allowed`,
    );
  }
  const tagged = bytes[0] === 0xd2;
  const body = tagged ? bytes.subarray(1) : bytes;
  if (body[0] !== 0x84) {
    throw malformed(
      `The evidence does not start with a COSE_Sign1 array (first byte 0x${
        bytes[0].toString(16).padStart(2, "0")
      }, expected 0x84 or 0xd2 0x84); is this a Nitro attestation document?`,
    );
  }
  const item = decodeCborStrict(body, "COSE_Sign1 document");
  if (!Array.isArray(item) || item.length !== 4) {
    throw malformed("The COSE_Sign1 document is not an array of four items");
  }
  const [protectedBytes, unprotectedHeader, payload, signature] = item;
  for (
    const [name, value] of [
      ["protected header", protectedBytes],
      ["payload", payload],
      ["signature", signature],
    ] as const
  ) {
    if (!(value instanceof Uint8Array)) {
      throw malformed(`The COSE_Sign1 ${name} is not a byte string`);
    }
  }
  let protectedHeader = new Map<unknown, unknown>();
  if (protectedBytes.length > 0) {
    const decoded = decodeCborStrict(protectedBytes, "COSE_Sign1 protected header");
    if (!(decoded instanceof Map)) {
      throw malformed("The COSE_Sign1 protected header is not a CBOR map");
    }
    protectedHeader = decoded;
  }
  return {
    tagged,
    protectedBytes,
    protectedHeader,
    unprotectedHeader,
    payload,
    signature,
  };
}

/**
 * The bytes a COSE_Sign1 signature covers (RFC 9052 §4.4):
 * `["Signature1", protected, external_aad, payload]`, deterministically encoded.
 */
export function coseSign1ToBeSigned(
  sign1: Pick<CoseSign1, "protectedBytes" | "payload">,
  externalAad: Uint8Array = new Uint8Array(0),
): Uint8Array {
  return encodeCbor(["Signature1", sign1.protectedBytes, externalAad, sign1.payload]);
}

/** The `alg` of the protected header, or undefined when absent or not an integer. */
export function coseAlgorithm(sign1: Pick<CoseSign1, "protectedHeader">): number | undefined {
  const alg = sign1.protectedHeader.get(COSE_HEADER_ALG);
  return typeof alg === "number" ? alg : undefined;
}

/**
 * Verifies a COSE_Sign1's ECDSA signature with `key` (an ECDSA public key
 * on the algorithm's curve). False when the algorithm is not ES256/384/512,
 * the signature has the wrong length, or it does not verify.
 */
export async function verifyCoseSign1(
  sign1: CoseSign1,
  key: CryptoKey,
  options: { externalAad?: Uint8Array } = {},
): Promise<boolean> {
  const alg = coseAlgorithm(sign1);
  const params = alg === undefined ? undefined : COSE_ECDSA_ALGORITHMS[alg];
  if (params === undefined || sign1.signature.length !== params.size) return false;
  try {
    return await crypto.subtle.verify(
      { name: "ECDSA", hash: params.hash },
      key,
      sign1.signature.slice(),
      coseSign1ToBeSigned(sign1, options.externalAad).slice(),
    );
  } catch {
    return false; // a key on another curve
  }
}

/**
 * Signs `payload` into an untagged COSE_Sign1 with ECDSA (`alg` ES256, ES384
 * or ES512 matching the key's curve), protected header `{1: alg}` and the
 * given unprotected header (an empty map by default). Used for tests and the
 * simulated platforms.
 */
export async function signCoseSign1(
  payload: Uint8Array,
  key: CryptoKey,
  options: { alg?: number; unprotected?: unknown; tagged?: boolean } = {},
): Promise<Uint8Array> {
  const alg = options.alg ?? COSE_ALG_ES384;
  const params = COSE_ECDSA_ALGORITHMS[alg];
  if (params === undefined) throw new RangeError(`COSE algorithm ${alg} is not supported`);
  const protectedBytes = encodeCbor(new Map([[COSE_HEADER_ALG, alg]]));
  const signature = new Uint8Array(
    await crypto.subtle.sign(
      { name: "ECDSA", hash: params.hash },
      key,
      coseSign1ToBeSigned({ protectedBytes, payload }).slice(),
    ),
  );
  const unprotected = "unprotected" in options ? options.unprotected : new Map();
  const body = encodeCbor([protectedBytes, unprotected, payload, signature]);
  if (!options.tagged) return body;
  const out = new Uint8Array(body.length + 1);
  out[0] = 0xd2;
  out.set(body, 1);
  return out;
}
