/**
 * Verifies an AMD SEV-SNP attestation report: its format, the certificate
 * chain ARK → ASK → VCEK (or ARK → ASVK → VLEK) up to a pinned AMD root,
 * the VCEK's TCB and hwID extensions against the report, the ECDSA P-384
 * signature, then the policy (debug, migration, measurement, report data,
 * minimum TCB). Every check is listed in the result; nothing short-circuits,
 * so a person sees everything that is wrong at once.
 *
 * Steps follow AMD #56860 (report), #57230 (VCEK certificates and
 * extensions). The verifier never
 * reads the clock: certificate validity is checked at `options.at`.
 *
 * Parsed certificates, imported keys and checked certificate signatures are
 * cached by the certificates' bytes, so verifying many reports from the
 * same chain costs one ECDSA verification each.
 *
 * @module
 */
import { pemBlocks, readDerElement, sha256Fingerprint } from "../../der_reader.ts";
import {
  type CertificateFields,
  checkSignedBy,
  type CrlFields,
  readCertificate,
  readCrl,
} from "../../x509_reader.ts";
import { isAllZero } from "../_bytes.ts";
import { cachedParse, clearCertificateCache } from "../_cert_cache.ts";
import { findIssuer } from "../_x509_chain.ts";
import { bytesEqual } from "../../bytes.ts";
import { AMD_SNP_ROOTS } from "./amd_roots.ts";
import { AMD_OID } from "./amd_oids.ts";
import { DEFAULT_POLICY, type Policy } from "../policy.ts";
import {
  type Check,
  MalformedEvidenceError,
  resultFromChecks,
  type SnpClaims,
  type VerificationResult,
} from "../result.ts";
import { evaluatePolicy, type PolicySubject, SNP_POLICY_PROFILE } from "../policy_checks.ts";
import { looksLikeSnpCertTable, parseSnpCertTable } from "./snp_cert_table.ts";
import {
  parseSnpReport,
  SNP_PRODUCTS,
  type SnpProduct,
  snpProductFromCpuid,
  type SnpReport,
  snpReportClaims,
  type SnpTcb,
} from "./snp_report.ts";

/** Options of {@link verifySnpReport}. */
export interface SnpVerifyOptions {
  /**
   * Certificates: DER, PEM (one or a chain) or an extended report's
   * certificate table, in any order. At least the VCEK (or VLEK) is needed;
   * AMD's ASKs, ASVKs and ARKs are embedded. A root supplied here is never
   * trusted unless it is pinned.
   */
  certs?: Uint8Array[];
  /** The policy; defaults to {@link DEFAULT_POLICY} (refuse debug and migration). */
  policy?: Policy;
  /** The time at which certificates must be valid. Required: the verifier never reads the clock. */
  at: Date;
  /** More roots to trust beyond AMD's (DER or PEM), e.g. a test ARK. */
  trustedRoots?: Uint8Array[];
  /**
   * SHA-256 fingerprints (hex, optionally `sha256:`) of simulated platforms'
   * roots the caller trusts, beside the policy's `trust_simulated_root`. A
   * chain is simulated only when its root is one of these; any other root
   * that is not pinned is simply untrusted.
   */
  simulatorRoots?: readonly string[];
  /** AMD CRLs (DER or PEM); revoked ASK/ASVK or VCEK/VLEK serials fail the `revocation` check. */
  crls?: Uint8Array[];
  /** Expected REPORT_DATA (zero-padded to 64 bytes); overrides the policy's. */
  reportData?: Uint8Array;
  /** Expected MEASUREMENT; checked in addition to the policy's list. */
  measurement?: Uint8Array;
}

export { AMD_OID } from "./amd_oids.ts";

/** The AMD extensions of a VCEK or VLEK. */
export interface AmdCertExtensions {
  /** structVersion (0 Milan/Genoa, 1 Turin). */
  structVersion: number | null;
  /** productName, e.g. "Milan-B0", "Genoa". */
  productName: string | null;
  /** Boot loader SPL. */
  bootloader: number | null;
  /** TEE SPL. */
  tee: number | null;
  /** SNP SPL. */
  snp: number | null;
  /** Microcode SPL. */
  microcode: number | null;
  /** FMC SPL (Turin). */
  fmc: number | null;
  /** hwID: the CHIP_ID the VCEK is for (64 bytes; 8 on Turin). VCEK only. */
  hwId: Uint8Array | null;
  /** cspID: the cloud provider a VLEK is for. VLEK only. */
  cspId: string | null;
}

function derInteger(value: Uint8Array): number | null {
  try {
    const e = readDerElement(value, 0);
    if (e.tag !== 0x02 || e.end !== value.length || e.end - e.valueStart > 4) return null;
    let n = 0;
    for (let i = e.valueStart; i < e.end; i++) n = n * 256 + value[i];
    if (value[e.valueStart] & 0x80) return null; // negative
    return n;
  } catch {
    return null;
  }
}

function derString(value: Uint8Array): string | null {
  try {
    const e = readDerElement(value, 0);
    if ((e.tag !== 0x16 && e.tag !== 0x0c && e.tag !== 0x13) || e.end !== value.length) return null;
    return new TextDecoder().decode(value.subarray(e.valueStart, e.end));
  } catch {
    return null;
  }
}

/**
 * Reads AMD's extensions from a VCEK or VLEK. The hwID is accepted raw (as
 * AMD's key server writes it) or wrapped in an OCTET STRING (`04 40 …`).
 */
export function amdCertExtensions(cert: CertificateFields): AmdCertExtensions {
  const ext = new Map<string, Uint8Array>();
  for (const e of cert.extensions) ext.set(e.oid, e.value);
  const int = (oid: string) => (ext.has(oid) ? derInteger(ext.get(oid)!) : null);
  let hwId = ext.get(AMD_OID.hwId) ?? null;
  if (hwId && (hwId.length === 66 || hwId.length === 10) && hwId[0] === 0x04) {
    if (hwId[1] === hwId.length - 2) hwId = hwId.slice(2);
  }
  return {
    structVersion: int(AMD_OID.structVersion),
    productName: ext.has(AMD_OID.productName) ? derString(ext.get(AMD_OID.productName)!) : null,
    bootloader: int(AMD_OID.blSpl),
    tee: int(AMD_OID.teeSpl),
    snp: int(AMD_OID.snpSpl),
    microcode: int(AMD_OID.ucodeSpl),
    fmc: int(AMD_OID.fmcSpl),
    hwId,
    cspId: ext.has(AMD_OID.cspId) ? derString(ext.get(AMD_OID.cspId)!) : null,
  };
}

// ---------------------------------------------------------------------------
// Certificate cache

interface CertEntry {
  der: Uint8Array;
  cert: CertificateFields;
  fingerprint: string;
  commonName: string;
  ecdsaKey?: Promise<CryptoKey>;
  extensions?: AmdCertExtensions;
}

function commonNameOf(cert: CertificateFields): string {
  return cert.subjectCommonName ?? cert.subject;
}

/** A certificate parsed through the shared cache, with what the SNP checks read of it. */
function certEntry(der: Uint8Array): Promise<CertEntry> {
  let cert: CertificateFields;
  try {
    cert = cachedParse("x509", der, () => readCertificate(der));
  } catch (error) {
    throw new MalformedEvidenceError(
      `A certificate (${der.length} bytes) is not valid DER X.509: ${
        error instanceof Error ? error.message : error
      }`,
      { cause: error },
    );
  }
  return cachedParse("amd-snp", der, async () => ({
    der: der.slice(),
    cert,
    fingerprint: await sha256Fingerprint(der),
    commonName: commonNameOf(cert),
  }));
}

/**
 * Forgets every parsed certificate and checked signature, AMD's and the other
 * vendors' alike (one cache), the embedded roots included (for a cold
 * benchmark).
 */
export function clearSnpCertificateCache(): void {
  clearCertificateCache();
}

/** Which of `candidates` issued `child` (RSA-PSS or ECDSA), each pair checked once. */
function issuerOf(
  child: CertEntry,
  candidates: readonly CertEntry[],
): Promise<CertEntry | undefined> {
  return findIssuer(child.cert, candidates, { certificate: (e) => e.cert, scheme: "x509" });
}

/**
 * AMD's embedded ARKs, or ASKs and ASVKs, whose subject is `name`, parsed,
 * in AMD_SNP_ROOTS's order. The issuer search skips a candidate of another
 * name, so parsing only these finds what parsing all nine would, without
 * the nine RSA-4096 parses (15-30 ms) that a simulated chain never uses.
 */
function embeddedNamed(name: string, which: "ark" | "intermediate"): Promise<CertEntry[]> {
  const pems: string[] = [];
  for (const r of AMD_SNP_ROOTS) {
    if (which === "ark" && r.arkSubject === name) pems.push(r.arkPem);
    if (which === "intermediate" && r.askSubject === name) pems.push(r.askPem);
    if (which === "intermediate" && r.asvkSubject === name) pems.push(r.asvkPem);
  }
  return Promise.all(pems.map((pem) => certEntry(pemBlocks(pem)[0])));
}

/**
 * Splits certificate inputs into DER certificates: each input may be DER,
 * PEM text holding one or more certificates, or an SNP certificate table.
 * Throws MalformedEvidenceError for anything else.
 */
export function splitCertificateInputs(inputs: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const input of inputs) {
    const head = new TextDecoder().decode(input.subarray(0, 64)).trimStart();
    if (head.startsWith("-----BEGIN")) {
      const blocks = pemBlocks(new TextDecoder().decode(input));
      if (blocks.length === 0) {
        throw new MalformedEvidenceError("A PEM input holds no CERTIFICATE block");
      }
      out.push(...blocks);
    } else if (looksLikeSnpCertTable(input)) {
      for (const e of parseSnpCertTable(input)) {
        if (e.kind === "ark" || e.kind === "ask" || e.kind === "vcek" || e.kind === "vlek") {
          out.push(e.data);
        }
      }
    } else if (input.length > 0 && input[0] === 0x30) {
      out.push(input);
    } else {
      throw new MalformedEvidenceError(
        `A certificate input (${input.length} bytes) is neither DER, PEM nor an SNP certificate table`,
      );
    }
  }
  return out;
}

function crlInputs(inputs: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const input of inputs) {
    const head = new TextDecoder().decode(input.subarray(0, 64)).trimStart();
    if (head.startsWith("-----BEGIN")) {
      out.push(...pemBlocks(new TextDecoder().decode(input), "X509 CRL"));
    } else out.push(input);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Checks

function check(id: string, description: string, ok: boolean, detail?: string): Check {
  return detail === undefined ? { id, description, ok } : { id, description, ok, detail };
}

/** Whether the root is a simulator's the caller or the policy trusts: by fingerprint only. */
function isTrustedSimulator(entry: CertEntry, options: SnpVerifyOptions, policy: Policy): boolean {
  const trusted = [...(options.simulatorRoots ?? [])];
  if (typeof policy.trustSimulatedRoot === "string") trusted.push(policy.trustSimulatedRoot);
  return trusted.some((f) => f.replace(/^sha256:/i, "").toLowerCase() === entry.fingerprint);
}

function productFromArk(entry: CertEntry): SnpProduct | null {
  for (const p of SNP_PRODUCTS) if (entry.commonName.startsWith(`ARK-${p}`)) return p;
  return null;
}

function isAmdPss(cert: CertificateFields): boolean {
  const alg = cert.signatureAlgorithm;
  return alg.name === "RSA-PSS" && alg.hash === "SHA-384" && alg.saltLength === 48;
}

function iso(d: Date): string {
  return isNaN(d.getTime()) ? String(d) : d.toISOString();
}

interface Chain {
  leaf?: CertEntry;
  intermediate?: CertEntry;
  root?: CertEntry;
  rootTrusted: boolean;
  rootPinnedAmd: boolean;
  simulated: boolean;
  product: SnpProduct | null;
  problems: string[];
}

async function buildChain(
  report: SnpReport,
  supplied: CertEntry[],
  pinned: CertEntry[],
  options: SnpVerifyOptions,
  policy: Policy,
): Promise<Chain> {
  const chain: Chain = {
    rootTrusted: false,
    rootPinnedAmd: false,
    simulated: false,
    product: null,
    problems: [],
  };
  const kind = report.keyInfo.signingKey;
  const leafCn = kind === "vlek" ? "SEV-VLEK" : "SEV-VCEK";
  const isLeaf = (e: CertEntry) => e.cert.publicKey.name === "ECDSA";
  const leaves = supplied.filter(isLeaf);
  chain.leaf = leaves.find((e) => e.commonName.startsWith(leafCn)) ??
    (leaves.length === 1 && !leaves[0].commonName.startsWith("SEV-V") ? leaves[0] : undefined);
  if (!chain.leaf) return chain;

  const selfSigned = (e: CertEntry) => e.cert.subject === e.cert.issuer;
  const candidates = [
    ...supplied.filter((e) => !isLeaf(e) && !selfSigned(e)),
    ...await embeddedNamed(chain.leaf.cert.issuer, "intermediate"),
  ];
  chain.intermediate = await issuerOf(chain.leaf, candidates);
  if (!chain.intermediate) {
    chain.problems.push(`no known ASK or ASVK signed "${chain.leaf.cert.subject}"`);
    return chain;
  }
  const expectVlek = kind === "vlek";
  const intermediateIsVlek = chain.intermediate.commonName.startsWith("SEV-VLEK");
  if (expectVlek !== intermediateIsVlek) {
    chain.problems.push(
      `the report is signed by a ${kind.toUpperCase()} but its issuer is "${chain.intermediate.commonName}"`,
    );
  }
  // AMD's ARKs first, then the caller's roots, then any self-signed one supplied.
  const rootCandidates = [
    ...await embeddedNamed(chain.intermediate.cert.issuer, "ark"),
    ...pinned,
    ...supplied.filter(selfSigned),
  ];
  chain.root = await issuerOf(chain.intermediate, rootCandidates);
  if (!chain.root) {
    chain.problems.push(`no root signed "${chain.intermediate.cert.subject}"`);
    return chain;
  }
  if (await issuerOf(chain.root, [chain.root]) === undefined) {
    chain.problems.push(`the root "${chain.root.commonName}" is not validly self-signed`);
  }
  for (const e of [chain.leaf, chain.intermediate, chain.root]) {
    if (!isAmdPss(e.cert)) {
      chain.problems.push(`"${e.commonName}" is not signed with RSA-PSS, SHA-384, salt 48`);
    }
  }
  const amd = AMD_SNP_ROOTS.find((r) => r.arkSha256 === chain.root!.fingerprint);
  chain.product = amd?.product ?? productFromArk(chain.root);
  if (amd) {
    chain.rootTrusted = true;
    chain.rootPinnedAmd = true;
  } else if (pinned.includes(chain.root)) {
    chain.rootTrusted = true;
  } else if (isTrustedSimulator(chain.root, options, policy)) {
    chain.simulated = true;
    chain.rootTrusted = true;
  }
  return chain;
}

/** The supplied certificates and the caller's pinned roots (AMD's: embeddedNamed), parsed once. */
async function certificateEntries(
  options: SnpVerifyOptions,
): Promise<{ supplied: CertEntry[]; pinned: CertEntry[] }> {
  const supplied: CertEntry[] = [];
  for (const der of splitCertificateInputs(options.certs ?? [])) {
    const e = await certEntry(der);
    if (!supplied.includes(e)) supplied.push(e);
  }
  const pinned: CertEntry[] = [];
  for (const der of splitCertificateInputs(options.trustedRoots ?? [])) {
    pinned.push(await certEntry(der));
  }
  return { supplied, pinned };
}

/** The report's format checks: well-formed fields, and a VCEK or VLEK signature. */
function formatChecks(report: SnpReport): Check[] {
  const kind = report.keyInfo.signingKey;
  const checks: Check[] = [];
  checks.push(check(
    "report-format",
    "Report fields are well formed (reserved fields zero, ECDSA P-384 signature)",
    report.formatProblems.length === 0,
    report.formatProblems.length === 0
      ? `version ${report.version}`
      : report.formatProblems.join("; "),
  ));
  checks.push(check(
    "signing-key",
    "The report is signed by a VCEK or a VLEK",
    kind === "vcek" || kind === "vlek",
    kind === "vcek" || kind === "vlek"
      ? kind.toUpperCase()
      : `KEY_INFO.SIGNING_KEY is ${report.keyInfo.signingKeyValue} (${kind}): the report is not signed`,
  ));

  return checks;
}

/** What the chain checks need besides the chain. */
interface ChainCheckContext {
  kind: string;
  leafName: string;
  supplied: number;
}

/** The root check's detail: pinned, simulated, trusted or not. */
function rootDetail(chain: Chain): string {
  if (!chain.root) return "no root reached";
  if (chain.rootPinnedAmd) {
    return `pinned AMD ${chain.root.commonName} (sha256 ${chain.root.fingerprint})`;
  }
  if (chain.simulated) {
    return `simulated platform's root trusted by its fingerprint (sha256 ${chain.root.fingerprint}); ` +
      `this evidence proves nothing about hardware`;
  }
  if (chain.rootTrusted) {
    return `trusted root ${chain.root.commonName} (sha256 ${chain.root.fingerprint})`;
  }
  return `"${chain.root.cert.subject}" (sha256 ${chain.root.fingerprint}) is not a pinned AMD ARK; ` +
    `a simulated platform's root is trusted only by its fingerprint ` +
    `(trust_simulated_root = "sha256:${chain.root.fingerprint}")`;
}

/** The certificates, chain and root checks. */
function chainChecks(chain: Chain, { kind, leafName, supplied }: ChainCheckContext): Check[] {
  const checks: Check[] = [];
  checks.push(check(
    "certificates",
    `The ${leafName} certificate is supplied`,
    chain.leaf !== undefined,
    chain.leaf
      ? `"${chain.leaf.cert.subject}"`
      : `No ${leafName} among ${supplied} certificate(s); pass it with --certs ` +
        `(from the extended report, or AMD's key server)`,
  ));
  const chainOk = chain.leaf !== undefined && chain.intermediate !== undefined &&
    chain.root !== undefined && chain.problems.length === 0;
  checks.push(check(
    "chain",
    `${leafName} ← ${
      kind === "vlek" ? "ASVK" : "ASK"
    } ← ARK signatures are valid (RSA-PSS, SHA-384)`,
    chainOk,
    chainOk
      ? `${chain.leaf!.commonName} ← ${chain.intermediate!.commonName} ← ${chain.root!.commonName}`
      : chain.leaf
      ? chain.problems.join("; ")
      : "no leaf certificate",
  ));
  checks.push(check(
    "root",
    "The chain ends in a trusted root (AMD's pinned ARK)",
    chain.root !== undefined && chain.rootTrusted,
    rootDetail(chain),
  ));
  return checks;
}

/** Every certificate of the chain is valid at `at`. */
function validityCheck(chain: Chain, at: Date): Check {
  const path = [chain.leaf, chain.intermediate, chain.root].filter((e): e is CertEntry => !!e);
  const invalid = path.filter((e) => !(e.cert.notBefore <= at && at <= e.cert.notAfter));
  return check(
    "validity",
    `Certificates are valid at ${iso(at)}`,
    path.length > 0 && invalid.length === 0,
    path.length === 0
      ? "no certificates"
      : invalid.length === 0
      ? `${chain.leaf!.commonName} valid ${iso(chain.leaf!.cert.notBefore)} … ${
        iso(chain.leaf!.cert.notAfter)
      }`
      : invalid.map((e) =>
        at < e.cert.notBefore
          ? `"${e.commonName}" is not valid before ${iso(e.cert.notBefore)}`
          : `"${e.commonName}" expired ${iso(e.cert.notAfter)}`
      ).join("; ") + "; use --at to verify as of a time inside the validity",
  );
}

/** The report's claims with the product, the chain's summary and whether it is simulated. */
function snpClaims(
  report: SnpReport,
  { chain, ext, product, leafName }: {
    chain: Chain;
    ext: AmdCertExtensions | null;
    product: SnpProduct | null;
    leafName: string;
  },
): SnpClaims {
  const claims = snpReportClaims(report);
  claims.product = product;
  claims.chain = {
    leaf: chain.leaf ? leafName : null,
    leafSubject: chain.leaf?.cert.subject ?? null,
    leafNotBefore: chain.leaf ? iso(chain.leaf.cert.notBefore) : null,
    leafNotAfter: chain.leaf ? iso(chain.leaf.cert.notAfter) : null,
    productName: ext?.productName ?? null,
    cspId: ext?.cspId ?? null,
    intermediate: chain.intermediate?.commonName ?? null,
    root: chain.root?.commonName ?? null,
    rootSha256: chain.root?.fingerprint ?? null,
  };
  claims.simulated = chain.simulated;
  return claims;
}

/**
 * Verifies an SNP ATTESTATION_REPORT (1184 bytes) with its certificates.
 * Throws MalformedEvidenceError for input that cannot be parsed; returns a
 * result whose `ok` is false when any check fails.
 */
export async function verifySnpReport(
  evidence: Uint8Array,
  options: SnpVerifyOptions,
): Promise<VerificationResult> {
  if (!(options.at instanceof Date) || isNaN(options.at.getTime())) {
    throw new TypeError("verifySnpReport needs options.at, a valid Date");
  }
  const policy = options.policy ?? DEFAULT_POLICY;
  let report = parseSnpReport(evidence);
  const { supplied, pinned } = await certificateEntries(options);

  const checks: Check[] = [];
  const kind = report.keyInfo.signingKey;

  // 1. Format.
  checks.push(...formatChecks(report));

  // 2. Chain.
  const chain = await buildChain(report, supplied, pinned, options, policy);
  if (report.product === null && chain.product !== null) {
    report = parseSnpReport(evidence, { product: chain.product });
  }
  const leafName = kind === "vlek" ? "VLEK" : "VCEK";
  checks.push(...chainChecks(chain, { kind, leafName, supplied: supplied.length }));

  // 3. Validity at `at`.
  checks.push(validityCheck(chain, options.at));

  // 4. Revocation, when CRLs are given.
  if (options.crls && options.crls.length > 0) {
    checks.push(await revocationCheck(options.crls, chain, options.at));
  }

  // 5. VCEK extensions against the report.
  const ext = chain.leaf ? (chain.leaf.extensions ??= amdCertExtensions(chain.leaf.cert)) : null;
  const product = chain.product ?? report.product;
  const tcb = report.reportedTcb;
  checks.push(tcbCheck(ext, tcb, product));
  checks.push(chipIdCheck(ext, report, kind, product));
  checks.push(productCheck(report, chain, ext));

  // 6. The signature.
  checks.push(await signatureCheck(report, chain.leaf));

  // 7. Policy.
  checks.push(...evaluatePolicy(snpPolicySubject(report, product), { ...options, policy }));

  const claims = snpClaims(report, { chain, ext, product, leafName });
  return resultFromChecks("snp", { checks, claims, simulated: chain.simulated });
}

function tcbCheck(ext: AmdCertExtensions | null, tcb: SnpTcb, product: SnpProduct | null): Check {
  const id = "tcb-match";
  const description = "The VCEK's TCB extensions equal the report's REPORTED_TCB";
  if (!ext) return check(id, description, false, "no VCEK");
  const pairs: [string, number | null, number | null][] = [
    ["bootloader", ext.bootloader, tcb.bootloader],
    ["tee", ext.tee, tcb.tee],
    ["snp", ext.snp, tcb.snp],
    ["microcode", ext.microcode, tcb.microcode],
  ];
  if (product === "Turin") pairs.unshift(["fmc", ext.fmc, tcb.fmc]);
  const bad = pairs.filter(([, c, r]) => c === null || c !== r);
  return check(
    id,
    description,
    bad.length === 0,
    bad.length === 0
      ? pairs.map(([n, c]) => `${n} ${c}`).join(", ")
      : bad.map(([n, c, r]) => `${n}: certificate ${c ?? "missing"}, report ${r}`).join("; "),
  );
}

function chipIdCheck(
  ext: AmdCertExtensions | null,
  report: SnpReport,
  kind: string,
  product: SnpProduct | null,
): Check {
  const id = "chip-id";
  const description = "The VCEK's hwID equals the report's CHIP_ID";
  if (!ext) return check(id, description, false, "no VCEK");
  if (kind === "vlek") {
    return check(
      id,
      description,
      ext.hwId === null,
      ext.hwId === null
        ? "not applicable: a VLEK is not bound to a chip"
        : "a VLEK must not carry a hwID",
    );
  }
  if (!ext.hwId) return check(id, description, false, "the VCEK has no hwID extension");
  const chip = product === "Turin" ? report.chipId.subarray(0, 8) : report.chipId;
  if (isAllZero(report.chipId)) {
    return check(
      id,
      description,
      false,
      "CHIP_ID is masked (all zero); a VCEK cannot be bound to it",
    );
  }
  const ok = bytesEqual(ext.hwId, chip);
  return check(
    id,
    description,
    ok,
    ok
      ? chip.toHex().slice(0, 16) + "…"
      : `hwID ${ext.hwId.toHex().slice(0, 16)}… differs from CHIP_ID ${chip.toHex().slice(0, 16)}…`,
  );
}

function productCheck(report: SnpReport, chain: Chain, ext: AmdCertExtensions | null): Check {
  const id = "cpuid-product";
  const description = "The product named by the chain agrees with the report's CPUID and the VCEK";
  const fromChain = chain.product;
  if (!fromChain) return check(id, description, false, "the chain names no product");
  const problems: string[] = [];
  if (report.cpuid) {
    const fromCpuid = snpProductFromCpuid(report.cpuid);
    if (fromCpuid !== fromChain) {
      problems.push(
        `CPUID ${report.cpuid.family.toString(16)}h/${report.cpuid.model.toString(16)}h is ${
          fromCpuid ?? "unknown"
        }, the chain is ${fromChain}`,
      );
    }
  }
  if (ext?.productName && !ext.productName.startsWith(fromChain)) {
    problems.push(`productName "${ext.productName}" is not ${fromChain}`);
  }
  return check(
    id,
    description,
    problems.length === 0,
    problems.length === 0
      ? `${fromChain}${report.cpuid ? "" : " (version 2 reports do not name the product)"}`
      : problems.join("; "),
  );
}

async function signatureCheck(report: SnpReport, leaf: CertEntry | undefined): Promise<Check> {
  const id = "signature";
  const description = "The report's ECDSA P-384 signature verifies with the VCEK's key";
  if (!leaf) return check(id, description, false, "no VCEK to verify with");
  const alg = leaf.cert.publicKey;
  if (alg.name !== "ECDSA" || alg.namedCurve !== "P-384") {
    return check(id, description, false, `the certificate's key is not EC P-384`);
  }
  leaf.ecdsaKey ??= crypto.subtle.importKey(
    "spki",
    leaf.cert.publicKey.spki as Uint8Array<ArrayBuffer>,
    { name: "ECDSA", namedCurve: "P-384" },
    false,
    ["verify"],
  );
  let ok = false;
  try {
    ok = await crypto.subtle.verify(
      { name: "ECDSA", hash: "SHA-384" },
      await leaf.ecdsaKey,
      report.signature as Uint8Array<ArrayBuffer>,
      report.signedBytes as Uint8Array<ArrayBuffer>,
    );
  } catch {
    ok = false;
  }
  return check(
    id,
    description,
    ok,
    ok ? "valid" : "the signature does not verify over bytes 0x000–0x29F",
  );
}

/** What the policy is evaluated against: the report's typed claims and SNP's wording. */
function snpPolicySubject(report: SnpReport, product: SnpProduct | null): PolicySubject {
  return {
    format: "snp",
    profile: SNP_POLICY_PROFILE,
    measurement: report.measurement,
    reportData: report.reportData,
    product,
    guest: { debug: report.policy.debug, migrationAgent: report.policy.migrateMa },
    hostData: report.hostData,
    vmpl: report.vmpl,
    reportedTcb: report.reportedTcb,
  };
}

async function revocationCheck(crls: Uint8Array[], chain: Chain, at: Date): Promise<Check> {
  const id = "revocation";
  const description = "No certificate of the chain is revoked by the supplied CRLs";
  const problems: string[] = [];
  const notes: string[] = [];
  for (const der of crlInputs(crls)) {
    let crl: CrlFields;
    try {
      crl = readCrl(der);
    } catch (error) {
      throw new MalformedEvidenceError(
        `A CRL (${der.length} bytes) is not valid DER: ${
          error instanceof Error ? error.message : error
        }`,
        {
          cause: error,
        },
      );
    }
    const issuer = [chain.root, chain.intermediate].find((e) => e && e.cert.subject === crl.issuer);
    if (!issuer) {
      problems.push(`a CRL from "${crl.issuer}" is not from this chain's ARK or ASK`);
      continue;
    }
    if (!(await checkSignedBy(crl, issuer.cert))) {
      problems.push(`the CRL from "${issuer.commonName}" has a bad signature`);
      continue;
    }
    if (crl.thisUpdate > at) {
      problems.push(`the CRL from "${issuer.commonName}" is issued after ${iso(at)}`);
    }
    const subjects = [chain.intermediate, chain.leaf].filter((e) =>
      e && e.cert.issuer === issuer.cert.subject
    ) as CertEntry[];
    for (const s of subjects) {
      const serial = s.cert.serialNumber.replace(/^0+(?=.)/, "").toLowerCase();
      const hit = crl.entries.find((e) =>
        e.serialNumber.replace(/^0+(?=.)/, "").toLowerCase() === serial &&
        e.revocationDate <= at
      );
      if (hit) {
        problems.push(
          `"${s.commonName}" (serial ${serial}) is revoked since ${iso(hit.revocationDate)}`,
        );
      }
    }
    notes.push(
      `CRL of ${issuer.commonName} (${crl.entries.length} entries, ${iso(crl.thisUpdate)})`,
    );
  }
  return check(
    id,
    description,
    problems.length === 0,
    problems.length === 0 ? notes.join("; ") : problems.join("; "),
  );
}
