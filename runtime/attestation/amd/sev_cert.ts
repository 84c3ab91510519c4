/**
 * Legacy SEV (SEV/SEV-ES, not SNP) platform certificates, as AMD's SEV API
 * (#55766) defines them:
 *
 * - Appendix B, the AMD-format CA certificate of the ARK (AMD Root Key) and
 *   ASK (AMD SEV Key): a 64-byte header, then PUBEXP, MODULUS and SIGNATURE,
 *   each little-endian; 832 bytes for RSA-2048 keys (Naples), 1600 for
 *   RSA-4096 (Rome and later). Signed bytes: from 0 to the end of MODULUS.
 * - Appendix C, the SEV certificate of the PDH, PEK, OCA and CEK: a fixed
 *   0x824 bytes with a public key and two signature slots. Signed bytes:
 *   `[0x000, 0x414)`.
 *
 * Parsing is strict: a wrong size (such as AMD's truncated Naples ARK, 576
 * bytes without its signature), an unknown version, curve or algorithm, or
 * non-zero reserved bytes throw MalformedEvidenceError (exit status 65).
 *
 * @module
 */
import { defineLayout, FieldReader, isAllZero, reversed } from "../_bytes.ts";
import { MalformedEvidenceError } from "../result.ts";

/** Size of a SEV certificate (PDH, PEK, OCA, CEK): 0x824 bytes. */
export const SEV_CERT_SIZE = 0x824;
/** End of the signed bytes of a SEV certificate: `[0, 0x414)`. */
export const SEV_CERT_SIGNED_END = 0x414;
/** Size of an AMD CA certificate with an RSA-2048 key (Naples). */
export const AMD_CA_CERT_SIZE_2048 = 0x340;
/** Size of an AMD CA certificate with an RSA-4096 key (Rome, Milan, Genoa, Turin). */
export const AMD_CA_CERT_SIZE_4096 = 0x640;
/** Size of the AMD CA certificate header, before PUBEXP. */
export const AMD_CA_HEADER_SIZE = 0x40;

/** KEY_USAGE / PUBKEY_USAGE codes (appendix B and C). */
export const SEV_USAGE = {
  /** AMD Root Key. */
  ark: 0x0000,
  /** AMD SEV Key. */
  ask: 0x0013,
  /** An empty signature slot. */
  invalid: 0x1000,
  /** Owner Certificate Authority. */
  oca: 0x1001,
  /** Platform Endorsement Key. */
  pek: 0x1002,
  /** Platform Diffie-Hellman key. */
  pdh: 0x1003,
  /** Chip Endorsement Key. */
  cek: 0x1004,
} as const;

/** PUBKEY_ALGO / SIG_ALGO codes (appendix C). */
export const SEV_ALGO = {
  /** No algorithm (an empty slot). */
  none: 0x0000,
  /** RSA-PSS with SHA-256. */
  rsaSha256: 0x0001,
  /** ECDSA with SHA-256. */
  ecdsaSha256: 0x0002,
  /** ECDH (key agreement) with SHA-256. */
  ecdhSha256: 0x0003,
  /** RSA-PSS with SHA-384. */
  rsaSha384: 0x0101,
  /** ECDSA with SHA-384. */
  ecdsaSha384: 0x0102,
  /** ECDH with SHA-384. */
  ecdhSha384: 0x0103,
} as const;

const USAGE_NAMES: Record<number, string> = {
  0x0000: "ARK",
  0x0013: "ASK",
  0x1000: "invalid",
  0x1001: "OCA",
  0x1002: "PEK",
  0x1003: "PDH",
  0x1004: "CEK",
};

const ALGO_NAMES: Record<number, string> = {
  0x0000: "none",
  0x0001: "RSA-SHA256",
  0x0002: "ECDSA-SHA256",
  0x0003: "ECDH-SHA256",
  0x0101: "RSA-SHA384",
  0x0102: "ECDSA-SHA384",
  0x0103: "ECDH-SHA384",
};

/** The name of a usage code ("PDH", "ASK", ...), or its hex when unknown. */
export function sevUsageName(usage: number): string {
  return USAGE_NAMES[usage] ?? `0x${usage.toString(16)}`;
}

/** The name of an algorithm code ("ECDSA-SHA256", ...), or its hex when unknown. */
export function sevAlgoName(algo: number): string {
  return ALGO_NAMES[algo] ?? `0x${algo.toString(16)}`;
}

/** Appendix C: the SEV certificate. */
export const SEV_CERT_LAYOUT = defineLayout("SEV certificate", {
  size: SEV_CERT_SIZE,
  fields: [
    { name: "version", offset: 0x000, size: 4 }, // VERSION
    { name: "apiMajor", offset: 0x004, size: 1 }, // API_MAJOR
    { name: "apiMinor", offset: 0x005, size: 1 }, // API_MINOR
    { name: "reserved0", offset: 0x006, size: 2 },
    { name: "pubkeyUsage", offset: 0x008, size: 4 }, // PUBKEY_USAGE
    { name: "pubkeyAlgo", offset: 0x00c, size: 4 }, // PUBKEY_ALGO
    { name: "pubkey", offset: 0x010, size: 0x404 }, // PUBKEY
    { name: "sig1Usage", offset: 0x414, size: 4 }, // SIG1_USAGE
    { name: "sig1Algo", offset: 0x418, size: 4 }, // SIG1_ALGO
    { name: "sig1", offset: 0x41c, size: 0x200 }, // SIG1
    { name: "sig2Usage", offset: 0x61c, size: 4 }, // SIG2_USAGE
    { name: "sig2Algo", offset: 0x620, size: 4 }, // SIG2_ALGO
    { name: "sig2", offset: 0x624, size: 0x200 }, // SIG2
  ],
});

/** Appendix C: an ECDSA/ECDH public key inside PUBKEY. */
export const SEV_EC_KEY_LAYOUT = defineLayout("SEV EC public key", {
  size: 0x404,
  fields: [
    { name: "curve", offset: 0x00, size: 4 }, // CURVE
    { name: "qx", offset: 0x04, size: 72 }, // QX, little-endian
    { name: "qy", offset: 0x4c, size: 72 }, // QY, little-endian
    { name: "reserved", offset: 0x94, size: 0x404 - 0x94 },
  ],
});

/** Appendix C: an RSA public key inside PUBKEY. */
export const SEV_RSA_KEY_LAYOUT = defineLayout("SEV RSA public key", {
  size: 0x404,
  fields: [
    { name: "modulusSize", offset: 0x000, size: 4 }, // MODULUS_SIZE in bits
    { name: "pubexp", offset: 0x004, size: 0x200 }, // PUBEXP, little-endian
    { name: "modulus", offset: 0x204, size: 0x200 }, // MODULUS, little-endian
  ],
});

/** Appendix C: an ECDSA signature inside a signature slot. */
export const SEV_ECDSA_SIG_LAYOUT = defineLayout("SEV ECDSA signature", {
  size: 0x200,
  fields: [
    { name: "r", offset: 0x00, size: 72 }, // R, little-endian
    { name: "s", offset: 0x48, size: 72 }, // S, little-endian
    { name: "reserved", offset: 0x90, size: 0x200 - 0x90 },
  ],
});

/** Appendix B: the AMD CA certificate header. */
export const AMD_CA_HEADER_LAYOUT = defineLayout("AMD CA certificate", {
  size: AMD_CA_HEADER_SIZE,
  fields: [
    { name: "version", offset: 0x00, size: 4 }, // VERSION
    { name: "keyId", offset: 0x04, size: 16 }, // KEY_ID
    { name: "certifyingId", offset: 0x14, size: 16 }, // CERTIFYING_ID
    { name: "keyUsage", offset: 0x24, size: 4 }, // KEY_USAGE
    { name: "reserved", offset: 0x28, size: 16 },
    { name: "pubexpSize", offset: 0x38, size: 4 }, // PUBEXP_SIZE in bits
    { name: "modulusSize", offset: 0x3c, size: 4 }, // MODULUS_SIZE in bits
  ],
});

/** An elliptic-curve public key, big-endian coordinates. */
export interface SevEcKey {
  /** "ec". */
  kind: "ec";
  /** The curve: P-384 (code 2) or P-256 (code 1). */
  curve: "P-256" | "P-384";
  /** X, big-endian, the curve's size. */
  x: Uint8Array;
  /** Y, big-endian, the curve's size. */
  y: Uint8Array;
  /**
   * True when the bytes beyond the curve's size in QX and QY, and the
   * reserved bytes after them, are zero (they are signed, so a signature
   * check catches a change; the format check reports it).
   */
  paddingZero: boolean;
}

/** An RSA public key, big-endian integers without leading zeros. */
export interface SevRsaKey {
  /** "rsa". */
  kind: "rsa";
  /** Modulus size in bits. */
  bits: number;
  /** Public exponent, big-endian. */
  exponent: Uint8Array;
  /** Modulus, big-endian. */
  modulus: Uint8Array;
}

/** A public key of a SEV or AMD CA certificate. */
export type SevPublicKey = SevEcKey | SevRsaKey;

/** One signature slot of a SEV certificate. */
export interface SevSignatureSlot {
  /** The slot: 1 or 2. */
  slot: 1 | 2;
  /** The signer's usage (SIGn_USAGE); 0x1000 for an empty slot. */
  usage: number;
  /** The algorithm (SIGn_ALGO); 0 for an empty slot. */
  algo: number;
  /** The raw 0x200 signature bytes, as stored (little-endian). */
  raw: Uint8Array;
  /** True when the slot holds no signature. */
  empty: boolean;
}

/** A parsed SEV certificate (PDH, PEK, OCA or CEK). */
export interface SevCert {
  /** The certificate's 0x824 bytes (a copy). */
  bytes: Uint8Array;
  /** VERSION (1). */
  version: number;
  /** API_MAJOR of the firmware that made it. */
  apiMajor: number;
  /** API_MINOR. */
  apiMinor: number;
  /** PUBKEY_USAGE. */
  usage: number;
  /** PUBKEY_ALGO. */
  algo: number;
  /** The public key. */
  publicKey: SevPublicKey;
  /** The two signature slots. */
  signatures: [SevSignatureSlot, SevSignatureSlot];
  /** The signed bytes, `[0, 0x414)`. */
  signed: Uint8Array;
}

/** A parsed AMD CA certificate (ARK or ASK). */
export interface AmdCaCert {
  /** The certificate's bytes (a copy). */
  bytes: Uint8Array;
  /** VERSION (1). */
  version: number;
  /** KEY_ID, 16 bytes. */
  keyId: Uint8Array;
  /** CERTIFYING_ID: the signer's KEY_ID (equal to KEY_ID when self-signed). */
  certifyingId: Uint8Array;
  /** KEY_USAGE: 0 (ARK) or 0x13 (ASK). */
  usage: number;
  /** The RSA public key. */
  publicKey: SevRsaKey;
  /** The signature, big-endian (already byte-reversed), MODULUS_SIZE/8 bytes. */
  signature: Uint8Array;
  /** The signed bytes: header, PUBEXP and MODULUS. */
  signed: Uint8Array;
}

function stripLeadingZeros(bytes: Uint8Array): Uint8Array {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  return bytes.slice(i);
}

function hexWord(value: number): string {
  return `0x${value.toString(16).padStart(4, "0")}`;
}

function parseEcKey(pubkey: Uint8Array, what: string): SevEcKey {
  const f = new FieldReader(pubkey, SEV_EC_KEY_LAYOUT);
  const code = f.uint("curve");
  const curve = code === 2 ? "P-384" : code === 1 ? "P-256" : undefined;
  if (curve === undefined) {
    throw new MalformedEvidenceError(
      `The ${what}'s EC curve ${code} is neither 1 (P-256) nor 2 (P-384)`,
    );
  }
  const size = curve === "P-384" ? 48 : 32;
  const qx = f.view("qx");
  const qy = f.view("qy");
  return {
    kind: "ec",
    curve,
    x: reversed(qx.subarray(0, size)),
    y: reversed(qy.subarray(0, size)),
    paddingZero: isAllZero(qx.subarray(size)) && isAllZero(qy.subarray(size)) &&
      f.isZero("reserved"),
  };
}

function parseRsaKey(pubkey: Uint8Array, what: string): SevRsaKey {
  const f = new FieldReader(pubkey, SEV_RSA_KEY_LAYOUT);
  const bits = f.uint("modulusSize");
  if (bits !== 2048 && bits !== 4096) {
    throw new MalformedEvidenceError(
      `The ${what}'s RSA modulus size ${bits} is neither 2048 nor 4096 bits`,
    );
  }
  return {
    kind: "rsa",
    bits,
    exponent: stripLeadingZeros(reversed(f.view("pubexp"))),
    modulus: stripLeadingZeros(reversed(f.view("modulus"))),
  };
}

/**
 * Parses a SEV certificate (appendix C). `what` names it in errors ("PDH",
 * "the pek.cert file"). Throws MalformedEvidenceError unless it is exactly
 * 0x824 bytes of version 1 with a known usage and algorithm and a well-formed
 * key.
 */
export function parseSevCert(bytes: Uint8Array, what = "SEV certificate"): SevCert {
  if (bytes.length !== SEV_CERT_SIZE) {
    throw new MalformedEvidenceError(
      `The ${what} is ${bytes.length} bytes, not ${SEV_CERT_SIZE} (0x824)` +
        (bytes.length < SEV_CERT_SIZE ? ": it is truncated" : "") +
        `; pass a SEV certificate as the firmware exports it (PDH_CERT_EXPORT)`,
    );
  }
  const copy = bytes.slice();
  const f = new FieldReader(copy, SEV_CERT_LAYOUT);
  const version = f.uint("version");
  if (version !== 1) {
    throw new MalformedEvidenceError(`The ${what} has version ${version}, not 1`);
  }
  const usage = f.uint("pubkeyUsage");
  if (![0x1001, 0x1002, 0x1003, 0x1004].includes(usage)) {
    throw new MalformedEvidenceError(
      `The ${what}'s key usage ${hexWord(usage)} is not OCA, PEK, PDH or CEK (0x1001-0x1004)`,
    );
  }
  const algo = f.uint("pubkeyAlgo");
  if (!(algo in ALGO_NAMES) || algo === 0) {
    throw new MalformedEvidenceError(`The ${what}'s key algorithm ${hexWord(algo)} is unknown`);
  }
  const isRsa = algo === SEV_ALGO.rsaSha256 || algo === SEV_ALGO.rsaSha384;
  const publicKey = isRsa
    ? parseRsaKey(f.view("pubkey"), what)
    : parseEcKey(f.view("pubkey"), what);
  const slot = (n: 1 | 2): SevSignatureSlot => {
    const u = f.uint(n === 1 ? "sig1Usage" : "sig2Usage");
    const a = f.uint(n === 1 ? "sig1Algo" : "sig2Algo");
    if (!(a in ALGO_NAMES)) {
      throw new MalformedEvidenceError(
        `The ${what}'s signature ${n} algorithm ${hexWord(a)} is unknown`,
      );
    }
    return {
      slot: n,
      usage: u,
      algo: a,
      raw: f.copy(n === 1 ? "sig1" : "sig2"),
      empty: u === SEV_USAGE.invalid || a === SEV_ALGO.none,
    };
  };
  return {
    bytes: copy,
    version,
    apiMajor: f.uint("apiMajor"),
    apiMinor: f.uint("apiMinor"),
    usage,
    algo,
    publicKey,
    signatures: [slot(1), slot(2)],
    signed: copy.subarray(0, SEV_CERT_SIGNED_END),
  };
}

/**
 * Parses an AMD-format CA certificate (appendix B): the ARK or ASK. Throws
 * MalformedEvidenceError unless its size is exactly header + PUBEXP +
 * MODULUS + SIGNATURE (832 or 1600 bytes); a shorter one, such as AMD's
 * published Naples ARK without its signature, is rejected as truncated.
 */
export function parseAmdCaCert(bytes: Uint8Array, what = "AMD CA certificate"): AmdCaCert {
  if (bytes.length < AMD_CA_HEADER_SIZE) {
    throw new MalformedEvidenceError(
      `The ${what} is ${bytes.length} bytes, shorter than its ${AMD_CA_HEADER_SIZE}-byte ` +
        `header: it is truncated; pass the ARK or ASK in AMD's format (832 or 1600 bytes)`,
    );
  }
  const copy = bytes.slice();
  const f = new FieldReader(copy, AMD_CA_HEADER_LAYOUT);
  const version = f.uint("version");
  if (version !== 1) {
    throw new MalformedEvidenceError(`The ${what} has version ${version}, not 1`);
  }
  const usage = f.uint("keyUsage");
  if (usage !== SEV_USAGE.ark && usage !== SEV_USAGE.ask) {
    throw new MalformedEvidenceError(
      `The ${what}'s key usage ${hexWord(usage)} is neither ARK (0x0000) nor ASK (0x0013)`,
    );
  }
  if (!f.isZero("reserved")) {
    throw new MalformedEvidenceError(`The ${what} has non-zero reserved bytes at 0x28`);
  }
  const expBits = f.uint("pubexpSize");
  const modBits = f.uint("modulusSize");
  for (const [name, bits] of [["PUBEXP_SIZE", expBits], ["MODULUS_SIZE", modBits]] as const) {
    if (bits !== 2048 && bits !== 4096) {
      throw new MalformedEvidenceError(
        `The ${what}'s ${name} is ${bits} bits, neither 2048 nor 4096`,
      );
    }
  }
  const expLen = expBits / 8;
  const modLen = modBits / 8;
  const size = AMD_CA_HEADER_SIZE + expLen + 2 * modLen;
  if (bytes.length !== size) {
    throw new MalformedEvidenceError(
      `The ${what} is ${bytes.length} bytes, not the ${size} its ${modBits}-bit key needs` +
        (bytes.length < size
          ? `: it is truncated (${size - bytes.length} bytes missing${
            bytes.length === size - modLen ? ", the whole signature" : ""
          })`
          : ": it has trailing bytes") +
        `; pass a complete ARK or ASK`,
    );
  }
  const expStart = AMD_CA_HEADER_SIZE;
  const modStart = expStart + expLen;
  const sigStart = modStart + modLen;
  return {
    bytes: copy,
    version,
    keyId: f.copy("keyId"),
    certifyingId: f.copy("certifyingId"),
    usage,
    publicKey: {
      kind: "rsa",
      bits: modBits,
      exponent: stripLeadingZeros(reversed(copy.subarray(expStart, modStart))),
      modulus: stripLeadingZeros(reversed(copy.subarray(modStart, sigStart))),
    },
    signature: reversed(copy.subarray(sigStart, size)),
    signed: copy.subarray(0, sigStart),
  };
}

/** KEY_ID of an AMD CA certificate as hex, for claims. */
export function amdKeyIdHex(cert: AmdCaCert): string {
  return cert.keyId.toHex();
}

/**
 * True when bytes look like legacy SEV certificates: one to eight 0x824-byte
 * certificates of version 1, the first with an OCA, PEK, PDH or CEK usage
 * (a PDH alone, or PDH‖PEK‖OCA‖CEK).
 */
export function looksLikeSevCerts(bytes: Uint8Array): boolean {
  if (bytes.length === 0 || bytes.length % SEV_CERT_SIZE !== 0) return false;
  if (bytes.length > 8 * SEV_CERT_SIZE) return false;
  const first = new FieldReader(bytes, SEV_CERT_LAYOUT);
  const usage = first.uint("pubkeyUsage");
  return first.uint("version") === 1 && usage >= SEV_USAGE.oca && usage <= SEV_USAGE.cek;
}
