/**
 * Fetches attestation evidence inside a TEE guest, with report data chosen
 * by the caller: an SEV-SNP report through `/dev/sev-guest` (optionally with
 * the host's certificate table), an SNP report or TDX quote through
 * configfs-tsm, or a TDX TDREPORT through `/dev/tdx_guest`. Every failure is
 * one EnarxError line that names the device and errno and says what to do.
 *
 * @module
 */
import { FileDescriptor, O_RDWR, SyscallError } from "../../ffi/libc.ts";
import {
  MSG_REPORT_RSP,
  SEV_GUEST_DEVICE,
  snpGetExtReport,
  snpGetReport,
} from "../../ffi/sev_guest.ts";
import { SEV_RET_NAMES } from "../../ffi/psp_sev.ts";
import { StructBuffer } from "../../ffi/struct_layout.ts";
import { TDX_GUEST_DEVICE, tdxGetReport0 } from "../../ffi/tdx_guest.ts";
import { EnarxError, type ExitStatusName } from "../errors.ts";
import { fetchTsmReport, TSM_REPORT_ROOT } from "./tsm_report.ts";
import { pathExists } from "../fs.ts";

/** The guest interfaces, in the order `auto` tries them. */
export type GuestInterface = "sev-guest" | "tsm" | "tdx-guest";

/** What a guest report holds. */
export interface GuestReport {
  /** The interface it came through. */
  via: GuestInterface;
  /** `snp` (1184-byte ATTESTATION_REPORT), `tdx-quote`, or `tdreport` (1024 bytes, not signed). */
  format: "snp" | "tdx-quote" | "tdreport";
  /** The report or quote bytes. */
  report: Uint8Array;
  /** The SNP certificate table (extended report or auxblob), or null. */
  certificates: Uint8Array | null;
  /** The 64 bytes of report data that were asked for. */
  reportData: Uint8Array;
  /** configfs-tsm's provider, when via `tsm`. */
  provider: string | null;
}

/** Options for {@link fetchGuestReport}. */
export interface GuestReportOptions {
  /** The interface, or `auto` (default): sev-guest, then tsm, then tdx-guest. */
  via?: GuestInterface | "auto";
  /** SNP VMPL to request (0–3); default 0 for sev-guest, the kernel's default for tsm. */
  vmpl?: number;
  /** SNP only: ask for the extended report with the host's certificates (sev-guest). */
  extended?: boolean;
  /** configfs-tsm root, for tests. */
  tsmRoot?: string;
  /** Device paths, for tests. */
  devices?: { sevGuest?: string; tdxGuest?: string };
}

/** A failure to fetch a guest report. */
export class GuestReportError extends EnarxError {
  /** Makes an error with a stable code and exit status. */
  constructor(code: string, message: string, options: { exit: ExitStatusName; cause?: unknown }) {
    super(code, message, options);
    this.name = "GuestReportError";
  }
}

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: "no such device",
  ENODEV: "no such device",
  ENXIO: "no such device",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EBUSY: "device busy",
};

function openDevice(path: string, what: string): FileDescriptor {
  try {
    return FileDescriptor.open(path, O_RDWR);
  } catch (error) {
    if (!(error instanceof SyscallError)) throw error;
    const text = ERRNO_TEXT[error.code] ?? error.code;
    if (error.code === "ENOENT" || error.code === "ENODEV" || error.code === "ENXIO") {
      throw new GuestReportError(
        "guest-device-missing",
        `Cannot open "${path}": ${text}; this host is not ${what}`,
        { exit: "unavailable", cause: error },
      );
    }
    if (error.code === "EACCES" || error.code === "EPERM") {
      throw new GuestReportError(
        "guest-device-permission",
        `Cannot open "${path}": ${text} (${error.code}); run as root or grant this user ` +
          `read-write access to it`,
        { exit: "permission", cause: error },
      );
    }
    throw new GuestReportError(
      "guest-device-error",
      `Cannot open "${path}": ${text} (${error.code})`,
      { exit: "io", cause: error },
    );
  }
}

function requestFailed(error: unknown): never {
  if (!(error instanceof SyscallError)) throw error;
  const fw = error.details.firmwareError;
  const vmm = error.details.vmmError;
  const firmware = fw ? `, firmware status 0x${fw.toString(16)} ${SEV_RET_NAMES[fw] ?? ""}` : "";
  const host = vmm ? `, hypervisor error ${vmm}` : "";
  const hint = error.code === "EINVAL"
    ? "; check --vmpl (it cannot be below this guest's own VMPL)"
    : error.code === "ENOTTY"
    ? "; the device does not support this request on this kernel"
    : vmm === 2
    ? "; the host is busy, retry"
    : "";
  throw new GuestReportError(
    "guest-report-failed",
    `${error.syscall} on "${error.path}" failed: ${error.code}${firmware.trimEnd()}${host}${hint}`,
    { exit: "io", cause: error },
  );
}

function snpReportFromResponse(response: Uint8Array<ArrayBuffer>): Uint8Array {
  const message = new StructBuffer(MSG_REPORT_RSP, response.subarray(0, MSG_REPORT_RSP.size));
  const status = message.getNumber("status");
  if (status !== 0) {
    throw new GuestReportError(
      "guest-report-failed",
      `The SEV firmware refused the report: status 0x${status.toString(16)} ` +
        `${SEV_RET_NAMES[status] ?? ""}`.trimEnd(),
      { exit: "io" },
    );
  }
  const size = message.getNumber("report_size");
  if (size !== MSG_REPORT_RSP.fields.report.size) {
    throw new GuestReportError(
      "guest-report-failed",
      `The SEV firmware returned a report of ${size} bytes, not ${MSG_REPORT_RSP.fields.report.size}`,
      { exit: "io" },
    );
  }
  return message.field("report").slice();
}

function fromSevGuest(reportData: Uint8Array, options: GuestReportOptions): GuestReport {
  const path = options.devices?.sevGuest ?? SEV_GUEST_DEVICE;
  using device = openDevice(path, "an SNP guest");
  const vmpl = options.vmpl ?? 0;
  try {
    if (options.extended) {
      const ext = snpGetExtReport(device, reportData, { vmpl });
      return {
        via: "sev-guest",
        format: "snp",
        report: snpReportFromResponse(ext.response),
        certificates: ext.certificates.some((b) => b !== 0) ? ext.certificates : null,
        reportData,
        provider: null,
      };
    }
    const result = snpGetReport(device, reportData, { vmpl });
    return {
      via: "sev-guest",
      format: "snp",
      report: snpReportFromResponse(result.response),
      certificates: null,
      reportData,
      provider: null,
    };
  } catch (error) {
    if (error instanceof GuestReportError) throw error;
    requestFailed(error);
  }
}

function fromTdxGuest(reportData: Uint8Array, options: GuestReportOptions): GuestReport {
  const path = options.devices?.tdxGuest ?? TDX_GUEST_DEVICE;
  using device = openDevice(path, "a TDX guest");
  try {
    return {
      via: "tdx-guest",
      format: "tdreport",
      report: tdxGetReport0(device, reportData),
      certificates: null,
      reportData,
      provider: null,
    };
  } catch (error) {
    requestFailed(error);
  }
}

async function fromTsm(reportData: Uint8Array, options: GuestReportOptions): Promise<GuestReport> {
  const tsm = await fetchTsmReport(reportData, {
    privlevel: options.vmpl,
    root: options.tsmRoot,
  });
  const format = tsm.provider.startsWith("tdx") ? "tdx-quote" : "snp";
  return {
    via: "tsm",
    format,
    report: tsm.outblob,
    certificates: tsm.auxblob,
    reportData,
    provider: tsm.provider,
  };
}

/** The interface `auto` picks on this machine, or null when it has none. */
export function detectGuestInterface(
  options: Pick<GuestReportOptions, "tsmRoot" | "devices"> = {},
): GuestInterface | null {
  if (pathExists(options.devices?.sevGuest ?? SEV_GUEST_DEVICE)) return "sev-guest";
  if (pathExists(options.tsmRoot ?? TSM_REPORT_ROOT)) return "tsm";
  if (pathExists(options.devices?.tdxGuest ?? TDX_GUEST_DEVICE)) return "tdx-guest";
  return null;
}

/**
 * Fetches a report with `reportData` (at most 64 bytes; zero-padded to 64)
 * through the chosen interface. Throws GuestReportError (exit 69 when the
 * device does not exist, 77 without permission, 74 when the request fails).
 */
export async function fetchGuestReport(
  reportData: Uint8Array,
  options: GuestReportOptions = {},
): Promise<GuestReport> {
  if (reportData.length > 64) {
    throw new GuestReportError(
      "report-data-size",
      `Report data is ${reportData.length} bytes; at most 64 fit`,
      { exit: "usage" },
    );
  }
  const vmpl = options.vmpl;
  if (vmpl !== undefined && (!Number.isInteger(vmpl) || vmpl < 0 || vmpl > 3)) {
    throw new GuestReportError("vmpl-invalid", `VMPL "${vmpl}" is not 0, 1, 2 or 3`, {
      exit: "usage",
    });
  }
  const padded = new Uint8Array(64);
  padded.set(reportData);
  let via = options.via ?? "auto";
  if (via === "auto") {
    const found = detectGuestInterface(options);
    if (found === null) {
      const sev = options.devices?.sevGuest ?? SEV_GUEST_DEVICE;
      const tdx = options.devices?.tdxGuest ?? TDX_GUEST_DEVICE;
      const tsm = options.tsmRoot ?? TSM_REPORT_ROOT;
      throw new GuestReportError(
        "guest-device-missing",
        `Cannot open "${sev}", "${tsm}" or "${tdx}": no such device; this host is not an ` +
          `SEV-SNP or TDX guest (see "enarx platform info")`,
        { exit: "unavailable" },
      );
    }
    via = found;
  }
  if (via === "sev-guest") return fromSevGuest(padded, options);
  if (via === "tdx-guest") return fromTdxGuest(padded, options);
  return await fromTsm(padded, options);
}
