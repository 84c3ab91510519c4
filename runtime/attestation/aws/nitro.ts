/**
 * Verifies AWS Nitro Enclaves attestation documents: a COSE_Sign1 (ES384)
 * whose payload is a CBOR map of the enclave's PCRs, its signing
 * certificate and the CA bundle that chains that certificate to the AWS
 * Nitro Enclaves root G1. Rules: aws-nitro-enclaves-nsm-api
 * `docs/attestation_process.md` (§3.2 syntactic and semantic validation),
 * with the one known deviation that `user_data` and `nonce` may hold up to
 * 1024 bytes, as real NSM documents do.
 *
 * @module
 */
import { UsageError } from "../../errors.ts";
import type { CertificateFields } from "../../x509_reader.ts";
import {
  type Check,
  type Claims,
  MalformedEvidenceError,
  resultFromChecks,
  type VerificationResult,
} from "../result.ts";
import {
  COSE_ALG_ES384,
  coseAlgorithm,
  type CoseSign1,
  decodeCborStrict,
  parseCoseSign1,
  verifyCoseSign1,
} from "./cose.ts";
import {
  certificateFromDer,
  certificatesFromBytes,
  certificateSummary,
  pemCertificates,
  verifyCertificateChain,
} from "../_x509_chain.ts";
import { AWS_NITRO_ROOT_G1_PEM } from "./aws_roots.ts";

/** Options of {@link verifyNitroDocument}. */
export interface NitroVerifyOptions {
  /** The verification time; certificates are checked against it, never the clock. */
  at: Date;
  /** A policy; only `allowDebug: true` is read here. */
  policy?: unknown;
  /** Roots to trust instead of the AWS Nitro Enclaves root G1 (DER or PEM). */
  trustedRoots?: Uint8Array[];
  /** Unused: a Nitro document carries its own chain. */
  certs?: Uint8Array[];
}

/** How far a document's timestamp may lie after the verification time (clock skew). */
export const NITRO_TIMESTAMP_SKEW_MS = 5 * 60 * 1000;

const AWS_ROOT_DER = pemCertificates(AWS_NITRO_ROOT_G1_PEM, "embedded AWS Nitro root")[0];

function isBytes(v: unknown, min: number, max: number): v is Uint8Array {
  return v instanceof Uint8Array && v.length >= min && v.length <= max;
}

/** The payload fields, as far as they have the right types. */
interface NitroPayload {
  moduleId?: string;
  digest?: string;
  timestamp?: number;
  pcrs: Map<number, Uint8Array>;
  certificate?: Uint8Array;
  cabundle?: Uint8Array[];
  publicKey?: Uint8Array | null;
  userData?: Uint8Array | null;
  nonce?: Uint8Array | null;
}

/** Reads the payload map; returns the fields and every rule it breaks. */
function readPayload(map: Map<unknown, unknown>): { payload: NitroPayload; problems: string[] } {
  const problems: string[] = [];
  const payload: NitroPayload = { pcrs: new Map() };
  const get = (k: string) => map.get(k);
  for (const key of map.keys()) {
    if (typeof key !== "string") problems.push(`a key is not text (${String(key)})`);
  }

  const moduleId = get("module_id");
  if (typeof moduleId === "string" && moduleId.length > 0) payload.moduleId = moduleId;
  else problems.push("module_id is missing or not non-empty text");

  const digest = get("digest");
  if (digest === "SHA384") payload.digest = digest;
  else problems.push(`digest is ${JSON.stringify(String(digest))}, expected "SHA384"`);

  const timestamp = get("timestamp");
  if (typeof timestamp === "number" && Number.isSafeInteger(timestamp) && timestamp > 0) {
    payload.timestamp = timestamp;
  } else problems.push("timestamp is missing or not a positive integer");

  const pcrs = get("pcrs");
  if (pcrs instanceof Map && pcrs.size >= 1 && pcrs.size <= 32) {
    for (const [index, value] of pcrs) {
      if (typeof index !== "number" || !Number.isInteger(index) || index < 0 || index > 31) {
        problems.push(`PCR index ${String(index)} is not 0 to 31`);
      } else if (!(value instanceof Uint8Array) || value.length !== 48) {
        problems.push(
          `PCR${index} is not a 48-byte SHA-384 value (${
            value instanceof Uint8Array ? `${value.length} bytes` : typeof value
          })`,
        );
      } else payload.pcrs.set(index, value);
    }
  } else problems.push("pcrs is missing or not a map of 1 to 32 entries");

  const certificate = get("certificate");
  if (isBytes(certificate, 1, 1024)) payload.certificate = certificate;
  else problems.push("certificate is missing or not 1 to 1024 bytes");

  const cabundle = get("cabundle");
  if (
    Array.isArray(cabundle) && cabundle.length >= 1 &&
    cabundle.every((c) => isBytes(c, 1, 1024))
  ) {
    payload.cabundle = cabundle as Uint8Array[];
  } else {problems.push(
      "cabundle is missing or not a non-empty list of 1 to 1024-byte certificates",
    );}

  for (
    const [key, field, min] of [
      ["public_key", "publicKey", 1],
      ["user_data", "userData", 0],
      ["nonce", "nonce", 0],
    ] as const
  ) {
    const value = get(key);
    if (value === undefined || value === null) payload[field] = null;
    else if (isBytes(value, min, 1024)) payload[field] = value;
    else problems.push(`${key} is not ${min} to 1024 bytes`);
  }
  return { payload, problems };
}

function check(id: string, description: string, ok: boolean, detail?: string): Check {
  return detail === undefined ? { id, description, ok } : { id, description, ok, detail };
}

/** The COSE envelope check: ES384, an unprotected header map, a 96-byte signature. */
function coseCheck(sign1: CoseSign1, claims: Claims): Check {
  const alg = coseAlgorithm(sign1);
  const coseProblems: string[] = [];
  if (alg !== COSE_ALG_ES384) {
    coseProblems.push(`algorithm ${alg ?? "absent"}, expected ES384 (-35)`);
  }
  if (!(sign1.unprotectedHeader instanceof Map)) {
    coseProblems.push(
      `the unprotected header is ${
        sign1.unprotectedHeader === null ? "null" : typeof sign1.unprotectedHeader
      }, not a map`,
    );
  }
  if (sign1.signature.length !== 96) {
    coseProblems.push(`the signature is ${sign1.signature.length} bytes, not 96`);
  }
  const result = check(
    "cose",
    "COSE_Sign1 envelope: ES384 protected header, unprotected header map, 96-byte signature",
    coseProblems.length === 0,
    coseProblems.length === 0 ? (sign1.tagged ? "Tagged" : "Untagged") : coseProblems.join("; "),
  );
  claims.coseTagged = sign1.tagged;

  return result;
}

/** The payload check, recording the payload's claims. */
function payloadStep(
  decoded: Map<unknown, unknown>,
  claims: Claims,
): { payload: NitroPayload; check: Check } {
  const { payload, problems } = readPayload(decoded);
  const result = check(
    "payload",
    "The document has every required field with its type and size",
    problems.length === 0,
    problems.length === 0 ? undefined : problems.join("; "),
  );
  claims.moduleId = payload.moduleId ?? null;
  claims.digest = payload.digest ?? null;
  claims.timestamp = payload.timestamp ?? null;
  claims.time = payload.timestamp === undefined ? null : new Date(payload.timestamp).toISOString();
  const pcrs: Record<string, Uint8Array> = {};
  for (const [i, v] of [...payload.pcrs].sort((a, b) => a[0] - b[0])) pcrs[String(i)] = v.slice();
  claims.pcrs = pcrs;
  claims.measurement = pcrs["0"] ?? null;
  claims.publicKey = payload.publicKey ? payload.publicKey.slice() : null;
  claims.userData = payload.userData ? payload.userData.slice() : null;
  claims.nonce = payload.nonce ? payload.nonce.slice() : null;

  return { payload, check: result };
}

/** The document's signature by its certificate; also returns that certificate. */
async function signatureStep(
  sign1: CoseSign1,
  payload: NitroPayload,
  claims: Claims,
): Promise<{ check: Check; leaf?: CertificateFields }> {
  const leaf = payload.certificate === undefined
    ? undefined
    : certificateFromDer(payload.certificate, "Nitro document certificate");
  let sigOk = false;
  let sigDetail = "The document has no certificate";
  if (leaf !== undefined) {
    claims.certificate = certificateSummary(leaf);
    try {
      const key = await crypto.subtle.importKey(
        "spki",
        leaf.publicKey.spki as Uint8Array<ArrayBuffer>,
        { name: "ECDSA", namedCurve: "P-384" },
        false,
        ["verify"],
      );
      sigOk = await verifyCoseSign1(sign1, key);
      sigDetail = "The signature does not verify with the document's certificate";
    } catch {
      sigDetail = `The certificate "${leaf.subject}" does not hold a P-384 key`;
    }
  }
  const result = check(
    "signature",
    "The document's certificate signed it (COSE ES384 over the Sig_structure)",
    sigOk,
    sigOk ? undefined : sigDetail,
  );
  return { check: result, leaf };
}

/** The chain: certificate ← cabundle[N-1] ← … ← cabundle[0] = root. */
async function chainChecks(payload: NitroPayload, options: NitroVerifyOptions, claims: Claims) {
  const roots = options.trustedRoots !== undefined
    ? options.trustedRoots.flatMap((r, i) => certificatesFromBytes(r, `trusted root ${i}`))
    : [AWS_ROOT_DER];
  const chainDer = payload.certificate === undefined
    ? []
    : [payload.certificate, ...[...(payload.cabundle ?? [])].reverse()];
  const outcome = await verifyCertificateChain(chainDer, {
    roots,
    at: options.at,
    chainId: "chain",
    what: "Nitro certificate chain",
    rootIncluded: true, // cabundle[0] is the root itself (nsm-api §3.2.3.1)
  });
  if (payload.cabundle === undefined && outcome.chain.ok) {
    outcome.chain.ok = false;
    outcome.chain.detail = "The document has no CA bundle";
  }
  claims.cabundleLength = payload.cabundle?.length ?? 0;
  return [outcome.chain, outcome.root, outcome.validity];
}

/** The timestamp lies inside the leaf's validity and not after the verification time. */
function timestampCheck(
  payload: NitroPayload,
  leaf: CertificateFields | undefined,
  at: Date,
): Check {
  let tsOk = false;
  let tsDetail = "The document has no timestamp";
  if (payload.timestamp !== undefined) {
    const t = payload.timestamp;
    const iso = new Date(t).toISOString();
    if (leaf !== undefined && (t < leaf.notBefore.getTime() || t > leaf.notAfter.getTime())) {
      tsDetail = `The timestamp ${t} (${iso}) is outside the certificate's validity ` +
        `${leaf.notBefore.toISOString()} to ${leaf.notAfter.toISOString()}; ` +
        `a timestamp must count milliseconds`;
    } else if (t > at.getTime() + NITRO_TIMESTAMP_SKEW_MS) {
      tsDetail = `The document is dated ${iso}, after the verification time ` +
        `${at.toISOString()}`;
    } else {
      tsOk = leaf !== undefined;
      tsDetail = tsOk ? iso : "The document has no certificate";
    }
  }
  return check(
    "timestamp",
    "The document's timestamp lies within its certificate's validity and not after the verification time",
    tsOk,
    tsDetail,
  );
}

/** Debug: enclaves started with --debug-mode report all-zero PCRs. */
function nitroDebugCheck(
  payload: NitroPayload,
  options: NitroVerifyOptions,
  claims: Claims,
): Check {
  const pcr0 = payload.pcrs.get(0);
  const debug = pcr0 !== undefined && pcr0.every((b) => b === 0);
  const allowDebug = typeof options.policy === "object" && options.policy !== null &&
    (options.policy as { allowDebug?: unknown }).allowDebug === true;
  claims.debug = debug;
  return check(
    "debug",
    "The enclave is not in debug mode, whose PCR0 is all zeros (or the policy allows debug)",
    !debug || allowDebug,
    debug
      ? allowDebug
        ? "Debug mode, allowed by the policy"
        : "PCR0 is all zeros: the enclave runs in debug mode"
      : "Debug off",
  );
}

/**
 * Verifies a Nitro attestation document as of `options.at`. Resolves to a
 * result listing the checks `cose`, `payload`, `signature`, `chain`, `root`,
 * `validity`, `timestamp` and `debug`; rejects with a MalformedEvidenceError (exit
 * status `dataError`) when the evidence is not a COSE_Sign1 with a CBOR map
 * payload.
 */
export async function verifyNitroDocument(
  evidence: Uint8Array,
  options: NitroVerifyOptions,
): Promise<VerificationResult> {
  if (!(options?.at instanceof Date) || Number.isNaN(options.at.getTime())) {
    throw new UsageError("A verification time (`at`) is required");
  }
  const sign1: CoseSign1 = parseCoseSign1(evidence);
  const decoded = decodeCborStrict(sign1.payload, "Nitro attestation document payload");
  if (!(decoded instanceof Map)) {
    throw new MalformedEvidenceError(
      "The Nitro attestation document's payload is not a CBOR map; the evidence is corrupt",
    );
  }
  const claims: Claims = {};
  const checks: Check[] = [coseCheck(sign1, claims)];
  const { payload, check: payloadOk } = payloadStep(decoded, claims);
  checks.push(payloadOk);
  const signature = await signatureStep(sign1, payload, claims);
  checks.push(signature.check);
  checks.push(...await chainChecks(payload, options, claims));
  checks.push(timestampCheck(payload, signature.leaf, options.at));
  checks.push(nitroDebugCheck(payload, options, claims));
  return resultFromChecks("nitro", { checks, claims });
}
