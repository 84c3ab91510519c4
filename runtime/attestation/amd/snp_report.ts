/**
 * The AMD SEV-SNP ATTESTATION_REPORT, versions 2 to 5: its byte layout and a
 * parser that reads every field. Verification is in snp_verify.ts.
 *
 * Layout: AMD SEV Secure Nested Paging Firmware ABI Specification #56860,
 * "ATTESTATION_REPORT Structure" (rev 1.55 Table 22 for version 2, rev 1.56
 * Table 23 for version 3, rev 1.58 for version 5). Version 4 is under embargo
 * and parsed like version 3, as virtee/sev does. Every integer is
 * little-endian.
 *
 * @module
 */
import { defineLayout, FieldReader, isAllZero, reversed } from "../_bytes.ts";
import { type ClaimMap, MalformedEvidenceError, type SnpClaims } from "../result.ts";

/** The size of an ATTESTATION_REPORT: 0x4A0 bytes. */
export const SNP_REPORT_SIZE = 0x4a0;

/** The report bytes covered by the signature: `[0, 0x2A0)`. */
export const SNP_SIGNED_SIZE = 0x2a0;

/** Report versions this parser understands. */
export const SNP_REPORT_VERSIONS: readonly number[] = [2, 3, 4, 5];

/** #56860 ATTESTATION_REPORT (Table 23 in rev 1.56; v5 adds the mitigation vectors). */
export const SNP_REPORT_LAYOUT = defineLayout("ATTESTATION_REPORT", {
  size: SNP_REPORT_SIZE,
  fields: [
    { name: "version", offset: 0x000, size: 4 }, // VERSION
    { name: "guestSvn", offset: 0x004, size: 4 }, // GUEST_SVN
    { name: "policy", offset: 0x008, size: 8 }, // POLICY
    { name: "familyId", offset: 0x010, size: 16 }, // FAMILY_ID
    { name: "imageId", offset: 0x020, size: 16 }, // IMAGE_ID
    { name: "vmpl", offset: 0x030, size: 4 }, // VMPL
    { name: "signatureAlgo", offset: 0x034, size: 4 }, // SIGNATURE_ALGO
    { name: "currentTcb", offset: 0x038, size: 8 }, // CURRENT_TCB
    { name: "platformInfo", offset: 0x040, size: 8 }, // PLATFORM_INFO
    { name: "keyInfo", offset: 0x048, size: 4 }, // AUTHOR_KEY_EN, MASK_CHIP_KEY, SIGNING_KEY
    { name: "reserved04c", offset: 0x04c, size: 4 },
    { name: "reportData", offset: 0x050, size: 64 }, // REPORT_DATA
    { name: "measurement", offset: 0x090, size: 48 }, // MEASUREMENT
    { name: "hostData", offset: 0x0c0, size: 32 }, // HOST_DATA
    { name: "idKeyDigest", offset: 0x0e0, size: 48 }, // ID_KEY_DIGEST
    { name: "authorKeyDigest", offset: 0x110, size: 48 }, // AUTHOR_KEY_DIGEST
    { name: "reportId", offset: 0x140, size: 32 }, // REPORT_ID
    { name: "reportIdMa", offset: 0x160, size: 32 }, // REPORT_ID_MA
    { name: "reportedTcb", offset: 0x180, size: 8 }, // REPORTED_TCB
    { name: "cpuidFamId", offset: 0x188, size: 1 }, // CPUID_FAM_ID (v3+, reserved in v2)
    { name: "cpuidModId", offset: 0x189, size: 1 }, // CPUID_MOD_ID (v3+)
    { name: "cpuidStep", offset: 0x18a, size: 1 }, // CPUID_STEP (v3+)
    { name: "reserved18b", offset: 0x18b, size: 0x15 },
    { name: "chipId", offset: 0x1a0, size: 64 }, // CHIP_ID
    { name: "committedTcb", offset: 0x1e0, size: 8 }, // COMMITTED_TCB
    { name: "currentBuild", offset: 0x1e8, size: 1 }, // CURRENT_BUILD
    { name: "currentMinor", offset: 0x1e9, size: 1 }, // CURRENT_MINOR
    { name: "currentMajor", offset: 0x1ea, size: 1 }, // CURRENT_MAJOR
    { name: "reserved1eb", offset: 0x1eb, size: 1 },
    { name: "committedBuild", offset: 0x1ec, size: 1 }, // COMMITTED_BUILD
    { name: "committedMinor", offset: 0x1ed, size: 1 }, // COMMITTED_MINOR
    { name: "committedMajor", offset: 0x1ee, size: 1 }, // COMMITTED_MAJOR
    { name: "reserved1ef", offset: 0x1ef, size: 1 },
    { name: "launchTcb", offset: 0x1f0, size: 8 }, // LAUNCH_TCB
    { name: "launchMitVector", offset: 0x1f8, size: 8 }, // LAUNCH_MIT_VECTOR (v5+)
    { name: "currentMitVector", offset: 0x200, size: 8 }, // CURRENT_MIT_VECTOR (v5+)
    { name: "reserved208", offset: 0x208, size: 0x98 },
    { name: "signatureR", offset: 0x2a0, size: 72 }, // SIGNATURE.R, little-endian
    { name: "signatureS", offset: 0x2e8, size: 72 }, // SIGNATURE.S, little-endian
    { name: "signatureReserved", offset: 0x330, size: 0x170 },
  ],
});

/** AMD EPYC generations that run SEV-SNP. */
export type SnpProduct = "Milan" | "Genoa" | "Turin";

/** All products, in the order the verifier tries them. */
export const SNP_PRODUCTS: readonly SnpProduct[] = ["Milan", "Genoa", "Turin"];

/**
 * A TCB_VERSION: the security patch levels of the firmware components.
 * #56860 "TCB_VERSION Structure"; Turin (family 1Ah) moves the fields and adds
 * FMC (virtee/sev `TcbVersion::from_turin_bytes`).
 */
export interface SnpTcb {
  /** The 8 bytes as stored in the report. */
  raw: Uint8Array;
  /** FMC SPL (Turin and later), else null. */
  fmc: number | null;
  /** Boot loader SPL. */
  bootloader: number;
  /** TEE (PSP OS) SPL. */
  tee: number;
  /** SNP firmware SPL. */
  snp: number;
  /** Microcode SPL. */
  microcode: number;
}

/** Decodes a TCB_VERSION with Milan/Genoa's layout, or Turin's. */
export function decodeSnpTcb(raw: Uint8Array, product: SnpProduct | null): SnpTcb {
  if (raw.length !== 8) throw new RangeError(`TCB_VERSION is 8 bytes, got ${raw.length}`);
  if (product === "Turin") {
    return {
      raw: raw.slice(),
      fmc: raw[0],
      bootloader: raw[1],
      tee: raw[2],
      snp: raw[3],
      microcode: raw[7],
    };
  }
  return {
    raw: raw.slice(),
    fmc: null,
    bootloader: raw[0],
    tee: raw[1],
    snp: raw[6],
    microcode: raw[7],
  };
}

/** Guest POLICY bits (#56860 "Guest Policy Structure"). */
export interface SnpPolicy {
  /** The whole 64-bit value. */
  raw: bigint;
  /** Minimum firmware ABI minor version (bits 7:0). */
  abiMinor: number;
  /** Minimum firmware ABI major version (bits 15:8). */
  abiMajor: number;
  /** Bit 16: host SMT is allowed. */
  smt: boolean;
  /** Bit 17: reserved, must be 1. */
  reservedOne: boolean;
  /** Bit 18: a migration agent may be associated. */
  migrateMa: boolean;
  /** Bit 19: debugging is allowed: the host can read and write guest memory. */
  debug: boolean;
  /** Bit 20: the guest may run on one socket only. */
  singleSocket: boolean;
  /** Bit 21: CXL may be populated. */
  cxlAllow: boolean;
  /** Bit 22: AES-256-XTS memory encryption is required. */
  memAes256Xts: boolean;
  /** Bit 23: RAPL must be disabled. */
  raplDis: boolean;
  /** Bit 24: ciphertext hiding must be enabled. */
  ciphertextHiding: boolean;
  /** Bit 25 (rev 1.58): page swapping and moving are disabled. */
  pageSwapDisable: boolean;
  /** Bits 63:26, which must be zero. */
  reservedHigh: bigint;
}

/** Decodes a guest POLICY value. */
export function decodeSnpPolicy(raw: bigint): SnpPolicy {
  const bit = (n: number) => ((raw >> BigInt(n)) & 1n) === 1n;
  return {
    raw,
    abiMinor: Number(raw & 0xffn),
    abiMajor: Number((raw >> 8n) & 0xffn),
    smt: bit(16),
    reservedOne: bit(17),
    migrateMa: bit(18),
    debug: bit(19),
    singleSocket: bit(20),
    cxlAllow: bit(21),
    memAes256Xts: bit(22),
    raplDis: bit(23),
    ciphertextHiding: bit(24),
    pageSwapDisable: bit(25),
    reservedHigh: raw >> 26n,
  };
}

/** PLATFORM_INFO bits (#56860 "PLATFORM_INFO"). Unknown bits are kept, never rejected. */
export interface SnpPlatformInfo {
  /** The whole 64-bit value. */
  raw: bigint;
  /** Bit 0: SMT is enabled on the host. */
  smtEn: boolean;
  /** Bit 1: TSME is enabled. */
  tsmeEn: boolean;
  /** Bit 2: ECC memory is in use. */
  eccEn: boolean;
  /** Bit 3: RAPL is disabled. */
  raplDis: boolean;
  /** Bit 4: ciphertext hiding for DRAM is enabled. */
  ciphertextHidingEn: boolean;
  /** Bit 5: the alias check (BadRAM mitigation) completed. */
  aliasCheckComplete: boolean;
  /** Bit 7 (rev 1.58): SEV-TIO is enabled. */
  tioEn: boolean;
  /** Bits not assigned by the revisions we know (6 and 63:8). */
  unknownBits: bigint;
}

/** Decodes PLATFORM_INFO. */
export function decodeSnpPlatformInfo(raw: bigint): SnpPlatformInfo {
  const bit = (n: number) => ((raw >> BigInt(n)) & 1n) === 1n;
  return {
    raw,
    smtEn: bit(0),
    tsmeEn: bit(1),
    eccEn: bit(2),
    raplDis: bit(3),
    ciphertextHidingEn: bit(4),
    aliasCheckComplete: bit(5),
    tioEn: bit(7),
    unknownBits: raw & ~0xbfn,
  };
}

/** Which key signed the report (KEY_INFO.SIGNING_KEY, bits 4:2). */
export type SnpSigningKey = "vcek" | "vlek" | "none" | "reserved";

/** KEY_INFO (the word at 0x048). */
export interface SnpKeyInfo {
  /** The whole 32-bit value. */
  raw: number;
  /** Bit 0: AUTHOR_KEY_EN, the ID block's author key digest is present. */
  authorKeyEn: boolean;
  /** Bit 1: MASK_CHIP_KEY, the host masked the chip key. */
  maskChipKey: boolean;
  /** Bits 4:2: 0 VCEK, 1 VLEK, 7 none. */
  signingKey: SnpSigningKey;
  /** The raw SIGNING_KEY value. */
  signingKeyValue: number;
}

/** A firmware version MAJOR.MINOR.BUILD. */
export interface SnpFirmwareVersion {
  /** Major. */
  major: number;
  /** Minor. */
  minor: number;
  /** Build. */
  build: number;
}

/** CPUID family, model and stepping (version 3 and later). */
export interface SnpCpuid {
  /** Combined family, e.g. 0x19 or 0x1A. */
  family: number;
  /** Combined model. */
  model: number;
  /** Stepping. */
  stepping: number;
}

/** Every field of an ATTESTATION_REPORT. */
export interface SnpReport {
  /** The report's 1184 bytes (a copy). */
  bytes: Uint8Array;
  /** VERSION: 2, 3, 4 or 5. */
  version: number;
  /** GUEST_SVN. */
  guestSvn: number;
  /** POLICY. */
  policy: SnpPolicy;
  /** FAMILY_ID (16 bytes, from the ID block). */
  familyId: Uint8Array;
  /** IMAGE_ID (16 bytes, from the ID block). */
  imageId: Uint8Array;
  /** VMPL of the request. */
  vmpl: number;
  /** SIGNATURE_ALGO: 1 is ECDSA P-384 with SHA-384, the only one defined. */
  signatureAlgo: number;
  /** The product: from CPUID (v3+), or the caller's option, or null when unknown (v2). */
  product: SnpProduct | null;
  /** CURRENT_TCB. */
  currentTcb: SnpTcb;
  /** PLATFORM_INFO. */
  platformInfo: SnpPlatformInfo;
  /** KEY_INFO. */
  keyInfo: SnpKeyInfo;
  /** REPORT_DATA (64 bytes, chosen by the guest). */
  reportData: Uint8Array;
  /** MEASUREMENT (48 bytes, the launch digest). */
  measurement: Uint8Array;
  /** HOST_DATA (32 bytes, chosen by the host at launch). */
  hostData: Uint8Array;
  /** ID_KEY_DIGEST (48 bytes). */
  idKeyDigest: Uint8Array;
  /** AUTHOR_KEY_DIGEST (48 bytes). */
  authorKeyDigest: Uint8Array;
  /** REPORT_ID (32 bytes). */
  reportId: Uint8Array;
  /** REPORT_ID_MA (32 bytes; all 0xFF without a migration agent). */
  reportIdMa: Uint8Array;
  /** REPORTED_TCB: the TCB the VCEK is derived for. */
  reportedTcb: SnpTcb;
  /** CPUID family/model/stepping (v3+), else null. */
  cpuid: SnpCpuid | null;
  /** CHIP_ID (64 bytes; Turin uses the first 8; zero when masked). */
  chipId: Uint8Array;
  /** COMMITTED_TCB. */
  committedTcb: SnpTcb;
  /** CURRENT_MAJOR.MINOR.BUILD of the firmware. */
  currentVersion: SnpFirmwareVersion;
  /** COMMITTED_MAJOR.MINOR.BUILD. */
  committedVersion: SnpFirmwareVersion;
  /** LAUNCH_TCB. */
  launchTcb: SnpTcb;
  /** LAUNCH_MIT_VECTOR (v5+), else null. */
  launchMitVector: bigint | null;
  /** CURRENT_MIT_VECTOR (v5+), else null. */
  currentMitVector: bigint | null;
  /** The signed bytes `[0, 0x2A0)` (a view into `bytes`). */
  signedBytes: Uint8Array;
  /** The signature as raw big-endian `r ‖ s` (96 bytes), for WebCrypto. */
  signature: Uint8Array;
  /** Reserved fields that are not zero (by field name), or bits that must be set but are not. */
  formatProblems: string[];
}

/** The product a CPUID family/model names (virtee/sev `Generation::identify_cpu`), or null. */
export function snpProductFromCpuid(cpuid: SnpCpuid): SnpProduct | null {
  const { family, model } = cpuid;
  if (family === 0x19 && model <= 0x0f) return "Milan";
  if (family === 0x19 && ((model >= 0x10 && model <= 0x1f) || (model >= 0xa0 && model <= 0xaf))) {
    return "Genoa";
  }
  if (family === 0x1a && model <= 0x11) return "Turin";
  return null;
}

function signingKeyName(value: number): SnpSigningKey {
  if (value === 0) return "vcek";
  if (value === 1) return "vlek";
  if (value === 7) return "none";
  return "reserved";
}

type SnpReportField = (typeof SNP_REPORT_LAYOUT.fields)[number]["name"];

/** Reserved fields that are not zero and bits that must be set but are not. */
function snpFormatProblems(
  f: FieldReader<SnpReportField>,
  { version, keyInfoRaw, policy, signatureAlgo }: {
    version: number;
    keyInfoRaw: number;
    policy: SnpPolicy;
    signatureAlgo: number;
  },
): string[] {
  const problems: string[] = [];
  const mustBeZero: Parameters<typeof f.isZero>[0][] = [
    "reserved04c",
    "reserved18b",
    "reserved1eb",
    "reserved1ef",
    "reserved208",
    "signatureReserved",
  ];
  if (version < 3) mustBeZero.push("cpuidFamId", "cpuidModId", "cpuidStep");
  if (version < 5) mustBeZero.push("launchMitVector", "currentMitVector");
  for (const name of mustBeZero) if (!f.isZero(name)) problems.push(`${name} is not zero`);
  if (!isAllZero(f.view("signatureR").subarray(48))) problems.push("signature R padding not zero");
  if (!isAllZero(f.view("signatureS").subarray(48))) problems.push("signature S padding not zero");
  if (keyInfoRaw >>> 5 !== 0) {
    problems.push(`KEY_INFO reserved bits set (0x${keyInfoRaw.toString(16)})`);
  }
  if (!policy.reservedOne) problems.push("POLICY bit 17 (reserved, must be 1) is 0");
  if (policy.reservedHigh !== 0n) problems.push("POLICY bits 63:26 are not zero");
  if (signatureAlgo !== 1) {
    problems.push(`SIGNATURE_ALGO is ${signatureAlgo}, not 1 (ECDSA P-384 with SHA-384)`);
  }
  return problems;
}

/**
 * Parses an ATTESTATION_REPORT. Throws MalformedEvidenceError when the bytes
 * are not 1184 long or the version is not 2 to 5; other oddities (reserved
 * bits set, an unknown signature algorithm) are listed in `formatProblems`
 * for the verifier to fail on. `product` decodes the TCB fields of a version 2
 * report, which does not name its product; it is ignored when CPUID names one.
 */
export function parseSnpReport(
  bytes: Uint8Array,
  options: { product?: SnpProduct | null } = {},
): SnpReport {
  if (bytes.length !== SNP_REPORT_SIZE) {
    throw new MalformedEvidenceError(
      `An SEV-SNP attestation report is ${SNP_REPORT_SIZE} bytes, got ${bytes.length}; ` +
        `pass the raw report (e.g. the outblob of configfs-tsm)`,
    );
  }
  const copy = bytes.slice();
  const f = new FieldReader(copy, SNP_REPORT_LAYOUT);
  const version = f.uint("version");
  if (!SNP_REPORT_VERSIONS.includes(version)) {
    throw new MalformedEvidenceError(
      `Unsupported SEV-SNP report version "${version}"; enarx reads versions 2 to 5`,
    );
  }
  const cpuid = version >= 3
    ? { family: f.uint("cpuidFamId"), model: f.uint("cpuidModId"), stepping: f.uint("cpuidStep") }
    : null;
  const product = (cpuid ? snpProductFromCpuid(cpuid) : null) ?? options.product ?? null;
  const keyInfoRaw = f.uint("keyInfo");
  const policy = decodeSnpPolicy(f.u64("policy"));
  const signatureAlgo = f.uint("signatureAlgo");
  const problems = snpFormatProblems(f, { version, keyInfoRaw, policy, signatureAlgo });
  const signature = new Uint8Array(96);
  signature.set(reversed(f.view("signatureR").subarray(0, 48)), 0);
  signature.set(reversed(f.view("signatureS").subarray(0, 48)), 48);
  const signingKeyValue = (keyInfoRaw >>> 2) & 7;

  return {
    bytes: copy,
    version,
    guestSvn: f.uint("guestSvn"),
    policy,
    familyId: f.copy("familyId"),
    imageId: f.copy("imageId"),
    vmpl: f.uint("vmpl"),
    signatureAlgo,
    product,
    currentTcb: decodeSnpTcb(f.view("currentTcb"), product),
    platformInfo: decodeSnpPlatformInfo(f.u64("platformInfo")),
    keyInfo: {
      raw: keyInfoRaw,
      authorKeyEn: (keyInfoRaw & 1) === 1,
      maskChipKey: (keyInfoRaw & 2) === 2,
      signingKey: signingKeyName(signingKeyValue),
      signingKeyValue,
    },
    reportData: f.copy("reportData"),
    measurement: f.copy("measurement"),
    hostData: f.copy("hostData"),
    idKeyDigest: f.copy("idKeyDigest"),
    authorKeyDigest: f.copy("authorKeyDigest"),
    reportId: f.copy("reportId"),
    reportIdMa: f.copy("reportIdMa"),
    reportedTcb: decodeSnpTcb(f.view("reportedTcb"), product),
    cpuid,
    chipId: f.copy("chipId"),
    committedTcb: decodeSnpTcb(f.view("committedTcb"), product),
    currentVersion: {
      major: f.uint("currentMajor"),
      minor: f.uint("currentMinor"),
      build: f.uint("currentBuild"),
    },
    committedVersion: {
      major: f.uint("committedMajor"),
      minor: f.uint("committedMinor"),
      build: f.uint("committedBuild"),
    },
    launchTcb: decodeSnpTcb(f.view("launchTcb"), product),
    launchMitVector: version >= 5 ? f.u64("launchMitVector") : null,
    currentMitVector: version >= 5 ? f.u64("currentMitVector") : null,
    signedBytes: copy.subarray(0, SNP_SIGNED_SIZE),
    signature,
    formatProblems: problems,
  };
}

/** A TCB as a JSON-friendly object. */
export function snpTcbClaims(tcb: SnpTcb): ClaimMap {
  return {
    raw: tcb.raw.slice(),
    ...(tcb.fmc === null ? {} : { fmc: tcb.fmc }),
    bootloader: tcb.bootloader,
    tee: tcb.tee,
    snp: tcb.snp,
    microcode: tcb.microcode,
  };
}

function hex64(v: bigint): string {
  return "0x" + v.toString(16);
}

/**
 * Every field of a report as claims (camelCase keys, bytes as bytes, which
 * claimsToJson renders as lower-case hex, 64-bit values as "0x…" strings). Documented in
 * spec/attestation-json.md.
 */
export function snpReportClaims(report: SnpReport): SnpClaims {
  const fw = (v: SnpFirmwareVersion) => `${v.major}.${v.minor}.${v.build}`;
  const p = report.policy;
  const pi = report.platformInfo;
  return {
    version: report.version,
    product: report.product,
    guestSvn: report.guestSvn,
    policy: {
      raw: hex64(p.raw),
      abiMajor: p.abiMajor,
      abiMinor: p.abiMinor,
      smt: p.smt,
      migrateMa: p.migrateMa,
      debug: p.debug,
      singleSocket: p.singleSocket,
      cxlAllow: p.cxlAllow,
      memAes256Xts: p.memAes256Xts,
      raplDis: p.raplDis,
      ciphertextHiding: p.ciphertextHiding,
      pageSwapDisable: p.pageSwapDisable,
    },
    debug: p.debug,
    migrationAgent: p.migrateMa,
    familyId: report.familyId,
    imageId: report.imageId,
    vmpl: report.vmpl,
    signatureAlgo: report.signatureAlgo,
    currentTcb: snpTcbClaims(report.currentTcb),
    platformInfo: {
      raw: hex64(pi.raw),
      smtEn: pi.smtEn,
      tsmeEn: pi.tsmeEn,
      eccEn: pi.eccEn,
      raplDis: pi.raplDis,
      ciphertextHidingEn: pi.ciphertextHidingEn,
      aliasCheckComplete: pi.aliasCheckComplete,
      tioEn: pi.tioEn,
      unknownBits: hex64(pi.unknownBits),
    },
    keyInfo: {
      raw: "0x" + report.keyInfo.raw.toString(16),
      authorKeyEn: report.keyInfo.authorKeyEn,
      maskChipKey: report.keyInfo.maskChipKey,
      signingKey: report.keyInfo.signingKey,
    },
    signingKey: report.keyInfo.signingKey,
    reportData: report.reportData,
    measurement: report.measurement,
    hostData: report.hostData,
    idKeyDigest: report.idKeyDigest,
    authorKeyDigest: report.authorKeyDigest,
    reportId: report.reportId,
    reportIdMa: report.reportIdMa,
    reportedTcb: snpTcbClaims(report.reportedTcb),
    cpuid: report.cpuid === null ? null : {
      family: report.cpuid.family,
      model: report.cpuid.model,
      stepping: report.cpuid.stepping,
    },
    chipId: report.chipId,
    committedTcb: snpTcbClaims(report.committedTcb),
    currentFirmware: fw(report.currentVersion),
    committedFirmware: fw(report.committedVersion),
    launchTcb: snpTcbClaims(report.launchTcb),
    launchMitVector: report.launchMitVector === null ? null : hex64(report.launchMitVector),
    currentMitVector: report.currentMitVector === null ? null : hex64(report.currentMitVector),
  };
}
