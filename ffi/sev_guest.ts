/**
 * The SEV-SNP guest device `/dev/sev-guest` (Linux uapi
 * `include/uapi/linux/sev-guest.h`): SNP_GET_REPORT and SNP_GET_EXT_REPORT.
 * Layouts are checked against the machine's header by tests/ffi_uapi_test.ts.
 *
 * @module
 */
import { iowr } from "./ioctl.ts";
import { AnonymousMapping, type FileDescriptor, SyscallError } from "./libc.ts";
import {
  defineConstant,
  defineStruct,
  StructBuffer,
  type StructLayout,
  type UapiConstant,
} from "./struct_layout.ts";

const HEADER = { header: "linux/sev-guest.h", local: "yes" } as const;

/** The guest device node. */
export const SEV_GUEST_DEVICE = "/dev/sev-guest";

/** `struct snp_report_req`: the report request (REPORT_DATA and VMPL). */
export const SNP_REPORT_REQ = defineStruct("snp_report_req", {
  size: 96,
  fields: {
    user_data: [0, 64],
    vmpl: [64, 4],
    rsvd: [68, 28],
  },
  source: HEADER,
});

/** `struct snp_report_resp`: the firmware's MSG_REPORT_RSP in `data`. */
export const SNP_REPORT_RESP = defineStruct("snp_report_resp", {
  size: 4000,
  fields: { data: [0, 4000] },
  source: HEADER,
});

/**
 * `struct snp_guest_request_ioctl` (not packed: 7 bytes of padding after
 * `msg_version`). `exitinfo2` holds `fw_error` (low 32 bits) and `vmm_error`.
 */
export const SNP_GUEST_REQUEST_IOCTL = defineStruct("snp_guest_request_ioctl", {
  size: 32,
  fields: {
    msg_version: [0, 1],
    req_data: [8, 8],
    resp_data: [16, 8],
    exitinfo2: [24, 8],
    fw_error: [24, 4],
    vmm_error: [28, 4],
  },
  source: HEADER,
});

/** `struct snp_ext_report_req`: a report request plus a certificate buffer. */
export const SNP_EXT_REPORT_REQ = defineStruct("snp_ext_report_req", {
  size: 112,
  fields: {
    data: [0, 96],
    certs_address: [96, 8],
    certs_len: [104, 4],
  },
  source: HEADER,
});

/**
 * MSG_REPORT_RSP, the firmware message inside `snp_report_resp.data`
 * (AMD SEV-SNP Firmware ABI #56860, "MSG_REPORT_RSP Message Structure"; the
 * 0x20 header size also in go-sev-guest `client/linuxabi`): status, report
 * size (0x4A0), 24 reserved bytes, then the ATTESTATION_REPORT.
 */
export const MSG_REPORT_RSP = defineStruct("MSG_REPORT_RSP", {
  size: 0x20 + 0x4a0,
  fields: {
    status: [0, 4],
    report_size: [4, 4],
    report: [0x20, 0x4a0],
  },
  source: { header: null, local: "no", source: "AMD SEV-SNP Firmware ABI #56860, MSG_REPORT_RSP" },
});

/** `_IOWR('S', 0x0, struct snp_guest_request_ioctl)`. */
export const SNP_GET_REPORT = iowr("S", 0, { size: SNP_GUEST_REQUEST_IOCTL.size });
/** `_IOWR('S', 0x1, struct snp_guest_request_ioctl)`. */
export const SNP_GET_DERIVED_KEY = iowr("S", 1, { size: SNP_GUEST_REQUEST_IOCTL.size });
/** `_IOWR('S', 0x2, struct snp_guest_request_ioctl)`. */
export const SNP_GET_EXT_REPORT = iowr("S", 2, { size: SNP_GUEST_REQUEST_IOCTL.size });

/** `vmm_error`: the certificate buffer is too small; `certs_len` holds the size needed. */
export const SNP_GUEST_VMM_ERR_INVALID_LEN = 1;
/** `vmm_error`: the host is busy; retry. */
export const SNP_GUEST_VMM_ERR_BUSY = 2;

/** Every constant above with its provenance, for the uapi test. */
export const SEV_GUEST_CONSTANTS: readonly UapiConstant[] = [
  defineConstant("SNP_GET_REPORT", { value: SNP_GET_REPORT, source: HEADER }),
  defineConstant("SNP_GET_DERIVED_KEY", { value: SNP_GET_DERIVED_KEY, source: HEADER }),
  defineConstant("SNP_GET_EXT_REPORT", { value: SNP_GET_EXT_REPORT, source: HEADER }),
  defineConstant("SNP_GUEST_VMM_ERR_INVALID_LEN", {
    value: SNP_GUEST_VMM_ERR_INVALID_LEN,
    source: HEADER,
  }),
  defineConstant("SNP_GUEST_VMM_ERR_BUSY", { value: SNP_GUEST_VMM_ERR_BUSY, source: HEADER }),
];

/** Every structure above, for the uapi test. */
export const SEV_GUEST_STRUCTS: readonly StructLayout[] = [
  SNP_REPORT_REQ,
  SNP_REPORT_RESP,
  SNP_GUEST_REQUEST_IOCTL,
  SNP_EXT_REPORT_REQ,
  MSG_REPORT_RSP,
];

/** What the guest request returned: the raw response and the two error words. */
export interface SnpGuestResponse {
  /** `snp_report_resp.data` (4000 bytes): MSG_REPORT_RSP. */
  response: Uint8Array<ArrayBuffer>;
  /** Firmware status (`exitinfo2` low half). */
  firmwareError: number;
  /** Hypervisor status (`exitinfo2` high half). */
  vmmError: number;
}

/** What SNP_GET_EXT_REPORT returned: the report response and the certificate table bytes. */
export interface SnpExtGuestResponse extends SnpGuestResponse {
  /** The certificate table as the host provided it (may be all zero when none). */
  certificates: Uint8Array<ArrayBuffer>;
}

function guestRequest(
  request: StructBuffer<string>,
  response: StructBuffer<string>,
  msgVersion: number,
): StructBuffer<keyof typeof SNP_GUEST_REQUEST_IOCTL.fields> {
  return new StructBuffer(SNP_GUEST_REQUEST_IOCTL)
    .set("msg_version", msgVersion)
    .set("req_data", request.address())
    .set("resp_data", response.address());
}

function errorWords(ioctl: StructBuffer<"fw_error" | "vmm_error">): Record<string, number> {
  return { firmwareError: ioctl.getNumber("fw_error"), vmmError: ioctl.getNumber("vmm_error") };
}

/**
 * SNP_GET_REPORT: asks the firmware for an attestation report with
 * `userData` (at most 64 bytes, zero-padded) as REPORT_DATA at `vmpl`.
 * Throws SyscallError whose details hold `firmwareError` and `vmmError`.
 */
export function snpGetReport(
  device: FileDescriptor,
  userData: Uint8Array,
  options: { vmpl?: number; msgVersion?: number } = {},
): SnpGuestResponse {
  const request = new StructBuffer(SNP_REPORT_REQ)
    .setBytes("user_data", userData)
    .set("vmpl", options.vmpl ?? 0);
  const response = new StructBuffer(SNP_REPORT_RESP);
  const ioctl = guestRequest(request, response, options.msgVersion ?? 1);
  device.ioctl(SNP_GET_REPORT, ioctl.bytes, {
    name: "SNP_GET_REPORT",
    details: () => errorWords(ioctl),
  });
  return { response: response.bytes, ...errorWords(ioctl) } as SnpGuestResponse;
}

/**
 * SNP_GET_EXT_REPORT: the report plus the host's certificate table. Starts
 * with `certsLength` bytes (default 4 pages) and, when the host answers
 * SNP_GUEST_VMM_ERR_INVALID_LEN, retries once with the length it asks for.
 */
export function snpGetExtReport(
  device: FileDescriptor,
  userData: Uint8Array,
  options: { vmpl?: number; msgVersion?: number; certsLength?: number } = {},
): SnpExtGuestResponse {
  let certsLength = options.certsLength ?? 4 * 4096;
  for (let attempt = 0;; attempt++) {
    using certs = AnonymousMapping.create(certsLength);
    const request = new StructBuffer(SNP_EXT_REPORT_REQ)
      .set("certs_address", certs.address)
      .set("certs_len", certs.length);
    new StructBuffer(SNP_REPORT_REQ, request.field("data"))
      .setBytes("user_data", userData)
      .set("vmpl", options.vmpl ?? 0);
    const response = new StructBuffer(SNP_REPORT_RESP);
    const ioctl = guestRequest(request, response, options.msgVersion ?? 1);
    try {
      device.ioctl(SNP_GET_EXT_REPORT, ioctl.bytes, {
        name: "SNP_GET_EXT_REPORT",
        details: () => ({ ...errorWords(ioctl), certsLength: request.getNumber("certs_len") }),
      });
    } catch (error) {
      const wanted = request.getNumber("certs_len");
      if (
        attempt === 0 && error instanceof SyscallError &&
        ioctl.getNumber("vmm_error") === SNP_GUEST_VMM_ERR_INVALID_LEN && wanted > certs.length
      ) {
        certsLength = wanted;
        continue;
      }
      throw error;
    }
    return {
      response: response.bytes,
      certificates: certs.read(0, Math.min(request.getNumber("certs_len"), certs.length)),
      ...errorWords(ioctl),
    } as SnpExtGuestResponse;
  }
}
