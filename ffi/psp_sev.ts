/**
 * The AMD secure processor's host device `/dev/sev` (Linux uapi
 * `include/uapi/linux/psp-sev.h`): SEV_ISSUE_CMD with platform status, PDH
 * certificate export, chip id (GET_ID2) and SNP platform status.
 *
 * The machine's header (Linux 6.1) stops at SEV_GET_ID2; SNP_PLATFORM_STATUS
 * and `struct sev_user_data_snp_status` come from upstream
 * `include/uapi/linux/psp-sev.h` (Linux 6.11 and later), so the uapi test can
 * only check their sizes against that source, not against a local header.
 *
 * @module
 */
import { iowr } from "./ioctl.ts";
import type { FileDescriptor } from "./libc.ts";
import {
  addressOf,
  defineConstant,
  defineStruct,
  StructBuffer,
  type StructLayout,
  type UapiConstant,
} from "./struct_layout.ts";

const HEADER = { header: "linux/psp-sev.h", local: "yes" } as const;
const UPSTREAM = {
  header: "linux/psp-sev.h",
  local: "no",
  source: "upstream include/uapi/linux/psp-sev.h (Linux >= 6.11; SNP host support)",
} as const;

/** The host device node. */
export const SEV_DEVICE = "/dev/sev";

/** `struct sev_issue_cmd` (packed): command id, pointer to its data, firmware error. */
export const SEV_ISSUE_CMD_ARG = defineStruct("sev_issue_cmd", {
  size: 16,
  fields: {
    cmd: [0, 4],
    data: [4, 8],
    error: [12, 4],
  },
  source: HEADER,
});

/** `struct sev_user_data_status` (packed): PLATFORM_STATUS output. */
export const SEV_USER_DATA_STATUS = defineStruct("sev_user_data_status", {
  size: 12,
  fields: {
    api_major: [0, 1],
    api_minor: [1, 1],
    state: [2, 1],
    flags: [3, 4],
    build: [7, 1],
    guest_count: [8, 4],
  },
  source: HEADER,
});

/** `struct sev_user_data_pdh_cert_export` (packed). */
export const SEV_USER_DATA_PDH_CERT_EXPORT = defineStruct("sev_user_data_pdh_cert_export", {
  size: 24,
  fields: {
    pdh_cert_address: [0, 8],
    pdh_cert_len: [8, 4],
    cert_chain_address: [12, 8],
    cert_chain_len: [20, 4],
  },
  source: HEADER,
});

/** `struct sev_user_data_get_id2` (packed): a buffer for one 64-byte id per socket. */
export const SEV_USER_DATA_GET_ID2 = defineStruct("sev_user_data_get_id2", {
  size: 12,
  fields: {
    address: [0, 8],
    length: [8, 4],
  },
  source: HEADER,
});

/**
 * `struct sev_user_data_snp_status` (packed, 32 bytes; upstream only). Byte 3
 * bit 0 is `is_rmp_initialized`; the word at 8 holds mask_chip_id (bit 0),
 * mask_chip_key (1), vlek_en (2), feature_info (3), rapl_dis (4),
 * ciphertext_hiding_cap (5), ciphertext_hiding_en (6).
 */
export const SEV_USER_DATA_SNP_STATUS = defineStruct("sev_user_data_snp_status", {
  size: 32,
  fields: {
    api_major: [0, 1],
    api_minor: [1, 1],
    state: [2, 1],
    is_rmp_initialized: [3, 1],
    build_id: [4, 4],
    feature_bits: [8, 4],
    guest_count: [12, 4],
    current_tcb_version: [16, 8],
    reported_tcb_version: [24, 8],
  },
  source: UPSTREAM,
});

/** `_IOWR('S', 0x0, struct sev_issue_cmd)`. */
export const SEV_ISSUE_CMD = iowr("S", 0, { size: SEV_ISSUE_CMD_ARG.size });

/** `enum sev_cmd` ids for SEV_ISSUE_CMD. */
export const SEV_FACTORY_RESET = 0;
/** PLATFORM_STATUS: fills `sev_user_data_status`. */
export const SEV_PLATFORM_STATUS = 1;
/** PEK_GEN. */
export const SEV_PEK_GEN = 2;
/** PEK_CSR. */
export const SEV_PEK_CSR = 3;
/** PDH_GEN. */
export const SEV_PDH_GEN = 4;
/** PDH_CERT_EXPORT: fills the PDH and the PEK ‖ OCA ‖ CEK chain. */
export const SEV_PDH_CERT_EXPORT = 5;
/** PEK_CERT_IMPORT. */
export const SEV_PEK_CERT_IMPORT = 6;
/** GET_ID (deprecated). */
export const SEV_GET_ID = 7;
/** GET_ID2: one 64-byte chip id per socket. */
export const SEV_GET_ID2 = 8;
/** SNP_PLATFORM_STATUS (upstream only): fills `sev_user_data_snp_status`. */
export const SNP_PLATFORM_STATUS = 9;

/** Firmware status INVALID_LEN: the buffer was too small; the needed length came back. */
export const SEV_RET_INVALID_LEN = 4;

/** Firmware status names (`enum sev_ret_code` in psp-sev.h; 0x16.. from upstream). */
export const SEV_RET_NAMES: Readonly<Record<number, string>> = Object.freeze({
  0: "SUCCESS",
  1: "INVALID_PLATFORM_STATE",
  2: "INVALID_GUEST_STATE",
  3: "INVALID_CONFIG",
  4: "INVALID_LEN",
  5: "ALREADY_OWNED",
  6: "INVALID_CERTIFICATE",
  7: "POLICY_FAILURE",
  8: "INACTIVE",
  9: "INVALID_ADDRESS",
  10: "BAD_SIGNATURE",
  11: "BAD_MEASUREMENT",
  12: "ASID_OWNED",
  13: "INVALID_ASID",
  14: "WBINVD_REQUIRED",
  15: "DFFLUSH_REQUIRED",
  16: "INVALID_GUEST",
  17: "INVALID_COMMAND",
  18: "ACTIVE",
  19: "HWSEV_RET_PLATFORM",
  20: "HWSEV_RET_UNSAFE",
  21: "UNSUPPORTED",
  22: "INVALID_PARAM",
  23: "RESOURCE_LIMIT",
  24: "SECURE_DATA_INVALID",
});

const COMMAND_NAMES: Record<number, string> = {
  [SEV_PLATFORM_STATUS]: "SEV_PLATFORM_STATUS",
  [SEV_PDH_CERT_EXPORT]: "SEV_PDH_CERT_EXPORT",
  [SEV_GET_ID2]: "SEV_GET_ID2",
  [SNP_PLATFORM_STATUS]: "SNP_PLATFORM_STATUS",
};

/** Every constant above with its provenance, for the uapi test. */
export const PSP_SEV_CONSTANTS: readonly UapiConstant[] = [
  defineConstant("SEV_ISSUE_CMD", { value: SEV_ISSUE_CMD, source: HEADER }),
  defineConstant("SEV_FACTORY_RESET", { value: SEV_FACTORY_RESET, source: HEADER }),
  defineConstant("SEV_PLATFORM_STATUS", { value: SEV_PLATFORM_STATUS, source: HEADER }),
  defineConstant("SEV_PEK_GEN", { value: SEV_PEK_GEN, source: HEADER }),
  defineConstant("SEV_PEK_CSR", { value: SEV_PEK_CSR, source: HEADER }),
  defineConstant("SEV_PDH_GEN", { value: SEV_PDH_GEN, source: HEADER }),
  defineConstant("SEV_PDH_CERT_EXPORT", { value: SEV_PDH_CERT_EXPORT, source: HEADER }),
  defineConstant("SEV_PEK_CERT_IMPORT", { value: SEV_PEK_CERT_IMPORT, source: HEADER }),
  defineConstant("SEV_GET_ID", { value: SEV_GET_ID, source: HEADER }),
  defineConstant("SEV_GET_ID2", { value: SEV_GET_ID2, source: HEADER }),
  defineConstant("SNP_PLATFORM_STATUS", { value: SNP_PLATFORM_STATUS, source: UPSTREAM }),
  defineConstant("SEV_RET_INVALID_LEN", { value: SEV_RET_INVALID_LEN, source: HEADER }),
  defineConstant("SEV_STATUS_FLAGS_CONFIG_ES", { value: 0x100, source: HEADER }),
];

/** Every structure above, for the uapi test. */
export const PSP_SEV_STRUCTS: readonly StructLayout[] = [
  SEV_ISSUE_CMD_ARG,
  SEV_USER_DATA_STATUS,
  SEV_USER_DATA_PDH_CERT_EXPORT,
  SEV_USER_DATA_GET_ID2,
  SEV_USER_DATA_SNP_STATUS,
];

/** The firmware command and its parameter for {@link sevIssueCommand}. */
export interface SevCommand {
  /** The firmware command number, e.g. `SEV_PLATFORM_STATUS`. */
  readonly cmd: number;
  /** The command's parameter structure, or null when it takes none. */
  readonly data: Uint8Array<ArrayBuffer> | null;
}

/**
 * SEV_ISSUE_CMD: runs firmware command `cmd` with `data` (its parameter
 * structure, or null). Returns the firmware status (0 on success). Throws
 * SyscallError with `details.firmwareError` when the ioctl fails.
 */
export function sevIssueCommand(
  device: FileDescriptor,
  { cmd, data }: SevCommand,
): number {
  const arg = new StructBuffer(SEV_ISSUE_CMD_ARG).set("cmd", cmd);
  if (data !== null) arg.set("data", addressOf(data));
  device.ioctl(SEV_ISSUE_CMD, arg.bytes, {
    name: `SEV_ISSUE_CMD ${COMMAND_NAMES[cmd] ?? cmd}`,
    details: () => ({ firmwareError: arg.getNumber("error") }),
  });
  return arg.getNumber("error");
}

/** The fields of SEV PLATFORM_STATUS. */
export interface SevPlatformStatus {
  /** Firmware API major version. */
  apiMajor: number;
  /** Firmware API minor version. */
  apiMinor: number;
  /** 0 UNINIT, 1 INIT, 2 WORKING. */
  state: number;
  /** Bit 0 owner (external), bit 8 CONFIG_ES. */
  flags: number;
  /** Firmware build. */
  build: number;
  /** Number of guests. */
  guestCount: number;
}

/** SEV_ISSUE_CMD SEV_PLATFORM_STATUS. */
export function sevPlatformStatus(device: FileDescriptor): SevPlatformStatus {
  const status = new StructBuffer(SEV_USER_DATA_STATUS);
  sevIssueCommand(device, { cmd: SEV_PLATFORM_STATUS, data: status.bytes });
  return {
    apiMajor: status.getNumber("api_major"),
    apiMinor: status.getNumber("api_minor"),
    state: status.getNumber("state"),
    flags: status.getNumber("flags"),
    build: status.getNumber("build"),
    guestCount: status.getNumber("guest_count"),
  };
}

/** The fields of SNP_PLATFORM_STATUS. */
export interface SnpPlatformStatus {
  /** Firmware API major version. */
  apiMajor: number;
  /** Firmware API minor version. */
  apiMinor: number;
  /** 0 UNINIT, 1 INIT. */
  state: number;
  /** Whether the RMP is initialised. */
  rmpInitialized: boolean;
  /** Firmware build id. */
  buildId: number;
  /** mask_chip_id, mask_chip_key, vlek_en, ... (see SEV_USER_DATA_SNP_STATUS). */
  featureBits: number;
  /** Number of SNP guests. */
  guestCount: number;
  /** CURRENT_TCB (TCB_VERSION, 8 bytes as a little-endian integer). */
  currentTcb: bigint;
  /** REPORTED_TCB. */
  reportedTcb: bigint;
}

/** SEV_ISSUE_CMD SNP_PLATFORM_STATUS (kernels with SNP host support). */
export function snpPlatformStatus(device: FileDescriptor): SnpPlatformStatus {
  const status = new StructBuffer(SEV_USER_DATA_SNP_STATUS);
  sevIssueCommand(device, { cmd: SNP_PLATFORM_STATUS, data: status.bytes });
  return {
    apiMajor: status.getNumber("api_major"),
    apiMinor: status.getNumber("api_minor"),
    state: status.getNumber("state"),
    rmpInitialized: (status.getNumber("is_rmp_initialized") & 1) === 1,
    buildId: status.getNumber("build_id"),
    featureBits: status.getNumber("feature_bits"),
    guestCount: status.getNumber("guest_count"),
    currentTcb: status.getBigInt("current_tcb_version"),
    reportedTcb: status.getBigInt("reported_tcb_version"),
  };
}

/** SEV_ISSUE_CMD SEV_GET_ID2: one 64-byte chip id per socket. */
export function sevGetId2(device: FileDescriptor, options: { maxSockets?: number } = {}) {
  const ids = new Uint8Array(64 * (options.maxSockets ?? 8));
  const arg = new StructBuffer(SEV_USER_DATA_GET_ID2)
    .set("address", addressOf(ids))
    .set("length", ids.length);
  sevIssueCommand(device, { cmd: SEV_GET_ID2, data: arg.bytes });
  const length = Math.min(arg.getNumber("length"), ids.length);
  const out: Uint8Array<ArrayBuffer>[] = [];
  for (let offset = 0; offset + 64 <= length; offset += 64) {
    out.push(ids.slice(offset, offset + 64));
  }
  return out;
}

/** SEV_ISSUE_CMD SEV_PDH_CERT_EXPORT: the PDH and the PEK ‖ OCA ‖ CEK chain. */
export function sevPdhCertExport(
  device: FileDescriptor,
): { pdh: Uint8Array<ArrayBuffer>; chain: Uint8Array<ArrayBuffer> } {
  // Each SEV certificate is 0x824 bytes and the chain holds three (ABI #55766, Appendix C).
  const pdh = new Uint8Array(0x824);
  const chain = new Uint8Array(3 * 0x824);
  const arg = new StructBuffer(SEV_USER_DATA_PDH_CERT_EXPORT)
    .set("pdh_cert_address", addressOf(pdh))
    .set("pdh_cert_len", pdh.length)
    .set("cert_chain_address", addressOf(chain))
    .set("cert_chain_len", chain.length);
  sevIssueCommand(device, { cmd: SEV_PDH_CERT_EXPORT, data: arg.bytes });
  return {
    pdh: pdh.slice(0, arg.getNumber("pdh_cert_len")),
    chain: chain.slice(0, arg.getNumber("cert_chain_len")),
  };
}
