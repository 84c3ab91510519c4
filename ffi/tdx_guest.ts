/**
 * The TDX guest device `/dev/tdx_guest`: TDX_CMD_GET_REPORT0 returns the
 * 1024-byte TDREPORT for 64 bytes of REPORTDATA.
 *
 * NOT in the machine's uapi headers (Debian's linux-libc-dev 6.1 has no
 * `linux/tdx-guest.h`). Taken from the kernel: `include/uapi/linux/tdx-guest.h`
 * (Linux >= 6.2), which defines `TDX_REPORTDATA_LEN 64`, `TDX_REPORT_LEN
 * 1024`, `struct tdx_report_req { __u8 reportdata[64]; __u8 tdreport[1024]; }`
 * and `TDX_CMD_GET_REPORT0 _IOWR('T', 1, struct tdx_report_req)`, and from
 * `Documentation/virt/coco/tdx-guest.rst` §2.1 (the ioctl's contract: -EINVAL
 * for bad operands, -EIO when the TDCALL fails). The misc device registers
 * as "tdx_guest"; the documentation's "/dev/tdx-guest" is a typo.
 *
 * @module
 */
import { iowr } from "./ioctl.ts";
import type { FileDescriptor } from "./libc.ts";
import {
  defineConstant,
  defineStruct,
  StructBuffer,
  type StructLayout,
  type UapiConstant,
} from "./struct_layout.ts";

const KERNEL = {
  header: "linux/tdx-guest.h",
  local: "no",
  source: "Linux include/uapi/linux/tdx-guest.h (>= 6.2), Documentation/virt/coco/tdx-guest.rst",
} as const;

/** The guest device node. */
export const TDX_GUEST_DEVICE = "/dev/tdx_guest";
/** `TDX_REPORTDATA_LEN`. */
export const TDX_REPORTDATA_LEN = 64;
/** `TDX_REPORT_LEN`: the TDREPORT_STRUCT size. */
export const TDX_REPORT_LEN = 1024;

/** `struct tdx_report_req`. */
export const TDX_REPORT_REQ = defineStruct("tdx_report_req", {
  size: 1088,
  fields: {
    reportdata: [0, TDX_REPORTDATA_LEN],
    tdreport: [TDX_REPORTDATA_LEN, TDX_REPORT_LEN],
  },
  source: KERNEL,
});

/** `_IOWR('T', 1, struct tdx_report_req)` = 0xC4405401. */
export const TDX_CMD_GET_REPORT0 = iowr("T", 1, { size: TDX_REPORT_REQ.size });

/** Every constant above with its provenance, for the uapi test. */
export const TDX_GUEST_CONSTANTS: readonly UapiConstant[] = [
  defineConstant("TDX_REPORTDATA_LEN", { value: TDX_REPORTDATA_LEN, source: KERNEL }),
  defineConstant("TDX_REPORT_LEN", { value: TDX_REPORT_LEN, source: KERNEL }),
  defineConstant("TDX_CMD_GET_REPORT0", { value: TDX_CMD_GET_REPORT0, source: KERNEL }),
];

/** Every structure above, for the uapi test. */
export const TDX_GUEST_STRUCTS: readonly StructLayout[] = [TDX_REPORT_REQ];

/** TDX_CMD_GET_REPORT0: the TDREPORT for `reportData` (at most 64 bytes, zero-padded). */
export function tdxGetReport0(
  device: FileDescriptor,
  reportData: Uint8Array,
): Uint8Array<ArrayBuffer> {
  const request = new StructBuffer(TDX_REPORT_REQ).setBytes("reportdata", reportData);
  device.ioctl(TDX_CMD_GET_REPORT0, request.bytes, { name: "TDX_CMD_GET_REPORT0" });
  return request.field("tdreport").slice();
}
