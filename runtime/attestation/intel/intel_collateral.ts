/**
 * Intel DCAP collateral: TCB Info (v2 for SGX, v3 for SGX and TDX) and
 * enclave identities (QE, TD_QE, QVE; v2) as Intel's Provisioning
 * Certification Service delivers them, with the checks that use them:
 *
 * - `tcb-info`: the TCB Info is signed by the Intel SGX TCB Signing
 *   certificate (chained to the Intel SGX Root CA), is for this platform
 *   (FMSPC, PCE id, SGX or TDX) and is current at the verification time;
 * - `tcb-status`: the platform's TCB level (PCK SGX components and PCESVN,
 *   plus TEE_TCB_SVN for TDX) is one the policy accepts;
 * - `qe-identity` (from an identity JSON): the QE report matches the signed
 *   identity and its ISVSVN gives the QE's TCB status.
 *
 * Signatures: ECDSA P-256 / SHA-256, the hex of the 64-byte `r‖s`, over the
 * exact bytes of the `"tcbInfo"` or `"enclaveIdentity"` JSON value (Intel
 * PCS API v4, "TCB Info" and "Enclave Identity" response bodies). The bytes
 * are never re-serialised. The TCB level walk follows Intel's Quote
 * Verification Library as summarised in go-tdx-guest's testdata README.
 *
 * @module
 */
import { EnarxError } from "../../errors.ts";
import { bytesEqual } from "../../bytes.ts";
import type { CertificateFields } from "../../x509_reader.ts";
import type { Check } from "../result.ts";
import { certificatesFromBytes, pemCertificates, verifyCertificateChain } from "../_x509_chain.ts";
import { INTEL_SGX_ROOT_CA_PEM } from "./intel_roots.ts";
import { TCB_STATUSES, type TcbStatus } from "./intel_tcb_status.ts";

/**
 * Intel SGX TCB Signing certificate (`CN=Intel SGX TCB Signing, O=Intel
 * Corporation, L=Santa Clara, ST=CA, C=US`, P-256, valid 2018-05-21 to
 * 2025-05-21, issued by the Intel SGX Root CA). A public certificate, as Intel
 * delivers it in the `TCB-Info-Issuer-Chain` header. Intel re-issues it with
 * the same key; for collateral issued after 2025-05-21 pass a current one.
 */
export const INTEL_TCB_SIGNING_CERT_PEM = `-----BEGIN CERTIFICATE-----
MIICizCCAjKgAwIBAgIUfjiC1ftVKUpASY5FhAPpFJG99FUwCgYIKoZIzj0EAwIw
aDEaMBgGA1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENv
cnBvcmF0aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJ
BgNVBAYTAlVTMB4XDTE4MDUyMTEwNTAxMFoXDTI1MDUyMTEwNTAxMFowbDEeMBwG
A1UEAwwVSW50ZWwgU0dYIFRDQiBTaWduaW5nMRowGAYDVQQKDBFJbnRlbCBDb3Jw
b3JhdGlvbjEUMBIGA1UEBwwLU2FudGEgQ2xhcmExCzAJBgNVBAgMAkNBMQswCQYD
VQQGEwJVUzBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABENFG8xzydWRfK92bmGv
P+mAh91PEyV7Jh6FGJd5ndE9aBH7R3E4A7ubrlh/zN3C4xvpoouGlirMba+W2lju
ypajgbUwgbIwHwYDVR0jBBgwFoAUImUM1lqdNInzg7SVUr9QGzknBqwwUgYDVR0f
BEswSTBHoEWgQ4ZBaHR0cHM6Ly9jZXJ0aWZpY2F0ZXMudHJ1c3RlZHNlcnZpY2Vz
LmludGVsLmNvbS9JbnRlbFNHWFJvb3RDQS5kZXIwHQYDVR0OBBYEFH44gtX7VSlK
QEmORYQD6RSRvfRVMA4GA1UdDwEB/wQEAwIGwDAMBgNVHRMBAf8EAjAAMAoGCCqG
SM49BAMCA0cAMEQCIB9C8wOAN/ImxDtGACV246KcqjagZOR0kyctyBrsGGJVAiAj
ftbrNGsGU8YH211dRiYNoPPu19Zp/ze8JmhujB0oBw==
-----END CERTIFICATE-----
`;

/** Collateral files larger than this are refused (Intel's are a few KiB). */
export const MAX_COLLATERAL_BYTES = 256 * 1024;

export { TCB_STATUSES, type TcbStatus };

/** The `tcbStatus` claim when no TCB level of the TCB Info matches the platform. */
export const NO_MATCHING_LEVEL = "no matching level";

/** Collateral that cannot be used: bad JSON, a missing or mistyped field. Exit status 65. */
export class MalformedCollateralError extends EnarxError {
  /** Makes an error with code `collateral-malformed`. */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("collateral-malformed", message, { exit: "dataError", cause: options.cause });
    this.name = "MalformedCollateralError";
  }
}

/** One level of a TCB Info's `tcbLevels`. */
export interface TcbLevel {
  /** The 16 SGX TCB component SVNs. */
  sgxTcbComponents: number[];
  /** PCE SVN. */
  pceSvn: number;
  /** The 16 TDX TCB component SVNs (v3 TDX TCB Info only). */
  tdxTcbComponents?: number[];
  /** When Intel published the level. */
  tcbDate: string;
  /** Intel's status for the level. */
  tcbStatus: TcbStatus;
  /** Security advisories that apply to the level. */
  advisoryIds: string[];
}

/** An enclave identity's level: the minimum ISVSVN and its status. */
export interface IsvSvnLevel {
  /** Minimum ISVSVN. */
  isvSvn: number;
  /** When Intel published the level. */
  tcbDate: string;
  /** Intel's status for the level. */
  tcbStatus: TcbStatus;
  /** Security advisories that apply to the level. */
  advisoryIds: string[];
}

/** A TDX module identity (`tdxModule` or one of `tdxModuleIdentities`). */
export interface TdxModuleIdentity {
  /** `TDX_01`, `TDX_03`...; empty for the v3 `tdxModule` entry. */
  id: string;
  /** MRSIGNERSEAM expected (48 bytes). */
  mrSigner: Uint8Array;
  /** SEAMATTRIBUTES expected after masking (8 bytes). */
  attributes: Uint8Array;
  /** Mask applied to SEAMATTRIBUTES (8 bytes). */
  attributesMask: Uint8Array;
  /** Levels by TDX module SVN (TEE_TCB_SVN[0]); absent for `tdxModule`. */
  tcbLevels: IsvSvnLevel[];
}

/** What is common to signed collateral: the signed bytes and the signature. */
export interface SignedCollateral {
  /** The exact bytes of the signed JSON value. */
  signedBytes: Uint8Array;
  /** The signature, raw r‖s (64 bytes). */
  signature: Uint8Array;
  /** `issueDate`. */
  issueDate: Date;
  /** `nextUpdate`. */
  nextUpdate: Date;
  /** `tcbEvaluationDataNumber`. */
  tcbEvaluationDataNumber: number;
  /** Where it came from, for messages (a file name). */
  source: string;
}

/** A parsed TCB Info. */
export interface TcbInfo extends SignedCollateral {
  /** Discriminator. */
  kind: "tcbInfo";
  /** "SGX" or "TDX" (v3); "SGX" for v2, which has no id. */
  id: "SGX" | "TDX";
  /** 2 or 3. */
  version: number;
  /** FMSPC, 6 bytes. */
  fmspc: Uint8Array;
  /** PCE id, 2 bytes. */
  pceId: Uint8Array;
  /** The levels, in Intel's order (best first). */
  tcbLevels: TcbLevel[];
  /** v3 TDX: the TDX module identity for TEE_TCB_SVN[1] = 0. */
  tdxModule?: TdxModuleIdentity;
  /** v3 TDX: module identities by major version. */
  tdxModuleIdentities?: TdxModuleIdentity[];
}

/** A parsed enclave identity (QE, TD_QE, QVE). */
export interface EnclaveIdentity extends SignedCollateral {
  /** Discriminator. */
  kind: "enclaveIdentity";
  /** "QE", "TD_QE" or "QVE". */
  id: string;
  /** 2. */
  version: number;
  /** Expected MISCSELECT after masking (u32). */
  miscSelect: number;
  /** MISCSELECT mask (u32). */
  miscSelectMask: number;
  /** Expected ATTRIBUTES after masking (16 bytes). */
  attributes: Uint8Array;
  /** ATTRIBUTES mask (16 bytes). */
  attributesMask: Uint8Array;
  /** Expected MRSIGNER (32 bytes). */
  mrSigner: Uint8Array;
  /** Expected ISVPRODID. */
  isvProdId: number;
  /** Levels by ISVSVN, best first. */
  tcbLevels: IsvSvnLevel[];
}

/** Parsed collateral of either kind. */
export type IntelCollateral = TcbInfo | EnclaveIdentity;

// ---------------------------------------------------------------------------
// Parsing

/**
 * Finds the byte span of each top-level member's value of a JSON object
 * text that `JSON.parse` has already accepted. Refuses duplicate members, so
 * the signed span and the parsed value can never be different members.
 */
function topLevelSpans(text: string, fail: (why: string) => never): Map<string, [number, number]> {
  const spans = new Map<string, [number, number]>();
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\r\n".includes(text[i])) i++;
  };
  const skipString = () => {
    i++; // opening quote
    while (text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
    i++;
  };
  const skipValue = () => {
    if (text[i] === '"') return skipString();
    if (text[i] === "{" || text[i] === "[") {
      let depth = 0;
      do {
        const c = text[i];
        if (c === '"') {
          skipString();
          continue;
        }
        if (c === "{" || c === "[") depth++;
        else if (c === "}" || c === "]") depth--;
        i++;
      } while (depth > 0);
      return;
    }
    while (i < text.length && !",}] \t\r\n".includes(text[i])) i++;
  };
  ws();
  if (text[i] !== "{") fail("it is not a JSON object");
  i++;
  ws();
  while (text[i] === '"') {
    const keyStart = i;
    skipString();
    const key = JSON.parse(text.slice(keyStart, i)) as string;
    ws();
    i++; // colon
    ws();
    const start = i;
    skipValue();
    if (spans.has(key)) fail(`member "${key}" appears twice`);
    spans.set(key, [start, i]);
    ws();
    if (text[i] === ",") {
      i++;
      ws();
    }
  }
  return spans;
}

type Obj = Record<string, unknown>;

/** Field readers that name the offending field in their errors. */
class Fields {
  #source: string;
  constructor(source: string) {
    this.#source = source;
  }
  fail(why: string): never {
    throw new MalformedCollateralError(
      `The collateral "${this.#source}" is not valid Intel TCB Info or enclave identity: ${why}; ` +
        `pass the JSON body Intel's PCS returned, unchanged`,
    );
  }
  obj(v: unknown, name: string): Obj {
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      this.fail(`"${name}" must be an object`);
    }
    return v as Obj;
  }
  arr(v: unknown, name: string, max = 256): unknown[] {
    if (!Array.isArray(v)) this.fail(`"${name}" must be an array`);
    if (v.length > max) this.fail(`"${name}" has ${v.length} entries, more than ${max}`);
    return v;
  }
  str(v: unknown, name: string): string {
    if (typeof v !== "string" || v.length > 4096) this.fail(`"${name}" must be a string`);
    return v;
  }
  int(v: unknown, name: string, max = 0xffff): number {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max) {
      this.fail(`"${name}" must be an integer from 0 to ${max}`);
    }
    return v;
  }
  hex(v: unknown, name: string, size: number): string {
    const s = this.str(v, name);
    if (!new RegExp(`^[0-9a-fA-F]{${2 * size}}$`).test(s)) {
      this.fail(`"${name}" must be ${size} bytes of hex, got "${s.slice(0, 100)}"`);
    }
    return s.toLowerCase();
  }
  bytes(v: unknown, name: string, size: number): Uint8Array {
    return Uint8Array.fromHex(this.hex(v, name, size));
  }
  date(v: unknown, name: string): Date {
    const s = this.str(v, name);
    const d = new Date(s);
    if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/.test(s) || Number.isNaN(d.getTime())) {
      this.fail(`"${name}" must be an ISO 8601 UTC time, got "${s.slice(0, 100)}"`);
    }
    return d;
  }
  status(v: unknown, name: string): TcbStatus {
    const s = this.str(v, name);
    if (!(TCB_STATUSES as readonly string[]).includes(s)) {
      this.fail(`"${name}" is "${s.slice(0, 100)}", not one of ${TCB_STATUSES.join(", ")}`);
    }
    return s as TcbStatus;
  }
  advisories(v: unknown, name: string): string[] {
    if (v === undefined) return [];
    return this.arr(v, name, 1024).map((a, i) => this.str(a, `${name}[${i}]`));
  }
}

function isvSvnLevels(f: Fields, v: unknown, name: string): IsvSvnLevel[] {
  const levels = f.arr(v, name).map((l, i) => {
    const level = f.obj(l, `${name}[${i}]`);
    const tcb = f.obj(level.tcb, `${name}[${i}].tcb`);
    return {
      isvSvn: f.int(tcb.isvsvn, `${name}[${i}].tcb.isvsvn`),
      tcbDate: f.date(level.tcbDate, `${name}[${i}].tcbDate`).toISOString(),
      tcbStatus: f.status(level.tcbStatus, `${name}[${i}].tcbStatus`),
      advisoryIds: f.advisories(level.advisoryIDs, `${name}[${i}].advisoryIDs`),
    };
  });
  if (levels.length === 0) f.fail(`"${name}" is empty`);
  return levels;
}

function components(f: Fields, v: unknown, name: string): number[] {
  const list = f.arr(v, name);
  if (list.length !== 16) f.fail(`"${name}" must have 16 entries, has ${list.length}`);
  return list.map((c, i) => f.int(f.obj(c, `${name}[${i}]`).svn, `${name}[${i}].svn`, 255));
}

function tcbLevel(f: Fields, v: unknown, name: string, version: number, tdx: boolean): TcbLevel {
  const level = f.obj(v, name);
  const tcb = f.obj(level.tcb, `${name}.tcb`);
  let sgx: number[];
  let tdxComponents: number[] | undefined;
  if (version === 2) {
    sgx = Array.from(
      { length: 16 },
      (_, i) => {
        const key = `sgxtcbcomp${String(i + 1).padStart(2, "0")}svn`;
        return f.int(tcb[key], `${name}.tcb.${key}`, 255);
      },
    );
  } else {
    sgx = components(f, tcb.sgxtcbcomponents, `${name}.tcb.sgxtcbcomponents`);
    if (tdx) tdxComponents = components(f, tcb.tdxtcbcomponents, `${name}.tcb.tdxtcbcomponents`);
  }
  return {
    sgxTcbComponents: sgx,
    pceSvn: f.int(tcb.pcesvn, `${name}.tcb.pcesvn`),
    tdxTcbComponents: tdxComponents,
    tcbDate: f.date(level.tcbDate, `${name}.tcbDate`).toISOString(),
    tcbStatus: f.status(level.tcbStatus, `${name}.tcbStatus`),
    advisoryIds: f.advisories(level.advisoryIDs, `${name}.advisoryIDs`),
  };
}

function moduleIdentity(f: Fields, v: unknown, name: string, withLevels: boolean) {
  const m = f.obj(v, name);
  return {
    id: withLevels ? f.str(m.id, `${name}.id`) : "",
    mrSigner: f.bytes(m.mrsigner, `${name}.mrsigner`, 48),
    attributes: f.bytes(m.attributes, `${name}.attributes`, 8),
    attributesMask: f.bytes(m.attributesMask, `${name}.attributesMask`, 8),
    tcbLevels: withLevels ? isvSvnLevels(f, m.tcbLevels, `${name}.tcbLevels`) : [],
  };
}

/**
 * Parses Intel collateral JSON: a TCB Info (`{"tcbInfo": …, "signature": …}`,
 * version 2 or 3) or an enclave identity (`{"enclaveIdentity": …,
 * "signature": …}`, version 2). `source` names the input in messages. Throws
 * {@link MalformedCollateralError} (exit status 65) for anything else.
 * Nothing is verified here; see {@link verifyCollateralSignature}.
 */
export function parseIntelCollateral(bytes: Uint8Array, source: string): IntelCollateral {
  const f: Fields = new Fields(source);
  if (!(bytes instanceof Uint8Array)) f.fail("it is not bytes");
  if (bytes.length > MAX_COLLATERAL_BYTES) {
    f.fail(`it is ${bytes.length} bytes, more than the ${MAX_COLLATERAL_BYTES} allowed`);
  }
  let text = "";
  let document: unknown;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
    document = JSON.parse(text);
  } catch (error) {
    f.fail(`it is not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  const top = f.obj(document, "the document");
  const spans = topLevelSpans(text, (why) => f.fail(why));
  const found = "tcbInfo" in top ? "tcbInfo" : "enclaveIdentity" in top ? "enclaveIdentity" : "";
  if (found === "") f.fail(`it has neither "tcbInfo" nor "enclaveIdentity"`);
  const kind: "tcbInfo" | "enclaveIdentity" = found;
  const span = spans.get(kind)!;
  const signedText = text.slice(span[0], span[1]);
  const signedBytes = new TextEncoder().encode(signedText);
  const signatureHex = f.hex(top.signature, "signature", 64);
  const body = f.obj(JSON.parse(signedText), kind);
  const common: SignedCollateral = {
    signedBytes,
    signature: Uint8Array.fromHex(signatureHex),
    issueDate: f.date(body.issueDate, `${kind}.issueDate`),
    nextUpdate: f.date(body.nextUpdate, `${kind}.nextUpdate`),
    tcbEvaluationDataNumber: f.int(
      body.tcbEvaluationDataNumber,
      `${kind}.tcbEvaluationDataNumber`,
      0xffffffff,
    ),
    source,
  };
  return kind === "enclaveIdentity"
    ? enclaveIdentityBody(f, body, common)
    : tcbInfoBody(f, body, common);
}

/** The fields of a signed `enclaveIdentity` (version 2). */
function enclaveIdentityBody(f: Fields, body: Obj, common: SignedCollateral): EnclaveIdentity {
  const version = f.int(body.version, "enclaveIdentity.version");
  if (version !== 2) f.fail(`enclave identity version ${version} is not supported; expected 2`);
  return {
    kind: "enclaveIdentity",
    ...common,
    id: f.str(body.id, "enclaveIdentity.id"),
    version,
    miscSelect: parseInt(f.hex(body.miscselect, "enclaveIdentity.miscselect", 4), 16),
    miscSelectMask: parseInt(f.hex(body.miscselectMask, "enclaveIdentity.miscselectMask", 4), 16),
    attributes: f.bytes(body.attributes, "enclaveIdentity.attributes", 16),
    attributesMask: f.bytes(body.attributesMask, "enclaveIdentity.attributesMask", 16),
    mrSigner: f.bytes(body.mrsigner, "enclaveIdentity.mrsigner", 32),
    isvProdId: f.int(body.isvprodid, "enclaveIdentity.isvprodid"),
    tcbLevels: isvSvnLevels(f, body.tcbLevels, "enclaveIdentity.tcbLevels"),
  };
}

/** The fields of a signed `tcbInfo` (version 2, or 3 for SGX or TDX). */
function tcbInfoBody(f: Fields, body: Obj, common: SignedCollateral): TcbInfo {
  const version = f.int(body.version, "tcbInfo.version");
  if (version !== 2 && version !== 3) {
    f.fail(`TCB Info version ${version} is not supported; expected 2 or 3`);
  }
  let id: "SGX" | "TDX" = "SGX";
  if (version === 3) {
    const s = f.str(body.id, "tcbInfo.id");
    if (s !== "SGX" && s !== "TDX") f.fail(`"tcbInfo.id" is "${s}", not SGX or TDX`);
    id = s === "TDX" ? "TDX" : "SGX";
  }
  const tcbType = f.int(body.tcbType, "tcbInfo.tcbType");
  if (tcbType !== 0) f.fail(`"tcbInfo.tcbType" is ${tcbType}; only 0 is defined`);
  const tdx = id === "TDX";
  const levels = f.arr(body.tcbLevels, "tcbInfo.tcbLevels").map((l, i) =>
    tcbLevel(f, l, `tcbInfo.tcbLevels[${i}]`, version, tdx)
  );
  if (levels.length === 0) f.fail(`"tcbInfo.tcbLevels" is empty`);
  const info: TcbInfo = {
    kind: "tcbInfo",
    ...common,
    id,
    version,
    fmspc: f.bytes(body.fmspc, "tcbInfo.fmspc", 6),
    pceId: f.bytes(body.pceId, "tcbInfo.pceId", 2),
    tcbLevels: levels,
  };
  if (tdx && body.tdxModule !== undefined) {
    info.tdxModule = moduleIdentity(f, body.tdxModule, "tcbInfo.tdxModule", false);
  }
  if (tdx && body.tdxModuleIdentities !== undefined) {
    info.tdxModuleIdentities = f.arr(body.tdxModuleIdentities, "tcbInfo.tdxModuleIdentities")
      .map((m, i) => moduleIdentity(f, m, `tcbInfo.tdxModuleIdentities[${i}]`, true));
  }
  return info;
}

// ---------------------------------------------------------------------------
// Signatures

const INTEL_ROOT_DER = pemCertificates(INTEL_SGX_ROOT_CA_PEM, "embedded Intel SGX Root CA")[0];
const INTEL_TCB_SIGNING_DER = pemCertificates(
  INTEL_TCB_SIGNING_CERT_PEM,
  "embedded Intel SGX TCB Signing certificate",
)[0];

/** Options of {@link verifyCollateralSignature}. */
export interface CollateralSignatureOptions {
  /** The verification time. */
  at: Date;
  /** Candidate signing certificates (DER or PEM) tried before the embedded Intel one. */
  signingCerts?: Uint8Array[];
  /** Roots to trust instead of the Intel SGX Root CA (DER or PEM). */
  trustedRoots?: Uint8Array[];
}

/** The outcome of checking one collateral item's signature and signer. */
export interface CollateralSignatureOutcome {
  /** The signature verifies with the signer's key. */
  signatureOk: boolean;
  /** The signer chains to a trusted root. */
  chainOk: boolean;
  /** The signer (and its chain) is valid at the verification time. */
  signerValid: boolean;
  /** Why not, or what was found; one line. */
  detail: string;
  /** The signer's subject, when the signature verified. */
  signer?: string;
}

async function signedWith(cert: CertificateFields, c: SignedCollateral): Promise<boolean> {
  try {
    const key = await crypto.subtle.importKey(
      "spki",
      cert.publicKey.spki as Uint8Array<ArrayBuffer>,
      { name: "ECDSA", namedCurve: "P-256" },
      false,
      ["verify"],
    );
    return await crypto.subtle.verify(
      { name: "ECDSA", hash: "SHA-256" },
      key,
      c.signature.slice(),
      c.signedBytes.slice(),
    );
  } catch {
    return false;
  }
}

/**
 * Checks that a TCB Info or enclave identity is signed by a TCB Signing
 * certificate that chains to a trusted root (by default Intel's), and that
 * the certificate is valid at `options.at`. Candidates are the given signing
 * certificates, the trusted roots themselves, then the embedded Intel one.
 */
export async function verifyCollateralSignature(
  collateral: SignedCollateral,
  options: CollateralSignatureOptions,
): Promise<CollateralSignatureOutcome> {
  const roots = options.trustedRoots !== undefined
    ? options.trustedRoots.flatMap((r, i) => certificatesFromBytes(r, `trusted root ${i}`))
    : [INTEL_ROOT_DER];
  const candidates = [
    ...(options.signingCerts ?? []).flatMap((c, i) =>
      certificatesFromBytes(c, `TCB signing certificate ${i}`)
    ),
    ...roots,
    INTEL_TCB_SIGNING_DER,
  ];
  let best: CollateralSignatureOutcome | undefined;
  for (const der of candidates) {
    const outcome = await verifyCertificateChain([der], {
      roots,
      at: options.at,
      chainId: "tcb-signing-chain",
      what: "TCB Signing certificate chain",
    });
    const cert = outcome.certificates[0];
    if (!await signedWith(cert, collateral)) continue;
    const chainOk = outcome.chain.ok && outcome.root.ok;
    const result = {
      signatureOk: true,
      chainOk,
      signerValid: outcome.validity.ok,
      signer: cert.subject,
      detail: !chainOk
        ? `signed by "${cert.subject}", which does not chain to a trusted root (${
          outcome.root.ok ? outcome.chain.detail : outcome.root.detail
        })`
        : !outcome.validity.ok
        ? `the TCB Signing certificate is not valid at ${options.at.toISOString()}: ${outcome.validity.detail}; ` +
          `pass a current one with --certs`
        : `signed by "${cert.subject}"`,
    };
    if (chainOk && outcome.validity.ok) return result;
    if (best === undefined || (chainOk && !best.chainOk)) best = result;
  }
  return best ?? {
    signatureOk: false,
    chainOk: false,
    signerValid: false,
    detail: "the signature does not verify with any trusted TCB Signing certificate",
  };
}

// ---------------------------------------------------------------------------
// TCB level matching

/** What the platform reports, for the TCB level walk. */
export interface PlatformTcb {
  /** The PCK's 16 SGX TCB component SVNs. */
  sgxTcbComponents: number[];
  /** The PCK's PCE SVN. */
  pceSvn: number;
  /** TDX: TEE_TCB_SVN from the TD report body (16 bytes). */
  teeTcbSvn?: Uint8Array;
  /** TDX: MRSIGNERSEAM (48 bytes). */
  mrSignerSeam?: Uint8Array;
  /** TDX: SEAMATTRIBUTES (8 bytes). */
  seamAttributes?: Uint8Array;
}

/** The outcome of the TCB level walk. */
export interface TcbEvaluation {
  /** The status, or {@link NO_MATCHING_LEVEL}. */
  status: TcbStatus | typeof NO_MATCHING_LEVEL;
  /** The matching platform level's date. */
  tcbDate?: string;
  /** Advisories of the matching level(s). */
  advisoryIds: string[];
  /** Index of the matching platform level. */
  levelIndex?: number;
  /** TDX module identity used (`TDX_01`...), when TEE_TCB_SVN[1] > 0. */
  tdxModuleId?: string;
  /** TDX module status, when a module identity was used. */
  tdxModuleStatus?: TcbStatus | typeof NO_MATCHING_LEVEL;
  /** Why the walk stopped short, one line. */
  detail: string;
}

function moduleMatches(m: TdxModuleIdentity, tcb: PlatformTcb): string | undefined {
  if (tcb.mrSignerSeam && !bytesEqual(tcb.mrSignerSeam, m.mrSigner)) {
    return `MRSIGNERSEAM ${tcb.mrSignerSeam.toHex()} is not the TDX module signer ${m.mrSigner.toHex()}`;
  }
  if (tcb.seamAttributes) {
    const masked = tcb.seamAttributes.map((b, i) => b & m.attributesMask[i]);
    if (!bytesEqual(masked, m.attributes)) {
      return `masked SEAMATTRIBUTES ${masked.toHex()} are not the TDX module's ${m.attributes.toHex()}`;
    }
  }
  return undefined;
}

/**
 * Combines a platform status with a TDX module's or QE's status as Intel's
 * QVL converges them: Revoked wins, then OutOfDate (keeping "configuration
 * needed"), else the platform status stands.
 */
export function convergeTcbStatus(platform: TcbStatus, other: TcbStatus): TcbStatus {
  if (platform === "Revoked" || other === "Revoked") return "Revoked";
  if (other === "OutOfDate" || other === "OutOfDateConfigurationNeeded") {
    return platform === "ConfigurationNeeded" || platform === "ConfigurationAndSWHardeningNeeded" ||
        platform === "OutOfDateConfigurationNeeded"
      ? "OutOfDateConfigurationNeeded"
      : "OutOfDate";
  }
  return platform;
}

/**
 * Walks the TCB Info's levels in order; the first whose every SGX component
 * and PCESVN (and, for TDX, every TEE_TCB_SVN byte) the platform meets
 * gives the status. For TDX with TEE_TCB_SVN[1] > 0, bytes 0 and 1 are left
 * out of that comparison and judged by the `TDX_%02X` module identity
 * instead, with TEE_TCB_SVN[0] as its ISVSVN; the two statuses converge.
 */
export function evaluateTcbLevel(info: TcbInfo, tcb: PlatformTcb): TcbEvaluation {
  const tdx = info.id === "TDX";
  if (tdx && tcb.teeTcbSvn === undefined) {
    return { status: NO_MATCHING_LEVEL, advisoryIds: [], detail: "the quote has no TD body" };
  }
  const tee = tcb.teeTcbSvn;
  const major = tee?.[1] ?? 0;
  let module: TdxModuleIdentity | undefined;
  if (tdx) {
    if (major > 0) {
      const want = `TDX_${major.toString(16).toUpperCase().padStart(2, "0")}`;
      module = info.tdxModuleIdentities?.find((m) => m.id === want);
      if (module === undefined) {
        return {
          status: NO_MATCHING_LEVEL,
          advisoryIds: [],
          tdxModuleId: want,
          detail: `the TCB Info has no TDX module identity ${want} for TEE_TCB_SVN[1] = ${major}`,
        };
      }
    } else module = info.tdxModule;
    const mismatch = module && moduleMatches(module, tcb);
    if (mismatch) return { status: NO_MATCHING_LEVEL, advisoryIds: [], detail: mismatch };
  }
  const index = info.tcbLevels.findIndex((level) =>
    level.sgxTcbComponents.every((v, i) => (tcb.sgxTcbComponents[i] ?? 0) >= v) &&
    tcb.pceSvn >= level.pceSvn &&
    (!tdx || level.tdxTcbComponents!.every((v, i) => (major > 0 && i < 2) || tee![i] >= v))
  );
  if (index < 0) {
    return {
      status: NO_MATCHING_LEVEL,
      advisoryIds: [],
      detail: `no level of the TCB Info (${info.tcbLevels.length}) is met by SGX components ` +
        `[${tcb.sgxTcbComponents.join(",")}], PCESVN ${tcb.pceSvn}` +
        (tdx ? `, TEE_TCB_SVN ${(tee!).toHex()}` : ""),
    };
  }
  const level = info.tcbLevels[index];
  const out: TcbEvaluation = {
    status: level.tcbStatus,
    tcbDate: level.tcbDate,
    advisoryIds: [...level.advisoryIds],
    levelIndex: index,
    detail: `level ${index} of ${info.tcbLevels.length}`,
  };
  if (tdx && major > 0 && module !== undefined) {
    out.tdxModuleId = module.id;
    const m = module.tcbLevels.find((l) => tee![0] >= l.isvSvn);
    if (m === undefined) {
      return {
        ...out,
        status: NO_MATCHING_LEVEL,
        tdxModuleStatus: NO_MATCHING_LEVEL,
        detail: `TDX module SVN ${tee![0]} is below every level of ${module.id}`,
      };
    }
    out.tdxModuleStatus = m.tcbStatus;
    out.status = convergeTcbStatus(level.tcbStatus, m.tcbStatus);
    for (const a of m.advisoryIds) if (!out.advisoryIds.includes(a)) out.advisoryIds.push(a);
    out.detail += `, ${module.id} ${m.tcbStatus}`;
  }
  return out;
}

// ---------------------------------------------------------------------------
// QE identity

/** The QE report fields an enclave identity is checked against. */
export interface QeReportFacts {
  /** MRSIGNER (32 bytes). */
  mrSigner: Uint8Array;
  /** ISVPRODID. */
  isvProdId: number;
  /** ISVSVN. */
  isvSvn: number;
  /** MISCSELECT. */
  miscSelect: number;
  /** ATTRIBUTES (flags then XFRM, 16 bytes). */
  attributes: Uint8Array;
}

/** The outcome of matching a QE report against an enclave identity. */
export interface QeIdentityEvaluation {
  /** Mismatches; empty when the report is this enclave. */
  problems: string[];
  /** The status of the first level the ISVSVN meets, or {@link NO_MATCHING_LEVEL}. */
  status: TcbStatus | typeof NO_MATCHING_LEVEL;
  /** That level's date. */
  tcbDate?: string;
  /** That level's advisories. */
  advisoryIds: string[];
}

/** Matches a QE report against an enclave identity (MRSIGNER, ISVPRODID, masked MISCSELECT and ATTRIBUTES, ISVSVN). */
export function evaluateQeIdentity(
  identity: EnclaveIdentity,
  qe: QeReportFacts,
): QeIdentityEvaluation {
  const problems: string[] = [];
  if (!bytesEqual(qe.mrSigner, identity.mrSigner)) {
    problems.push(
      `MRSIGNER ${qe.mrSigner.toHex()} is not ${identity.id}'s ${identity.mrSigner.toHex()}`,
    );
  }
  if (qe.isvProdId !== identity.isvProdId) {
    problems.push(`ISVPRODID ${qe.isvProdId}, expected ${identity.isvProdId}`);
  }
  const misc = (qe.miscSelect & identity.miscSelectMask) >>> 0;
  if (misc !== identity.miscSelect >>> 0) {
    problems.push(
      `masked MISCSELECT 0x${misc.toString(16)}, expected 0x${identity.miscSelect.toString(16)}`,
    );
  }
  const masked = qe.attributes.map((b, i) => b & identity.attributesMask[i]);
  if (!bytesEqual(masked, identity.attributes)) {
    problems.push(`masked ATTRIBUTES ${masked.toHex()}, expected ${identity.attributes.toHex()}`);
  }
  const level = identity.tcbLevels.find((l) => qe.isvSvn >= l.isvSvn);
  if (level === undefined) problems.push(`ISVSVN ${qe.isvSvn} is below every level`);
  return {
    problems,
    status: level?.tcbStatus ?? NO_MATCHING_LEVEL,
    tcbDate: level?.tcbDate,
    advisoryIds: level ? [...level.advisoryIds] : [],
  };
}

/** The validity window of collateral at `at`, or why it is outside it. */
export function collateralWindowProblem(c: SignedCollateral, at: Date): string | undefined {
  if (at < c.issueDate) {
    return `"${c.source}" is issued ${c.issueDate.toISOString()}, after ${at.toISOString()}`;
  }
  if (at > c.nextUpdate) {
    return `"${c.source}" was due for update ${c.nextUpdate.toISOString()}, before ${at.toISOString()}; ` +
      `fetch current collateral or verify with --at inside its window`;
  }
  return undefined;
}

/** A check record, leaving out an undefined detail. */
export function collateralCheck(
  id: string,
  { description, ok, detail }: Omit<Check, "id">,
): Check {
  return detail === undefined ? { id, description, ok } : { id, description, ok, detail };
}

// ---------------------------------------------------------------------------
// The checks of a quote against its collateral

/** What {@link collateralChecks} needs from a verified quote. */
export interface CollateralInput {
  /** TDX (TD_QE, TDX TCB Info) or SGX (QE, SGX TCB Info). */
  tdx: boolean;
  /** The PCK's SGX extension facts, when it could be read. */
  pck?: { fmspc?: Uint8Array; pceId?: Uint8Array; sgxTcbComponents: number[]; pceSvn?: number };
  /** TDX: TEE_TCB_SVN, MRSIGNERSEAM and SEAMATTRIBUTES of the TD body. */
  teeTcbSvn?: Uint8Array;
  /** TDX: MRSIGNERSEAM. */
  mrSignerSeam?: Uint8Array;
  /** TDX: SEAMATTRIBUTES. */
  seamAttributes?: Uint8Array;
  /** The QE report's facts. */
  qe: QeReportFacts;
  /** Collateral as given (JSON bytes), or already parsed. */
  collateral: readonly (Uint8Array | IntelCollateral)[];
  /** The verification time. */
  at: Date;
  /** The policy (reads `allowedTcbStatuses`). */
  policy?: unknown;
  /** Candidate TCB Signing certificates (DER or PEM). */
  signingCerts?: Uint8Array[];
  /** Roots to trust instead of Intel's. */
  trustedRoots?: Uint8Array[];
}

/** What {@link collateralChecks} found. */
export interface CollateralOutcome {
  /** The JSON-based `qe-identity` check, when an enclave identity was given. */
  qeIdentity?: Check;
  /** `tcb-info` and `tcb-status`, when a TCB Info was given. */
  checks: Check[];
  /** `tcbStatus` (null when not evaluated), `tcbDate`, `advisoryIds` and friends. */
  claims: Record<string, string | number | boolean | null | string[]>;
}

/** The TCB statuses a policy accepts beyond UpToDate (`allowedTcbStatuses`). */
export function policyAllowedTcbStatuses(policy: unknown): string[] {
  const v = typeof policy === "object" && policy !== null
    ? (policy as { allowedTcbStatuses?: unknown }).allowedTcbStatuses
    : undefined;
  return Array.isArray(v) ? v.filter((s): s is string => typeof s === "string") : [];
}

function pickTcbInfo(infos: TcbInfo[], input: CollateralInput): TcbInfo | undefined {
  const id = input.tdx ? "TDX" : "SGX";
  const ofType = infos.filter((i) => i.id === id);
  const pool = ofType.length > 0 ? ofType : infos;
  const fmspc = input.pck?.fmspc;
  const forPlatform = pool.filter((i) => fmspc !== undefined && bytesEqual(i.fmspc, fmspc));
  const candidates = forPlatform.length > 0 ? forPlatform : pool;
  return candidates.reduce<TcbInfo | undefined>(
    (best, i) =>
      best === undefined || i.tcbEvaluationDataNumber > best.tcbEvaluationDataNumber ? i : best,
    undefined,
  );
}

/**
 * Evaluates a quote against Intel collateral: the enclave identity of its QE
 * (the JSON-based `qe-identity` check) and its platform's TCB Info
 * (`tcb-info`, `tcb-status`). Without collateral it makes no check and
 * claims `tcbStatus: null`. Throws {@link MalformedCollateralError} for
 * collateral that cannot be parsed.
 */
export async function collateralChecks(input: CollateralInput): Promise<CollateralOutcome> {
  const parsed = input.collateral.map((c, i) =>
    c instanceof Uint8Array ? parseIntelCollateral(c, `collateral ${i}`) : c
  );
  const infos = parsed.filter((c): c is TcbInfo => c.kind === "tcbInfo");
  const identities = parsed.filter((c): c is EnclaveIdentity => c.kind === "enclaveIdentity");
  const out: CollateralOutcome = { checks: [], claims: { tcbStatus: null } };
  const qeStatus = identities.length > 0
    ? await qeIdentityCheck(identities, input, out)
    : undefined;
  const info = pickTcbInfo(infos, input);
  if (info === undefined) return out;
  out.checks.push(await tcbInfoCheck(info, input));
  out.checks.push(tcbStatusCheck(info, input, { qeStatus, claims: out.claims }));
  return out;
}

function collateralSignatureOptions(input: CollateralInput): CollateralSignatureOptions {
  return { at: input.at, signingCerts: input.signingCerts, trustedRoots: input.trustedRoots };
}

/**
 * Sets `out.qeIdentity` (and the QE claims) from the newest enclave identity
 * of the quote's QE; returns the QE's TCB status when a level matched.
 */
async function qeIdentityCheck(
  identities: EnclaveIdentity[],
  input: CollateralInput,
  out: CollateralOutcome,
): Promise<TcbStatus | undefined> {
  const qeId = input.tdx ? "TD_QE" : "QE";
  const identity = identities.filter((i) => i.id === qeId)
    .sort((a, b) => b.tcbEvaluationDataNumber - a.tcbEvaluationDataNumber)[0];
  const description = `The quoting enclave matches Intel's signed ${qeId} identity`;
  if (identity === undefined) {
    out.qeIdentity = collateralCheck("qe-identity", {
      description,
      ok: false,
      detail: `The collateral has enclave identities ${
        identities.map((i) => `"${i.id}"`).join(", ")
      }, not the "${qeId}" this quote needs`,
    });
    return undefined;
  }
  const sig = await verifyCollateralSignature(identity, collateralSignatureOptions(input));
  const evaluation = evaluateQeIdentity(identity, input.qe);
  const problems = [...evaluation.problems];
  if (!sig.signatureOk || !sig.chainOk || !sig.signerValid) problems.unshift(sig.detail);
  const window = collateralWindowProblem(identity, input.at);
  if (window) problems.push(window);
  if (evaluation.status === "Revoked") problems.push(`QE ISVSVN ${input.qe.isvSvn} is revoked`);
  out.claims.qeTcbStatus = evaluation.status;
  if (evaluation.tcbDate) out.claims.qeTcbDate = evaluation.tcbDate;
  if (evaluation.advisoryIds.length > 0) out.claims.qeAdvisoryIds = evaluation.advisoryIds;
  out.qeIdentity = collateralCheck("qe-identity", {
    description,
    ok: problems.length === 0,
    detail: problems.length === 0
      ? `ISVSVN ${input.qe.isvSvn}: ${evaluation.status} (identity ${identity.id}, ` +
        `evaluation data ${identity.tcbEvaluationDataNumber})`
      : problems.join("; "),
  });
  return evaluation.status !== NO_MATCHING_LEVEL ? evaluation.status : undefined;
}

/** The `tcb-info` check: signed by Intel, for this platform's FMSPC and PCE, and current. */
async function tcbInfoCheck(info: TcbInfo, input: CollateralInput): Promise<Check> {
  const problems: string[] = [];
  const sig = await verifyCollateralSignature(info, collateralSignatureOptions(input));
  if (!sig.signatureOk || !sig.chainOk || !sig.signerValid) problems.push(sig.detail);
  const wantId = input.tdx ? "TDX" : "SGX";
  if (info.id !== wantId) problems.push(`the TCB Info is for ${info.id}, not ${wantId}`);
  if (input.pck?.fmspc === undefined) problems.push("the PCK certificate gives no FMSPC");
  else if (!bytesEqual(info.fmspc, input.pck.fmspc)) {
    problems.push(
      `the TCB Info is for FMSPC ${info.fmspc.toHex()}, not this platform's ${input.pck.fmspc.toHex()}`,
    );
  }
  if (input.pck?.pceId !== undefined && !bytesEqual(info.pceId, input.pck.pceId)) {
    problems.push(
      `the TCB Info is for PCE id ${info.pceId.toHex()}, not ${input.pck.pceId.toHex()}`,
    );
  }
  const window = collateralWindowProblem(info, input.at);
  if (window) problems.push(window);
  return collateralCheck("tcb-info", {
    description:
      "The TCB Info is signed by Intel's TCB Signing key, for this platform, and current",
    ok: problems.length === 0,
    detail: problems.length === 0
      ? `FMSPC ${info.fmspc.toHex()}, evaluation data ${info.tcbEvaluationDataNumber}, ` +
        `${info.issueDate.toISOString()} to ${info.nextUpdate.toISOString()}`
      : problems.join("; "),
  });
}

/**
 * The `tcb-status` check: the platform's TCB level (converged with the QE's
 * status) is UpToDate or one the policy allows; writes the TCB claims.
 */
function tcbStatusCheck(
  info: TcbInfo,
  input: CollateralInput,
  { qeStatus, claims }: { qeStatus?: TcbStatus; claims: CollateralOutcome["claims"] },
): Check {
  if (input.pck === undefined || input.pck.pceSvn === undefined) {
    return collateralCheck("tcb-status", {
      description: "The platform's TCB level is one the policy accepts",
      ok: false,
      detail: "The PCK certificate gives no TCB to evaluate",
    });
  }
  const evaluation = evaluateTcbLevel(info, {
    sgxTcbComponents: input.pck.sgxTcbComponents,
    pceSvn: input.pck.pceSvn,
    teeTcbSvn: input.teeTcbSvn,
    mrSignerSeam: input.mrSignerSeam,
    seamAttributes: input.seamAttributes,
  });
  let status = evaluation.status;
  if (status !== NO_MATCHING_LEVEL && qeStatus !== undefined) {
    status = convergeTcbStatus(status, qeStatus);
  }
  claims.tcbStatus = status;
  claims.tcbDate = evaluation.tcbDate ?? null;
  claims.advisoryIds = evaluation.advisoryIds;
  claims.tcbEvaluationDataNumber = info.tcbEvaluationDataNumber;
  if (evaluation.levelIndex !== undefined) claims.tcbLevel = evaluation.levelIndex;
  if (evaluation.tdxModuleId !== undefined) claims.tdxModuleIdentity = evaluation.tdxModuleId;
  if (evaluation.tdxModuleStatus !== undefined) {
    claims.tdxModuleTcbStatus = evaluation.tdxModuleStatus;
  }
  const allowed = policyAllowedTcbStatuses(input.policy);
  const ok = status === "UpToDate" || (status !== NO_MATCHING_LEVEL && allowed.includes(status));
  return collateralCheck("tcb-status", {
    description: "The platform's TCB level is UpToDate (or a status the policy allows)",
    ok,
    detail: `${status}: ${evaluation.detail}` +
      (qeStatus !== undefined && qeStatus !== "UpToDate" ? `; QE ${qeStatus}` : "") +
      (ok || status === NO_MATCHING_LEVEL
        ? ""
        : `; allowed: ${["UpToDate", ...allowed].join(", ")}`),
  });
}
