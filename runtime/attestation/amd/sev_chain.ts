/**
 * Verifies a legacy SEV (SEV/SEV-ES) platform certificate chain, as the AMD
 * SEV API (#55766, appendices B and C) defines it:
 *
 * ```text
 * ARK (self-signed) → ASK → CEK ─┐
 *                 OCA (self) ────┴→ PEK → PDH
 * ```
 *
 * The PDH is the platform's Diffie-Hellman key a guest owner uses to launch a
 * guest; the chain proves it was made by a genuine AMD secure processor
 * (CEK ← ASK ← ARK) and is endorsed by the platform's owner (OCA). ECDSA
 * signatures in SEV certificates use SHA-256 with P-384 keys (algo 0x2);
 * the ASK signs the CEK with RSA-PSS (SHA-256 for the 2048-bit Naples ASK,
 * SHA-384 for 4096-bit ASKs, salt = hash length). Every signature is stored
 * little-endian. The ARK used must equal an embedded (pinned) one: a
 * supplied ARK is compared, never trusted by itself.
 *
 * @module
 */
import { isAllZero, reversed } from "../_bytes.ts";
import { bytesEqual } from "../../bytes.ts";
import { cachedParse } from "../_cert_cache.ts";
import { MalformedEvidenceError, resultFromChecks, type VerificationResult } from "../result.ts";
import type { Check, ClaimMap, SevClaims } from "../result.ts";
import {
  type AmdCaCert,
  parseAmdCaCert,
  parseSevCert,
  SEV_ALGO,
  SEV_CERT_SIZE,
  SEV_USAGE,
  sevAlgoName,
  type SevCert,
  type SevEcKey,
  type SevRsaKey,
  type SevSignatureSlot,
  sevUsageName,
} from "./sev_cert.ts";
import {
  allSevLegacyRoots,
  SEV_GENERATIONS,
  type SevGeneration,
  sevLegacyRoots,
} from "./sev_legacy_roots.ts";

/** Whether bytes look like legacy SEV certificates (sev_cert.ts; here too for existing callers). */
export { looksLikeSevCerts } from "./sev_cert.ts";

/** The certificates of a legacy SEV chain, raw bytes. */
export interface SevChainCerts {
  /** The Platform Diffie-Hellman key's certificate (0x824 bytes). */
  pdh: Uint8Array;
  /** The Platform Endorsement Key's certificate. */
  pek: Uint8Array;
  /** The Owner Certificate Authority's certificate. */
  oca: Uint8Array;
  /** The Chip Endorsement Key's certificate. */
  cek: Uint8Array;
  /** The ASK in AMD's format; the embedded one of the generation when absent. */
  ask?: Uint8Array;
  /** The ARK in AMD's format; compared with the pinned one, never trusted by itself. */
  ark?: Uint8Array;
}

/** Options of {@link verifySevChain}. */
export interface SevChainOptions {
  /**
   * Accepted for symmetry with the other formats; legacy SEV certificates
   * carry no validity period, so no check depends on it.
   */
  at?: Date;
  /** The processor generation; "auto" (the default) finds it from the ASK or the CEK. */
  generation?: SevGeneration | "auto";
  /** More ARKs to pin (AMD format), e.g. a test root; AMD's are always pinned. */
  trustedRoots?: readonly Uint8Array[];
}

/** The sizes an AMD CA certificate (ARK or ASK) can have. */
const CA_SIZES = [0x340, 0x640];

/**
 * Sorts blobs into a SEV chain by what each certificate says it is (its
 * usage): SEV certificates (0x824 bytes each, or several concatenated, as
 * PDH_CERT_EXPORT's PEK‖OCA‖CEK) and AMD CA certificates (an ARK or ASK, or
 * AMD's `ask_ark_<gen>.cert`, an ASK followed by an ARK). Identical
 * duplicates are merged. Throws MalformedEvidenceError for a blob of another
 * size, two different certificates of one kind, or a missing PDH, PEK, OCA or
 * CEK.
 */
export function sevChainFromBlobs(blobs: readonly Uint8Array[]): SevChainCerts {
  const found: Partial<Record<keyof SevChainCerts, Uint8Array>> = {};
  const put = (kind: keyof SevChainCerts, bytes: Uint8Array) => {
    const had = found[kind];
    if (had && !bytesEqual(had, bytes)) {
      throw new MalformedEvidenceError(
        `Two different ${kind.toUpperCase()} certificates were given; pass one`,
      );
    }
    found[kind] = bytes;
  };
  const putCa = (bytes: Uint8Array) => {
    const ca = parseAmdCaCert(bytes, "AMD CA certificate");
    put(ca.usage === SEV_USAGE.ark ? "ark" : "ask", bytes);
  };
  for (const blob of blobs) {
    if (blob.length > 0 && blob.length % SEV_CERT_SIZE === 0 && blob.length <= 8 * SEV_CERT_SIZE) {
      for (let off = 0; off < blob.length; off += SEV_CERT_SIZE) {
        const bytes = blob.subarray(off, off + SEV_CERT_SIZE);
        const cert = parseSevCert(bytes, "SEV certificate");
        const kind = ({ 0x1001: "oca", 0x1002: "pek", 0x1003: "pdh", 0x1004: "cek" } as const)[
          cert.usage as 0x1001
        ];
        put(kind, bytes);
      }
    } else if (CA_SIZES.includes(blob.length)) {
      putCa(blob);
    } else if (CA_SIZES.some((n) => blob.length === 2 * n)) {
      putCa(blob.subarray(0, blob.length / 2));
      putCa(blob.subarray(blob.length / 2));
    } else if (blob.length >= 0x40 && blob[0] === 1 && (blob[0x24] === 0 || blob[0x24] === 0x13)) {
      putCa(blob); // an ARK or ASK of the wrong size: the parser says truncated or trailing
    } else {
      throw new MalformedEvidenceError(
        `A legacy SEV input is ${blob.length} bytes: not a SEV certificate (2084 bytes, or a ` +
          `multiple) nor an AMD ARK or ASK (832 or 1600 bytes); pass the files the firmware ` +
          `exports (PDH_CERT_EXPORT) and AMD publishes`,
      );
    }
  }
  for (const kind of ["pdh", "pek", "oca", "cek"] as const) {
    if (!found[kind]) {
      throw new MalformedEvidenceError(
        `The legacy SEV chain has no ${kind.toUpperCase()} certificate; pass pdh.cert, ` +
          `pek.cert, oca.cert and cek.cert`,
      );
    }
  }
  return found as SevChainCerts;
}

/** JWK members are unpadded base64url (RFC 7518 §6). */
const BASE64URL = { alphabet: "base64url", omitPadding: true } as const;

async function importRsaPss(key: SevRsaKey, hash: string): Promise<CryptoKey> {
  return await crypto.subtle.importKey(
    "jwk",
    {
      kty: "RSA",
      n: key.modulus.toBase64(BASE64URL),
      e: key.exponent.toBase64(BASE64URL),
      ext: true,
    },
    { name: "RSA-PSS", hash },
    false,
    ["verify"],
  );
}

/** RSA-PSS with the hash AMD uses for the key's size: SHA-256 (2048) or SHA-384 (4096). */
function rsaHashFor(key: SevRsaKey): { hash: "SHA-256" | "SHA-384"; salt: number } {
  return key.bits === 2048 ? { hash: "SHA-256", salt: 32 } : { hash: "SHA-384", salt: 48 };
}

async function verifyRsaPss(
  key: SevRsaKey,
  signature: Uint8Array,
  data: Uint8Array,
): Promise<boolean> {
  try {
    const { hash, salt } = rsaHashFor(key);
    const k = await importRsaPss(key, hash);
    return await crypto.subtle.verify(
      { name: "RSA-PSS", saltLength: salt },
      k,
      signature as Uint8Array<ArrayBuffer>,
      data as Uint8Array<ArrayBuffer>,
    );
  } catch {
    return false;
  }
}

/** An outcome of one signature check: whether it holds, and why not. */
export interface SigOutcome {
  /** True when the signature is valid. */
  ok: boolean;
  /** What was checked, or why it failed; one line. */
  detail: string;
}

/**
 * Checks the signature in `slot` of `signed` by `signer`'s key (a SEV
 * certificate or an AMD CA certificate), never throwing for bad input.
 */
async function checkSlot(
  signed: SevCert,
  slot: SevSignatureSlot,
  signer: SevCert | AmdCaCert,
  signerUsage: number,
): Promise<SigOutcome> {
  const where = `slot ${slot.slot}`;
  if (slot.empty) return { ok: false, detail: `${where} is empty` };
  if (slot.usage !== signerUsage) {
    return {
      ok: false,
      detail: `${where} names signer ${sevUsageName(slot.usage)}, not ${sevUsageName(signerUsage)}`,
    };
  }
  const key = signer.publicKey;
  if (key.kind === "ec") return await checkEcdsaSlot(signed, slot, key);
  return await checkRsaSlot(signed, slot, key);
}

/** Checks an ECDSA signature slot: R and S little-endian in 72-byte fields, then zeros. */
async function checkEcdsaSlot(
  signed: SevCert,
  slot: SevSignatureSlot,
  key: SevEcKey,
): Promise<SigOutcome> {
  const where = `slot ${slot.slot}`;
  if (slot.algo !== SEV_ALGO.ecdsaSha256 && slot.algo !== SEV_ALGO.ecdsaSha384) {
    return { ok: false, detail: `${where} algorithm ${sevAlgoName(slot.algo)} is not ECDSA` };
  }
  const size = key.curve === "P-384" ? 48 : 32;
  const r = slot.raw.subarray(0, 72);
  const s = slot.raw.subarray(72, 144);
  if (
    !isAllZero(r.subarray(size)) || !isAllZero(s.subarray(size)) ||
    !isAllZero(slot.raw.subarray(144))
  ) {
    return { ok: false, detail: `${where} has non-zero bytes beyond R and S` };
  }
  const raw = new Uint8Array(2 * size);
  raw.set(reversed(r.subarray(0, size)));
  raw.set(reversed(s.subarray(0, size)), size);
  const hash = slot.algo === SEV_ALGO.ecdsaSha256 ? "SHA-256" : "SHA-384";
  try {
    const k = await crypto.subtle.importKey(
      "jwk",
      {
        kty: "EC",
        crv: key.curve,
        x: key.x.toBase64(BASE64URL),
        y: key.y.toBase64(BASE64URL),
        ext: true,
      },
      { name: "ECDSA", namedCurve: key.curve },
      false,
      ["verify"],
    );
    const ok = await crypto.subtle.verify(
      { name: "ECDSA", hash },
      k,
      raw,
      signed.signed as Uint8Array<ArrayBuffer>,
    );
    return {
      ok,
      detail: `${where}, ECDSA ${key.curve} with ${hash}: ${ok ? "valid" : "invalid"}`,
    };
  } catch (error) {
    return {
      ok: false,
      detail: `${where}: the signer's key is not a valid ${key.curve} point (${
        error instanceof Error ? error.message : error
      })`,
    };
  }
}

/** Checks an RSA-PSS signature slot: the signature little-endian, then zeros. */
async function checkRsaSlot(
  signed: SevCert,
  slot: SevSignatureSlot,
  key: SevRsaKey,
): Promise<SigOutcome> {
  const where = `slot ${slot.slot}`;
  const { hash } = rsaHashFor(key);
  const want = key.bits === 2048 ? SEV_ALGO.rsaSha256 : SEV_ALGO.rsaSha384;
  if (slot.algo !== want) {
    return {
      ok: false,
      detail: `${where} algorithm ${sevAlgoName(slot.algo)} does not fit a ${key.bits}-bit ` +
        `RSA signer (expected ${sevAlgoName(want)})`,
    };
  }
  const len = key.bits / 8;
  if (!isAllZero(slot.raw.subarray(len))) {
    return { ok: false, detail: `${where} has non-zero bytes beyond the ${len}-byte signature` };
  }
  const ok = await verifyRsaPss(key, reversed(slot.raw.subarray(0, len)), signed.signed);
  return {
    ok,
    detail: `${where}, RSA-PSS ${key.bits}-bit with ${hash}: ${ok ? "valid" : "invalid"}`,
  };
}

/**
 * Checks signature slot `slot` (1 or 2) of a SEV certificate against
 * `signer` (a SEV certificate, or the ASK for a CEK), which the slot must
 * name by usage. Never throws for bad input: a wrong signer, algorithm or
 * non-zero padding is a failed outcome. The chain's signature checks use it.
 */
export async function checkSevSignature(
  signed: SevCert,
  { slot, signer }: {
    /** Which signature slot of `signed` to check. */
    slot: 1 | 2;
    /** The certificate whose key made the signature. */
    signer: SevCert | AmdCaCert;
  },
): Promise<SigOutcome> {
  return await checkSlot(signed, signed.signatures[slot - 1], signer, signer.usage);
}

/**
 * Checks that an AMD CA certificate (ASK or ARK) is signed by `signer` (the
 * ARK): CERTIFYING_ID equals the signer's KEY_ID and the RSA-PSS signature
 * (SHA-256 for 2048-bit, SHA-384 for 4096-bit keys) is valid. Never throws.
 */
export async function checkAmdCaSignature(
  signed: AmdCaCert,
  signer: AmdCaCert,
): Promise<SigOutcome> {
  return await checkCa(signed, signer);
}

async function checkCa(signed: AmdCaCert, signer: AmdCaCert): Promise<SigOutcome> {
  if (!bytesEqual(signed.certifyingId, signer.keyId)) {
    return {
      ok: false,
      detail:
        `CERTIFYING_ID ${signed.certifyingId.toHex()} is not the signer's KEY_ID ${signer.keyId.toHex()}`,
    };
  }
  const ok = await verifyRsaPss(signer.publicKey, signed.signature, signed.signed);
  const { hash } = rsaHashFor(signer.publicKey);
  return {
    ok,
    detail: `RSA-PSS ${signer.publicKey.bits}-bit with ${hash}, KEY_ID ${signer.keyId.toHex()}: ${
      ok ? "valid" : "invalid"
    }`,
  };
}

function check(id: string, description: string, outcome: SigOutcome): Check {
  return { id, description, ok: outcome.ok, detail: outcome.detail };
}

function certClaims(cert: SevCert): ClaimMap {
  return {
    apiVersion: `${cert.apiMajor}.${cert.apiMinor}`,
    usage: `0x${cert.usage.toString(16).padStart(4, "0")}`,
    algo: `0x${cert.algo.toString(16)}`,
    usageName: sevUsageName(cert.usage),
    algoName: sevAlgoName(cert.algo),
    ...(cert.publicKey.kind === "ec"
      ? { curve: cert.publicKey.curve }
      : { rsaBits: cert.publicKey.bits }),
  };
}

/**
 * An embedded ARK or ASK, parsed once through the shared certificate cache
 * (supplied certificates are parsed each time: their bytes belong to the
 * caller).
 */
function embeddedCaCert(bytes: Uint8Array, what: string): AmdCaCert {
  return cachedParse("amd-ca", bytes, () => parseAmdCaCert(bytes, what));
}

/** Which generation's embedded ARK/ASK to use, and the ASK to check the CEK with. */
async function chooseGeneration(
  cek: SevCert,
  ask: AmdCaCert | undefined,
  wanted: SevGeneration | "auto",
): Promise<SevGeneration> {
  if (wanted !== "auto") return wanted;
  const roots = allSevLegacyRoots().map((r) => ({
    generation: r.generation,
    ark: embeddedCaCert(r.ark, "embedded ARK"),
    ask: embeddedCaCert(r.ask, "embedded ASK"),
  }));
  if (ask) {
    const byKey = roots.find((r) => bytesEqual(r.ask.keyId, ask.keyId)) ??
      roots.find((r) => bytesEqual(r.ark.keyId, ask.certifyingId));
    if (byKey) return byKey.generation;
  }
  const slot = cek.signatures[0];
  const bits = slot.algo === SEV_ALGO.rsaSha256 ? 2048 : 4096;
  const candidates = roots.filter((r) => r.ask.publicKey.bits === bits);
  for (const r of candidates) {
    if ((await checkSlot(cek, slot, r.ask, SEV_USAGE.ask)).ok) return r.generation;
  }
  return candidates[0]?.generation ?? "naples";
}

/**
 * Verifies a legacy SEV platform chain: PDH ← PEK ← (OCA, CEK), CEK ← ASK ←
 * ARK, and the ARK pinned. Missing ASK and ARK are taken from the embedded
 * ones of the generation (`options.generation`, or found from the supplied
 * ASK or from which embedded ASK signs the CEK). Throws
 * MalformedEvidenceError (exit status 65) when a certificate cannot be parsed
 * (wrong size, truncated, unknown version, usage, algorithm or curve);
 * resolves to a result whose `ok` is false when any check fails.
 */
export async function verifySevChain(
  certs: SevChainCerts,
  options: SevChainOptions = {},
): Promise<VerificationResult> {
  const chain = await parseSevChain(certs, options);
  const checks: Check[] = [
    sevFormatCheck(chain),
    ...await sevSignatureChecks(chain),
    sevRootCheck(chain, options),
  ];
  return resultFromChecks("sev", { checks, claims: sevChainClaims(chain) });
}

/** The parsed certificates of a legacy SEV chain and the generation of its ASK and ARK. */
interface ParsedSevChain {
  pdh: SevCert;
  pek: SevCert;
  oca: SevCert;
  cek: SevCert;
  ask: AmdCaCert;
  ark: AmdCaCert;
  suppliedAsk: boolean;
  suppliedArk: boolean;
  generation: SevGeneration;
}

/** Parses every certificate and takes the missing ASK and ARK from the chosen generation. */
async function parseSevChain(
  certs: SevChainCerts,
  options: SevChainOptions,
): Promise<ParsedSevChain> {
  const pdh = parseSevCert(certs.pdh, "PDH certificate");
  const pek = parseSevCert(certs.pek, "PEK certificate");
  const oca = parseSevCert(certs.oca, "OCA certificate");
  const cek = parseSevCert(certs.cek, "CEK certificate");
  const suppliedAsk = certs.ask ? parseAmdCaCert(certs.ask, "ASK certificate") : undefined;
  const suppliedArk = certs.ark ? parseAmdCaCert(certs.ark, "ARK certificate") : undefined;
  const wanted = options.generation ?? "auto";
  if (wanted !== "auto" && !SEV_GENERATIONS.includes(wanted)) {
    throw new MalformedEvidenceError(
      `Unknown SEV generation "${wanted}"; use one of ${SEV_GENERATIONS.join(", ")} or auto`,
    );
  }
  const generation = await chooseGeneration(cek, suppliedAsk, wanted);
  const embedded = sevLegacyRoots(generation);
  return {
    pdh,
    pek,
    oca,
    cek,
    ask: suppliedAsk ?? embeddedCaCert(embedded.ask, "embedded ASK"),
    ark: suppliedArk ?? embeddedCaCert(embedded.ark, "embedded ARK"),
    suppliedAsk: suppliedAsk !== undefined,
    suppliedArk: suppliedArk !== undefined,
    generation,
  };
}

/** The `format` check: each certificate is what its place in the chain needs. */
function sevFormatCheck({ pdh, pek, oca, cek, ask, ark, generation }: ParsedSevChain): Check {
  const problems: string[] = [];
  const expect = (name: string, cert: SevCert, usage: number, algos: number[]) => {
    if (cert.usage !== usage) {
      problems.push(`${name} has usage ${sevUsageName(cert.usage)}`);
    }
    if (!algos.includes(cert.algo)) {
      problems.push(`${name} has algorithm ${sevAlgoName(cert.algo)}`);
    }
    if (cert.publicKey.kind === "ec" && !cert.publicKey.paddingZero) {
      problems.push(`${name}'s public key has non-zero padding`);
    }
  };
  expect("PDH", pdh, SEV_USAGE.pdh, [SEV_ALGO.ecdhSha256, SEV_ALGO.ecdhSha384]);
  expect("PEK", pek, SEV_USAGE.pek, [SEV_ALGO.ecdsaSha256, SEV_ALGO.ecdsaSha384]);
  expect("OCA", oca, SEV_USAGE.oca, [SEV_ALGO.ecdsaSha256, SEV_ALGO.ecdsaSha384]);
  expect("CEK", cek, SEV_USAGE.cek, [SEV_ALGO.ecdsaSha256, SEV_ALGO.ecdsaSha384]);
  if (ask.usage !== SEV_USAGE.ask) problems.push(`the ASK has usage ${sevUsageName(ask.usage)}`);
  if (ark.usage !== SEV_USAGE.ark) problems.push(`the ARK has usage ${sevUsageName(ark.usage)}`);
  return {
    id: "format",
    description: "The certificates are a PDH, PEK, OCA, CEK, ASK and ARK with fitting keys",
    ok: problems.length === 0,
    detail: problems.length === 0
      ? `SEV certificates version 1; ${generation} ASK and ARK (RSA-${ask.publicKey.bits})`
      : problems.join("; "),
  };
}

/** Every signature of the chain, from the PDH up to the ARK's self-signature. */
async function sevSignatureChecks({ pdh, pek, oca, cek, ask, ark }: ParsedSevChain) {
  return [
    check(
      "pdh-signature",
      "The PEK signed the PDH",
      await checkSlot(pdh, pdh.signatures[0], pek, SEV_USAGE.pek),
    ),
    check(
      "pek-oca-signature",
      "The OCA signed the PEK (signature slot 1)",
      await checkSlot(pek, pek.signatures[0], oca, SEV_USAGE.oca),
    ),
    check(
      "pek-cek-signature",
      "The CEK signed the PEK (signature slot 2)",
      await checkSlot(pek, pek.signatures[1], cek, SEV_USAGE.cek),
    ),
    check(
      "oca-self-signature",
      "The OCA is self-signed (the platform owns itself)",
      await checkSlot(oca, oca.signatures[0], oca, SEV_USAGE.oca),
    ),
    check(
      "cek-signature",
      `AMD's ASK signed the CEK`,
      await checkSlot(cek, cek.signatures[0], ask, SEV_USAGE.ask),
    ),
    check("ask-signature", "The ARK signed the ASK", await checkCa(ask, ark)),
    check("ark-self-signature", "The ARK is self-signed", await checkCa(ark, ark)),
  ];
}

/** The `root` check: the ARK equals the embedded one of its generation or a trusted root. */
function sevRootCheck(
  { ark, generation, suppliedArk }: ParsedSevChain,
  options: SevChainOptions,
): Check {
  const pinned = [sevLegacyRoots(generation).ark, ...(options.trustedRoots ?? [])];
  const pinnedMatch = pinned.some((p) => bytesEqual(p, ark.bytes));
  return {
    id: "root",
    description: "The ARK is AMD's, pinned (a supplied ARK is compared, never trusted)",
    ok: pinnedMatch,
    detail: pinnedMatch
      ? `the ${generation} ARK, KEY_ID ${ark.keyId.toHex()}${suppliedArk ? " (supplied)" : ""}`
      : `the ARK with KEY_ID ${ark.keyId.toHex()} is not AMD's ${generation} ARK nor a ` +
        `trusted root`,
  };
}

/** What a legacy SEV chain says: the generation, each certificate, the PDH key, the AMD key ids. */
function sevChainClaims(chain: ParsedSevChain): SevClaims {
  const { pdh, pek, oca, cek, ask, ark } = chain;
  const pdhKey = pdh.publicKey;
  return {
    generation: chain.generation,
    pdh: certClaims(pdh),
    pek: certClaims(pek),
    oca: certClaims(oca),
    cek: certClaims(cek),
    pdhPublicKey: pdhKey.kind === "ec"
      ? Uint8Array.of(0x04, ...pdhKey.x, ...pdhKey.y)
      : pdhKey.modulus.slice(),
    askKeyId: ask.keyId.slice(),
    askCertifyingId: ask.certifyingId.slice(),
    arkKeyId: ark.keyId.slice(),
    askSupplied: chain.suppliedAsk,
    arkSupplied: chain.suppliedArk,
  };
}
