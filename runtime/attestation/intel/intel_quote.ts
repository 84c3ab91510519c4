/**
 * Intel DCAP ECDSA quotes: the parts shared by SGX quotes (v3, and v4 with an
 * SGX body) and TDX quotes (v4, v5): the header, the report bodies as field
 * tables, the signature data with its QE report and certification data, the
 * PCK certificate's SGX extension, and the verification steps every quote
 * needs (quote signature, attestation-key binding, QE report signature, PCK
 * chain to Intel's SGX Root CA, QE identity).
 *
 * Layouts: Intel SGX DCAP ECDSA Quote Library API, Appendix A (quote v3);
 * Intel TDX DCAP Quote Generation Library and Quote Verification Library
 * rev 0.9, Appendix 4/5 (quote v4, v5); Intel SGX PCK Certificate and CRL
 * Profile Specification (the SGX extension). Every integer is little-endian.
 *
 * @module
 */
import type { CertificateFields } from "../../x509_reader.ts";
import { UsageError } from "../../errors.ts";
import {
  type Check,
  type ClaimMap,
  type Claims,
  MalformedEvidenceError,
  type SgxClaims,
} from "../result.ts";
import {
  certificatesFromBytes,
  certificateSummary,
  pemCertificates,
  verifyCertificateChain,
} from "../_x509_chain.ts";
import { INTEL_SGX_ROOT_CA_PEM } from "./intel_roots.ts";
import {
  collateralChecks,
  type CollateralOutcome,
  type IntelCollateral,
} from "./intel_collateral.ts";
import { pckRevocationCheck } from "./intel_crl.ts";
import { bytesEqual, concatBytes } from "../../bytes.ts";
import {
  ATTESTATION_KEY_ECDSA_P256,
  type Field,
  fieldBytes,
  fieldNumber,
  fieldUint,
  QUOTE_HEADER,
  QUOTE_HEADER_SIZE,
  TEE_TYPE_SGX,
  TEE_TYPE_TDX,
} from "./quote_header.ts";

export {
  ATTESTATION_KEY_ECDSA_P256,
  type Field,
  fieldBytes,
  fieldNumber,
  fieldUint,
  QUOTE_HEADER,
  QUOTE_HEADER_SIZE,
  TEE_TYPE_SGX,
  TEE_TYPE_TDX,
};

/** SGX report body, 384 bytes (SGX `sgx_report_body_t`); also the layout of the QE report. */
export const SGX_REPORT_BODY = {
  cpuSvn: { offset: 0, size: 16 },
  miscSelect: { offset: 16, size: 4 },
  isvExtProdId: { offset: 32, size: 16 },
  attributesFlags: { offset: 48, size: 8 },
  attributesXfrm: { offset: 56, size: 8 },
  mrEnclave: { offset: 64, size: 32 },
  mrSigner: { offset: 128, size: 32 },
  configId: { offset: 192, size: 64 },
  isvProdId: { offset: 256, size: 2 },
  isvSvn: { offset: 258, size: 2 },
  configSvn: { offset: 260, size: 2 },
  isvFamilyId: { offset: 304, size: 16 },
  reportData: { offset: 320, size: 64 },
} as const satisfies Record<string, Field>;

/** Size of an SGX report body. */
export const SGX_REPORT_BODY_SIZE = 384;

/** TD quote body (TDX DCAP Quote Library, "TD Quote Body"): 584 bytes in v1.0, 648 in v1.5. */
export const TD_REPORT_BODY = {
  teeTcbSvn: { offset: 0, size: 16 },
  mrSeam: { offset: 16, size: 48 },
  mrSignerSeam: { offset: 64, size: 48 },
  seamAttributes: { offset: 112, size: 8 },
  tdAttributes: { offset: 120, size: 8 },
  xfam: { offset: 128, size: 8 },
  mrTd: { offset: 136, size: 48 },
  mrConfigId: { offset: 184, size: 48 },
  mrOwner: { offset: 232, size: 48 },
  mrOwnerConfig: { offset: 280, size: 48 },
  rtmr0: { offset: 328, size: 48 },
  rtmr1: { offset: 376, size: 48 },
  rtmr2: { offset: 424, size: 48 },
  rtmr3: { offset: 472, size: 48 },
  reportData: { offset: 520, size: 64 },
  /** v1.5 body only. */
  teeTcbSvn2: { offset: 584, size: 16 },
  /** v1.5 body only. */
  mrServiceTd: { offset: 600, size: 48 },
} as const satisfies Record<string, Field>;

/** Size of a TD 1.0 quote body. */
export const TD10_REPORT_BODY_SIZE = 584;
/** Size of a TD 1.5 quote body. */
export const TD15_REPORT_BODY_SIZE = 648;

/** Intel's QE vendor id, `939a7233-f79c-4ca9-940a-0db3957f0607`. */
export const INTEL_QE_VENDOR_ID = "939a7233f79c4ca9940a0db3957f0607";
/** MRSIGNER of Intel's SGX quoting enclave (ISVPRODID 1). */
export const INTEL_QE_MRSIGNER = "8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff";
/** MRSIGNER of Intel's TD quoting enclave (ISVPRODID 2). */
export const INTEL_TD_QE_MRSIGNER =
  "dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5";
/** Certification data type 5: PEM PCK certificate chain. */
export const CERT_DATA_PCK_CHAIN = 5;
/** Certification data type 6: QE report certification data (v4, v5). */
export const CERT_DATA_QE_REPORT = 6;
/** OID of the PCK certificate's SGX extension. */
export const SGX_EXTENSION_OID = "1.2.840.113741.1.13.1";

/** Quotes larger than this are refused before parsing. */
export const MAX_QUOTE_BYTES = 1 << 20;

/** Which body a quote carries. */
export type QuoteBodyType = "sgx" | "td10" | "td15";

/** A parsed Intel DCAP quote; every byte field is a view into the evidence. */
export interface IntelQuote {
  /** Quote version: 3, 4 or 5. */
  version: number;
  /** Attestation key type; always 2 (ECDSA P-256) once parsed. */
  attestationKeyType: number;
  /** TEE type: 0x00 SGX or 0x81 TDX (v3 quotes are SGX). */
  teeType: number;
  /** The 48-byte header. */
  header: Uint8Array;
  /** Which report body follows the header. */
  bodyType: QuoteBodyType;
  /** The report body (384, 584 or 648 bytes). */
  body: Uint8Array;
  /** The bytes the quote signature covers. */
  signedRegion: Uint8Array;
  /** The ECDSA quote signature, raw r‖s. */
  signature: Uint8Array;
  /** The attestation public key, raw X‖Y. */
  attestationKey: Uint8Array;
  /** The quoting enclave's report (384 bytes, SGX report body layout). */
  qeReport: Uint8Array;
  /** The PCK key's signature over the QE report, raw r‖s. */
  qeReportSignature: Uint8Array;
  /** The QE authentication data. */
  qeAuthData: Uint8Array;
  /** The innermost certification data type (5 for a PCK chain). */
  certificationDataType: number;
  /** The innermost certification data. */
  certificationData: Uint8Array;
  /** The PCK chain (DER, leaf first) when the certification data is type 5, else undefined. */
  pckChain?: Uint8Array[];
  /** The signature data length from the quote. */
  signatureDataLength: number;
  /** Bytes after the signature data (ignored, but reported). */
  trailingBytes: number;
}

function malformed(message: string): MalformedEvidenceError {
  return new MalformedEvidenceError(message);
}

/** A cursor over the signature data that refuses to read past its end. */
class Reader {
  #bytes: Uint8Array;
  #view: DataView;
  #at = 0;
  #what: string;
  constructor(bytes: Uint8Array, what: string) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#what = what;
  }
  get remaining(): number {
    return this.#bytes.length - this.#at;
  }
  #need(n: number, name: string): void {
    if (n > this.remaining) {
      throw malformed(
        `The quote is truncated: its ${this.#what} ends ${n - this.remaining} byte(s) short of ` +
          `the ${name}; check that the whole quote was captured`,
      );
    }
  }
  bytes(n: number, name: string): Uint8Array {
    this.#need(n, name);
    const out = this.#bytes.subarray(this.#at, this.#at + n);
    this.#at += n;
    return out;
  }
  u16(name: string): number {
    this.#need(2, name);
    const v = this.#view.getUint16(this.#at, true);
    this.#at += 2;
    return v;
  }
  u32(name: string): number {
    this.#need(4, name);
    const v = this.#view.getUint32(this.#at, true);
    this.#at += 4;
    return v;
  }
  end(): void {
    if (this.remaining !== 0) {
      throw malformed(
        `The quote's ${this.#what} has ${this.remaining} unexpected byte(s) at its end; ` +
          `the quote is corrupt`,
      );
    }
  }
}

function certificationData(reader: Reader): { type: number; data: Uint8Array } {
  const type = reader.u16("certification data type");
  const size = reader.u32("certification data size");
  return { type, data: reader.bytes(size, `type ${type} certification data`) };
}

const BODY_SIZES: Record<QuoteBodyType, number> = {
  sgx: SGX_REPORT_BODY_SIZE,
  td10: TD10_REPORT_BODY_SIZE,
  td15: TD15_REPORT_BODY_SIZE,
};

/**
 * Parses an Intel DCAP quote (SGX v3; SGX or TDX v4; TDX v5). Throws an
 * MalformedEvidenceError (exit status `dataError`) for anything that is not a
 * well-formed quote; trailing bytes after the signature data are allowed.
 */
export function parseIntelQuote(evidence: Uint8Array): IntelQuote {
  checkQuoteSize(evidence);
  const header = evidence.subarray(0, QUOTE_HEADER_SIZE);
  const { version, attestationKeyType, teeType } = parseQuoteHeader(header);
  const { bodyType, bodyStart } = locateQuoteBody(evidence, version, teeType);
  const bodyEnd = bodyStart + BODY_SIZES[bodyType];
  if (evidence.length < bodyEnd + 4) {
    throw malformed(
      `The quote is ${evidence.length} bytes, too short for its header and ${
        BODY_SIZES[bodyType]
      }-byte body; check that the whole quote was captured`,
    );
  }
  const view = new DataView(evidence.buffer, evidence.byteOffset, evidence.byteLength);
  const signatureDataLength = view.getUint32(bodyEnd, true);
  const sigStart = bodyEnd + 4;
  if (signatureDataLength > evidence.length - sigStart) {
    throw malformed(
      `The quote's signature data length ${signatureDataLength} runs ${
        signatureDataLength - (evidence.length - sigStart)
      } byte(s) past its end; check that the whole quote was captured`,
    );
  }
  const signatureData = parseSignatureData(
    evidence.subarray(sigStart, sigStart + signatureDataLength),
    version,
  );
  return {
    version,
    attestationKeyType,
    teeType,
    header,
    bodyType,
    body: evidence.subarray(bodyStart, bodyEnd),
    signedRegion: evidence.subarray(0, bodyEnd),
    ...signatureData,
    signatureDataLength,
    trailingBytes: evidence.length - sigStart - signatureDataLength,
  };
}

/** Refuses evidence that is not bytes, or too long or too short to be a quote. */
function checkQuoteSize(evidence: Uint8Array): void {
  if (!(evidence instanceof Uint8Array)) throw malformed("The evidence is not a byte array");
  if (evidence.length > MAX_QUOTE_BYTES) {
    throw malformed(
      `The quote is ${evidence.length} bytes, more than the ${MAX_QUOTE_BYTES} a quote can be; ` +
        `check the evidence file`,
    );
  }
  if (evidence.length < QUOTE_HEADER_SIZE) {
    throw malformed(
      `The quote is ${evidence.length} bytes, shorter than its ${QUOTE_HEADER_SIZE}-byte header; ` +
        `check that the whole quote was captured`,
    );
  }
}

/** The header's version (3, 4 or 5), attestation key type (ECDSA P-256) and TEE type. */
function parseQuoteHeader(
  header: Uint8Array,
): { version: number; attestationKeyType: number; teeType: number } {
  const version = fieldNumber(header, QUOTE_HEADER.version);
  if (version !== 3 && version !== 4 && version !== 5) {
    throw malformed(
      `Quote version ${version} is not supported; expected 3 (SGX), 4 or 5 (TDX) — ` +
        `is this an Intel DCAP quote?`,
    );
  }
  const attestationKeyType = fieldNumber(header, QUOTE_HEADER.attestationKeyType);
  if (attestationKeyType !== ATTESTATION_KEY_ECDSA_P256) {
    throw malformed(
      `Quote attestation key type ${attestationKeyType} is not supported; only 2 (ECDSA P-256) is`,
    );
  }
  const teeType = version === 3 ? TEE_TYPE_SGX : fieldNumber(header, QUOTE_HEADER.teeType);
  if (teeType !== TEE_TYPE_SGX && teeType !== TEE_TYPE_TDX) {
    throw malformed(
      `Quote TEE type 0x${teeType.toString(16)} is unknown; expected 0x00 (SGX) or 0x81 (TDX)`,
    );
  }
  return { version, attestationKeyType, teeType };
}

/** The body's type and offset: from the v5 body descriptor, else from the TEE type. */
function locateQuoteBody(
  evidence: Uint8Array,
  version: number,
  teeType: number,
): { bodyType: QuoteBodyType; bodyStart: number } {
  let bodyType: QuoteBodyType;
  let bodyStart = QUOTE_HEADER_SIZE;
  if (version === 5) {
    if (evidence.length < QUOTE_HEADER_SIZE + 6) {
      throw malformed("The v5 quote is truncated in its body descriptor; check the evidence file");
    }
    const view = new DataView(evidence.buffer, evidence.byteOffset, evidence.byteLength);
    const type = view.getUint16(48, true);
    const size = view.getUint32(50, true);
    const byType: Record<number, QuoteBodyType> = { 1: "sgx", 2: "td10", 3: "td15" };
    bodyType = byType[type];
    if (bodyType === undefined) {
      throw malformed(`Quote v5 body type ${type} is unknown; expected 1, 2 or 3`);
    }
    if (size !== BODY_SIZES[bodyType]) {
      throw malformed(
        `Quote v5 body type ${type} has size ${size}; expected ${BODY_SIZES[bodyType]}`,
      );
    }
    bodyStart += 6;
  } else {
    bodyType = teeType === TEE_TYPE_TDX ? "td10" : "sgx";
  }
  if ((bodyType === "sgx") !== (teeType === TEE_TYPE_SGX)) {
    throw malformed(
      `Quote TEE type 0x${teeType.toString(16)} does not match its ${bodyType} body`,
    );
  }
  return { bodyType, bodyStart };
}

/** The signature data: quote signature, attestation key, QE report and its certification data. */
function parseSignatureData(data: Uint8Array, version: number) {
  const reader = new Reader(data, "signature data");
  const signature = reader.bytes(64, "quote signature");
  const attestationKey = reader.bytes(64, "attestation key");
  let qe: Reader;
  if (version === 3) {
    qe = reader;
  } else {
    const outer = certificationData(reader);
    reader.end();
    if (outer.type !== CERT_DATA_QE_REPORT) {
      throw malformed(
        `The quote's certification data has type ${outer.type}; a v${version} quote must carry ` +
          `type 6 (QE report certification data)`,
      );
    }
    qe = new Reader(outer.data, "QE report certification data");
  }
  const qeReport = qe.bytes(SGX_REPORT_BODY_SIZE, "QE report");
  const qeReportSignature = qe.bytes(64, "QE report signature");
  const qeAuthData = qe.bytes(qe.u16("QE authentication data size"), "QE authentication data");
  const inner = certificationData(qe);
  qe.end();
  let pckChain: Uint8Array[] | undefined;
  if (inner.type === CERT_DATA_PCK_CHAIN) {
    pckChain = pemCertificates(
      new TextDecoder("utf-8", { fatal: false }).decode(inner.data),
      "PCK certificate chain in the quote",
    );
  }
  return {
    signature,
    attestationKey,
    qeReport,
    qeReportSignature,
    qeAuthData,
    certificationDataType: inner.type,
    certificationData: inner.data,
    pckChain,
  };
}

// ---------------------------------------------------------------------------
// The PCK certificate's SGX extension (PCK Certificate and CRL Profile, §3.5)

/** What the PCK certificate's SGX extension says about the platform. */
export interface PckExtension {
  /** Platform provisioning id. */
  ppid?: Uint8Array;
  /** SGX TCB component SVNs 1–16. */
  sgxTcbComponents: number[];
  /** PCE SVN. */
  pceSvn?: number;
  /** CPU SVN (16 bytes). */
  cpuSvn?: Uint8Array;
  /** PCE id (2 bytes). */
  pceId?: Uint8Array;
  /** FMSPC, family-model-stepping-platform-customSKU (6 bytes). */
  fmspc?: Uint8Array;
  /** SGX type: 0 standard, 1 scalable, 2 scalable with integrity. */
  sgxType?: number;
  /** Platform instance id, multi-package platforms only. */
  platformInstanceId?: Uint8Array;
}

interface Tlv {
  tag: number;
  value: Uint8Array;
  end: number;
}

/** Reads one DER TLV at `at`; short and long definite lengths only. */
function readTlv(bytes: Uint8Array, at: number): Tlv {
  if (at + 2 > bytes.length) throw new RangeError("DER truncated");
  const tag = bytes[at];
  let length = bytes[at + 1];
  let start = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 3 || start + n > bytes.length) throw new RangeError("DER bad length");
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + bytes[start + i];
    start += n;
  }
  if (start + length > bytes.length) throw new RangeError("DER truncated");
  return { tag, value: bytes.subarray(start, start + length), end: start + length };
}

function readSequence(bytes: Uint8Array): Tlv[] {
  const out: Tlv[] = [];
  for (let at = 0; at < bytes.length;) {
    const tlv = readTlv(bytes, at);
    out.push(tlv);
    at = tlv.end;
  }
  return out;
}

function oidText(bytes: Uint8Array): string {
  const parts: number[] = [];
  let value = 0;
  for (const b of bytes) {
    value = value * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) {
      if (parts.length === 0) parts.push(value < 80 ? Math.floor(value / 40) : 2, value % 40);
      else parts.push(value);
      value = 0;
    }
  }
  return parts.join(".");
}

function derUint(bytes: Uint8Array): number {
  if (bytes.length === 0 || bytes.length > 6) throw new RangeError("DER integer size");
  let v = 0;
  for (const b of bytes) v = v * 256 + b;
  return v;
}

/**
 * Parses the SGX extension (OID 1.2.840.113741.1.13.1) of a PCK certificate,
 * given the extension's value (the contents of its OCTET STRING). Throws a
 * RangeError on malformed DER.
 */
export function parsePckExtension(value: Uint8Array): PckExtension {
  const [outer] = readSequence(value);
  if (outer === undefined || outer.tag !== 0x30) throw new RangeError("Not a SEQUENCE");
  const out: PckExtension = { sgxTcbComponents: [] };
  for (const entry of readSequence(outer.value)) {
    if (entry.tag !== 0x30) throw new RangeError("Entry is not a SEQUENCE");
    const [oid, val] = readSequence(entry.value);
    if (oid?.tag !== 0x06 || val === undefined) throw new RangeError("Bad entry");
    const name = oidText(oid.value);
    switch (name) {
      case `${SGX_EXTENSION_OID}.1`:
        out.ppid = val.value.slice();
        break;
      case `${SGX_EXTENSION_OID}.2`:
        for (const tcb of readSequence(val.value)) {
          const [toid, tval] = readSequence(tcb.value);
          if (toid?.tag !== 0x06 || tval === undefined) throw new RangeError("Bad TCB entry");
          const sub = oidText(toid.value).slice(`${SGX_EXTENSION_OID}.2.`.length);
          const n = Number(sub);
          if (n >= 1 && n <= 16) out.sgxTcbComponents[n - 1] = derUint(tval.value);
          else if (n === 17) out.pceSvn = derUint(tval.value);
          else if (n === 18) out.cpuSvn = tval.value.slice();
        }
        break;
      case `${SGX_EXTENSION_OID}.3`:
        out.pceId = val.value.slice();
        break;
      case `${SGX_EXTENSION_OID}.4`:
        out.fmspc = val.value.slice();
        break;
      case `${SGX_EXTENSION_OID}.5`:
        out.sgxType = derUint(val.value);
        break;
      case `${SGX_EXTENSION_OID}.6`:
        out.platformInstanceId = val.value.slice();
        break;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Verification shared by SGX and TDX

/** Options of the quote verifiers. */
export interface QuoteVerifyOptions {
  /** The verification time; certificates are checked against it, never the clock. */
  at: Date;
  /** A policy; see the policy module. Only `allowDebug: true` is read here. */
  policy?: unknown;
  /** Roots to trust instead of Intel's SGX Root CA (DER or PEM). */
  trustedRoots?: Uint8Array[];
  /**
   * The PCK chain (DER or PEM, leaf first) when the quote does not carry one;
   * also tried as the Intel SGX TCB Signing certificate of the collateral.
   */
  certs?: Uint8Array[];
  /**
   * Intel collateral: TCB Info and QE Identity JSON (bytes as served, or
   * parsed). Given, the `tcb-info` and `tcb-status` checks are made and
   * `qe-identity` uses the signed identity; absent, `tcbStatus` is null.
   */
  collateral?: readonly (Uint8Array | IntelCollateral)[];
  /** PCK and root CRLs (DER or PEM); given, the `revocation` check is made. */
  crls?: Uint8Array[];
}

const INTEL_ROOT_DER = pemCertificates(INTEL_SGX_ROOT_CA_PEM, "embedded Intel SGX Root CA")[0];

function allZero(bytes: Uint8Array): boolean {
  return bytes.every((b) => b === 0);
}

async function importRawP256(xy: Uint8Array): Promise<CryptoKey | undefined> {
  const point = new Uint8Array(65);
  point[0] = 0x04;
  point.set(xy, 1);
  try {
    return await crypto.subtle.importKey(
      "raw",
      point,
      { name: "ECDSA", namedCurve: "P-256" },
      false,
      ["verify"],
    );
  } catch {
    return undefined; // not a point on P-256
  }
}

async function verifyP256(
  key: CryptoKey,
  signature: Uint8Array,
  data: Uint8Array,
): Promise<boolean> {
  try {
    return await crypto.subtle.verify(
      { name: "ECDSA", hash: "SHA-256" },
      key,
      signature.slice(),
      data.slice(),
    );
  } catch {
    return false; // WebCrypto refuses a key that is not a point on the curve only here
  }
}

/**
 * A platform's QE report and its signature stay the same across every quote
 * the platform makes until its TCB changes, so the outcome is remembered per
 * PCK certificate (keyed by the exact report and signature bytes).
 */
const qeSignatureMemo = new WeakMap<CertificateFields, Map<string, boolean>>();

async function qeReportSignedBy(
  pck: CertificateFields,
  report: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  let memo = qeSignatureMemo.get(pck);
  if (memo === undefined) {
    memo = new Map();
    qeSignatureMemo.set(pck, memo);
  }
  const key = report.toHex() + signature.toHex();
  const known = memo.get(key);
  if (known !== undefined) return known;
  const publicKey = await crypto.subtle.importKey(
    "spki",
    pck.publicKey.spki as Uint8Array<ArrayBuffer>,
    { name: "ECDSA", namedCurve: "P-256" },
    false,
    ["verify"],
  );
  const ok = await verifyP256(publicKey, signature, report);
  if (memo.size >= 64) memo.clear();
  memo.set(key, ok);
  return ok;
}

/** Whether the policy allows debug evidence (`allowDebug: true`). */
export function policyAllowsDebug(policy: unknown): boolean {
  return typeof policy === "object" && policy !== null &&
    (policy as { allowDebug?: unknown }).allowDebug === true;
}

/** Claims of an SGX report body (also used for the QE report). */
export function sgxBodyClaims(body: Uint8Array): SgxClaims {
  const flags = fieldUint(body, SGX_REPORT_BODY.attributesFlags) as bigint;
  const claims: ClaimMap = {
    cpuSvn: fieldBytes(body, SGX_REPORT_BODY.cpuSvn).slice(),
    miscSelect: fieldNumber(body, SGX_REPORT_BODY.miscSelect),
    isvExtProdId: fieldBytes(body, SGX_REPORT_BODY.isvExtProdId).slice(),
    attributes: `0x${flags.toString(16)}`,
    xfrm: `0x${(fieldUint(body, SGX_REPORT_BODY.attributesXfrm) as bigint).toString(16)}`,
    debug: (flags & 2n) !== 0n,
    mrEnclave: fieldBytes(body, SGX_REPORT_BODY.mrEnclave).slice(),
    mrSigner: fieldBytes(body, SGX_REPORT_BODY.mrSigner).slice(),
    configId: fieldBytes(body, SGX_REPORT_BODY.configId).slice(),
    isvProdId: fieldNumber(body, SGX_REPORT_BODY.isvProdId),
    isvSvn: fieldNumber(body, SGX_REPORT_BODY.isvSvn),
    configSvn: fieldNumber(body, SGX_REPORT_BODY.configSvn),
    isvFamilyId: fieldBytes(body, SGX_REPORT_BODY.isvFamilyId).slice(),
    reportData: fieldBytes(body, SGX_REPORT_BODY.reportData).slice(),
  };
  return claims as SgxClaims;
}

/** The header check, recording the header's claims. */
function headerCheck(quote: IntelQuote, claims: Claims): Check {
  const tdx = quote.teeType === TEE_TYPE_TDX;
  const vendor = fieldBytes(quote.header, QUOTE_HEADER.qeVendorId).slice();
  const intel = bytesEqual(vendor, Uint8Array.fromHex(INTEL_QE_VENDOR_ID));
  claims.version = quote.version;
  claims.teeType = tdx ? "tdx" : "sgx";
  claims.attestationKeyType = "ECDSA-P256";
  claims.qeVendorId = vendor;
  claims.userData = fieldBytes(quote.header, QUOTE_HEADER.userData).slice();
  if (quote.version === 3) {
    claims.qeSvn = fieldNumber(quote.header, QUOTE_HEADER.qeSvn);
    claims.pceSvn = fieldNumber(quote.header, QUOTE_HEADER.pceSvn);
  }
  if (quote.version === 5) claims.bodyType = { sgx: 1, td10: 2, td15: 3 }[quote.bodyType];
  claims.signatureDataLength = quote.signatureDataLength;
  claims.trailingBytes = quote.trailingBytes;
  return {
    id: "header",
    description: "Quote header: version, ECDSA P-256 attestation key, TEE type, Intel QE vendor",
    ok: intel,
    detail: intel
      ? `Version ${quote.version}, ${tdx ? "TDX" : "SGX"}, Intel QE`
      : `QE vendor id ${vendor.toHex()} is not Intel's ${INTEL_QE_VENDOR_ID}`,
  };
}

/** The quote signature by the attestation key. */
async function quoteSignatureCheck(quote: IntelQuote): Promise<Check> {
  const attestationKey = await importRawP256(quote.attestationKey);
  const ok = attestationKey !== undefined &&
    await verifyP256(attestationKey, quote.signature, quote.signedRegion);
  return {
    id: "quote-signature",
    description: "The attestation key signed the quote header and body (ECDSA P-256, SHA-256)",
    ok,
    detail: attestationKey === undefined
      ? "The attestation key is not a P-256 point"
      : ok
      ? undefined
      : "The signature does not verify",
  };
}

/** Attestation key binding: QE REPORTDATA = SHA-256(key ‖ auth data) ‖ 32 zero bytes. */
async function attestationKeyBindingCheck(quote: IntelQuote): Promise<Check> {
  const qeReportData = fieldBytes(quote.qeReport, SGX_REPORT_BODY.reportData);
  const expected = new Uint8Array(
    await crypto.subtle.digest("SHA-256", concatBytes(quote.attestationKey, quote.qeAuthData)),
  );
  const ok = bytesEqual(qeReportData.subarray(0, 32), expected) &&
    allZero(qeReportData.subarray(32));
  return {
    id: "attestation-key-binding",
    description: "The QE report data is SHA-256 of the attestation key and QE authentication data",
    ok,
    detail: ok
      ? undefined
      : `QE report data ${qeReportData.toHex()}; expected ${expected.toHex()} followed by zeros`,
  };
}

/** What the PCK steps found: their checks, the SGX extension and the chain. */
interface PckOutcome {
  checks: Check[];
  extension?: PckExtension;
  path?: CertificateFields[];
}

/** The PCK's SGX extension (FMSPC, PCE id, TCB) as a check, recording its claims. */
function pckExtensionStep(
  leaf: CertificateFields,
  claims: Claims,
): { check: Check; extension?: PckExtension } {
  const ext = leaf.extensions.find((e) => e.oid === SGX_EXTENSION_OID);
  let extension: PckExtension | undefined;
  let extDetail = "The PCK certificate has no SGX extension";
  if (ext !== undefined) {
    try {
      extension = parsePckExtension(ext.value);
    } catch (error) {
      extDetail = `The PCK certificate's SGX extension is malformed (${(error as Error).message})`;
    }
  }
  const ok = extension !== undefined && extension.fmspc !== undefined &&
    extension.sgxTcbComponents.length === 16 && extension.pceSvn !== undefined;
  if (extension !== undefined) {
    claims.fmspc = extension.fmspc ?? null;
    claims.pceId = extension.pceId ?? null;
    claims.pckTcb = {
      sgxTcbComponents: extension.sgxTcbComponents,
      pceSvn: extension.pceSvn,
      cpuSvn: extension.cpuSvn,
    };
    if (extension.sgxType !== undefined) claims.sgxType = extension.sgxType;
  }
  const check = {
    id: "pck-extension",
    description: "The PCK certificate's SGX extension gives FMSPC, PCE id and TCB",
    ok,
    detail: ok
      ? `FMSPC ${extension!.fmspc!.toHex()}`
      : extension === undefined
      ? extDetail
      : "The SGX extension lacks FMSPC or TCB components",
  };
  return { check, extension };
}

/** The four checks that fail when there is no PCK chain to verify. */
function missingPckChain(quote: IntelQuote): PckOutcome {
  const why = `The quote carries certification data type ${quote.certificationDataType}, ` +
    `not a PCK chain (type 5); pass the PCK chain with --certs`;
  const checks = [
    ["qe-report-signature", "The PCK key signed the QE report"],
    ["pck-chain", "Each certificate of the PCK chain is signed by the next"],
    ["root", "The PCK chain ends in a trusted root"],
    ["validity", "Every certificate of the PCK chain is valid"],
  ].map(([id, description]) => ({ id, description, ok: false, detail: why }));
  return { checks };
}

/** The PCK chain (from the quote, else from `options.certs`), the QE report signature and the SGX extension. */
async function pckSteps(
  quote: IntelQuote,
  options: QuoteVerifyOptions,
  claims: Claims,
): Promise<PckOutcome> {
  let chainDer = quote.pckChain;
  if (chainDer === undefined && options.certs !== undefined && options.certs.length > 0) {
    chainDer = options.certs.flatMap((c, i) => certificatesFromBytes(c, `certificate ${i}`));
  }
  const roots = options.trustedRoots !== undefined
    ? options.trustedRoots.flatMap((r, i) => certificatesFromBytes(r, `trusted root ${i}`))
    : [INTEL_ROOT_DER];
  claims.certificationDataType = quote.certificationDataType;
  if (chainDer === undefined) return missingPckChain(quote);
  const outcome = await verifyCertificateChain(chainDer, {
    roots,
    at: options.at,
    chainId: "pck-chain",
    what: "PCK certificate chain",
  });
  const leaf = outcome.certificates[0];
  let qeSigOk = false;
  let qeSigDetail: string | undefined = "The signature does not verify with the PCK key";
  try {
    qeSigOk = await qeReportSignedBy(leaf, quote.qeReport, quote.qeReportSignature);
  } catch {
    qeSigDetail = `The PCK certificate "${leaf.subject}" does not hold a P-256 key`;
  }
  const qeSignature = {
    id: "qe-report-signature",
    description: "The PCK key signed the QE report (ECDSA P-256, SHA-256)",
    ok: qeSigOk,
    detail: qeSigOk ? undefined : qeSigDetail,
  };
  claims.pck = certificateSummary(leaf);
  claims.pckIssuer = leaf.issuer;
  const { check, extension } = pckExtensionStep(leaf, claims);
  return {
    checks: [qeSignature, outcome.chain, outcome.root, outcome.validity, check],
    extension,
    path: outcome.certificates,
  };
}

/** The quoting enclave's claims, and why it is not Intel's non-debug QE (empty when it is). */
function quotingEnclave(
  quote: IntelQuote,
  claims: Claims,
): { qe: SgxClaims; debug: boolean; problems: string[] } {
  const tdx = quote.teeType === TEE_TYPE_TDX;
  const qe = sgxBodyClaims(quote.qeReport);
  claims.qe = {
    mrEnclave: qe.mrEnclave,
    mrSigner: qe.mrSigner,
    isvProdId: qe.isvProdId,
    isvSvn: qe.isvSvn,
    miscSelect: qe.miscSelect,
    attributes: qe.attributes,
  };
  const expectedSigner = tdx ? INTEL_TD_QE_MRSIGNER : INTEL_QE_MRSIGNER;
  const expectedProd = tdx ? 2 : 1;
  const problems: string[] = [];
  if (!bytesEqual(qe.mrSigner, Uint8Array.fromHex(expectedSigner))) {
    problems.push(`MRSIGNER ${qe.mrSigner.toHex()} is not Intel's`);
  }
  if (qe.isvProdId !== expectedProd) {
    problems.push(`ISVPRODID ${qe.isvProdId}, expected ${expectedProd}`);
  }
  if (qe.debug) problems.push("the QE is a debug enclave");
  return { qe, debug: qe.debug === true, problems };
}

/** The collateral's checks over the quote, the PCK's TCB and the QE. */
function quoteCollateralChecks(
  quote: IntelQuote,
  qe: SgxClaims,
  options: QuoteVerifyOptions & { pck?: PckExtension },
): Promise<CollateralOutcome> {
  const tdx = quote.teeType === TEE_TYPE_TDX;
  return collateralChecks({
    tdx,
    pck: options.pck,
    teeTcbSvn: tdx ? fieldBytes(quote.body, TD_REPORT_BODY.teeTcbSvn) : undefined,
    mrSignerSeam: tdx ? fieldBytes(quote.body, TD_REPORT_BODY.mrSignerSeam) : undefined,
    seamAttributes: tdx ? fieldBytes(quote.body, TD_REPORT_BODY.seamAttributes) : undefined,
    qe: {
      mrSigner: qe.mrSigner,
      isvProdId: qe.isvProdId as number,
      isvSvn: qe.isvSvn as number,
      miscSelect: qe.miscSelect as number,
      attributes: quote.qeReport.subarray(48, 64),
    },
    collateral: options.collateral ?? [],
    at: options.at,
    policy: options.policy,
    signingCerts: options.certs,
    trustedRoots: options.trustedRoots,
  });
}

/** The QE identity check: the signed QE Identity when given, else Intel's constants. */
function qeIdentityCheck(
  quote: IntelQuote,
  enclave: { qe: SgxClaims; debug: boolean; problems: string[] },
  collateral: CollateralOutcome,
): Check {
  // With a signed QE identity the JSON decides; the debug bit is refused either way.
  if (collateral.qeIdentity !== undefined) {
    if (enclave.debug) {
      collateral.qeIdentity.ok = false;
      collateral.qeIdentity.detail = `the QE is a debug enclave; ${collateral.qeIdentity.detail}`;
    }
    return collateral.qeIdentity;
  }
  const tdx = quote.teeType === TEE_TYPE_TDX;
  return {
    id: "qe-identity",
    description: `The quoting enclave is Intel's ${tdx ? "TD" : "SGX"} QE, not in debug mode`,
    ok: enclave.problems.length === 0,
    detail: enclave.problems.length === 0
      ? `ISVSVN ${enclave.qe.isvSvn}`
      : enclave.problems.join("; "),
  };
}

/** The revocation check of the PCK chain against the supplied CRLs. */
async function pckRevocationStep(
  path: CertificateFields[] | undefined,
  crls: Uint8Array[],
  at: Date,
): Promise<Check> {
  if (path === undefined) {
    return {
      id: "revocation",
      description: "No certificate of the PCK chain is revoked by the supplied CRLs",
      ok: false,
      detail: "There is no PCK chain to check",
    };
  }
  return await pckRevocationCheck(path, crls, { at });
}

/**
 * Makes every check a DCAP quote needs apart from its body: `header`,
 * `quote-signature`, `attestation-key-binding`, `qe-report-signature`,
 * `pck-chain`, `root`, `validity`, `pck-extension`, `qe-identity`. Returns the
 * checks in order and the claims about header, QE and PCK.
 */
export async function verifyQuoteSignatures(
  quote: IntelQuote,
  options: QuoteVerifyOptions,
): Promise<{ checks: Check[]; claims: Claims }> {
  if (!(options?.at instanceof Date) || Number.isNaN(options.at.getTime())) {
    throw new UsageError("A verification time (`at`) is required");
  }
  const claims: Claims = {};
  const checks: Check[] = [
    headerCheck(quote, claims),
    await quoteSignatureCheck(quote),
    await attestationKeyBindingCheck(quote),
  ];
  const pck = await pckSteps(quote, options, claims);
  checks.push(...pck.checks);
  const enclave = quotingEnclave(quote, claims);
  const collateral = await quoteCollateralChecks(quote, enclave.qe, {
    ...options,
    pck: pck.extension,
  });
  checks.push(qeIdentityCheck(quote, enclave, collateral));
  if (options.crls !== undefined && options.crls.length > 0) {
    checks.push(await pckRevocationStep(pck.path, options.crls, options.at));
  }
  checks.push(...collateral.checks);
  Object.assign(claims, collateral.claims);
  return { checks, claims };
}

/** The `debug` check: debug evidence fails unless the policy sets `allowDebug: true`. */
export function debugCheck(
  debug: boolean,
  { policy, what }: {
    /** The verification policy (its `allowDebug` is read). */
    policy: unknown;
    /** What runs in debug mode, e.g. `"enclave"`, for the messages. */
    what: string;
  },
): Check {
  const allowed = policyAllowsDebug(policy);
  return {
    id: "debug",
    description: `The ${what} is not in debug mode (or the policy allows debug)`,
    ok: !debug || allowed,
    detail: debug
      ? allowed
        ? "Debug mode, allowed by the policy"
        : `The ${what} runs in debug mode: its memory is readable by the host`
      : "Debug off",
  };
}
