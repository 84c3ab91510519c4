/**
 * The guest report device: the one way wasmldr asks its platform for an
 * SNP report, whatever the platform is. It is chosen by what exists, in
 * the order a real guest has them: `/dev/sev-guest` (SNP_GET_EXT_REPORT,
 * with the host's certificates), configfs-tsm
 * (`/sys/kernel/config/tsm/report`), then the host channel: a
 * `report-request` frame that keepldr answers with the simulated SNP
 * platform it runs on the host side (spec/protocol.md, "Reports"), the way
 * the AMD secure processor answers a guest. The keep itself holds no key.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import type { FrameReader, FrameWriter } from "../protocol/frames.ts";
import { parseReportReplyFrame } from "../protocol/messages.ts";
import type { GuestReportOptions } from "./guest_report.ts";

/** What a device returns. */
export interface DeviceReport {
  /** The SNP ATTESTATION_REPORT. */
  report: Uint8Array;
  /** Certificates (DER each, or one SNP certificate table); may be empty. */
  certs: Uint8Array[];
}

/** A place to ask for a report. */
export interface GuestReportDevice {
  /** `sev-guest`, `tsm`, or `host` (keepldr's simulated platform, over the frames). */
  readonly via: "sev-guest" | "tsm" | "host";
  /** Asks for a report with `reportData` (64 bytes). */
  report(reportData: Uint8Array): Promise<DeviceReport>;
}

/**
 * The host channel as a report device: writes `report-request` on the
 * keep's frames and reads `report-response` (or `error`) back. Only one
 * request is in flight; wasmldr asks before any other frame can arrive.
 */
export function hostReportChannel(reader: FrameReader, writer: FrameWriter): GuestReportDevice {
  return {
    via: "host",
    async report(reportData) {
      await writer.write({ t: "report-request", report_data: reportData });
      const value = await reader.read();
      if (value === null) {
        throw new EnarxError(
          "channel-closed",
          "keepldr closed the channel before answering the report request",
          { exit: "unavailable" },
        );
      }
      const frame = parseReportReplyFrame(value);
      if (frame.t === "error") {
        throw new EnarxError(frame.code, `The host refused the report: ${frame.message}`, {
          exit: "unavailable",
        });
      }
      return { report: frame.report, certs: frame.certs };
    },
  };
}

/** A device of the guest's own: sev-guest or configfs-tsm. */
function platformDevice(
  via: "sev-guest" | "tsm",
  options: Pick<GuestReportOptions, "tsmRoot" | "devices">,
): GuestReportDevice {
  return {
    via,
    async report(reportData) {
      const { fetchGuestReport } = await import("./guest_report.ts");
      const got = await fetchGuestReport(reportData, { ...options, via, extended: true });
      if (got.format !== "snp") {
        throw new EnarxError(
          "evidence-unavailable",
          `This guest gives "${got.format}" evidence, not an SNP report; it is not an SEV-SNP keep`,
          { exit: "unavailable" },
        );
      }
      return { report: got.report, certs: got.certificates === null ? [] : [got.certificates] };
    },
  };
}

/** Options of {@link openGuestReportDevice}. */
export interface OpenReportDeviceOptions extends Pick<GuestReportOptions, "tsmRoot" | "devices"> {
  /** The host channel, when the keep has one (keepldr's frames). */
  host?: GuestReportDevice;
}

/**
 * Picks the device by what exists: `/dev/sev-guest`, configfs-tsm, then the
 * host channel. Throws EnarxError `evidence-unavailable` (exit 69) when
 * there is none.
 */
export async function openGuestReportDevice(
  options: OpenReportDeviceOptions = {},
): Promise<GuestReportDevice> {
  // Loaded here: the device bindings (FFI) load only where they are used.
  const { detectGuestInterface } = await import("./guest_report.ts");
  const found = detectGuestInterface(options);
  if (found === "sev-guest" || found === "tsm") return platformDevice(found, options);
  if (options.host !== undefined) return options.host;
  throw new EnarxError(
    "evidence-unavailable",
    "This keep has no report device: no /dev/sev-guest, no configfs-tsm and no host channel",
    { exit: "unavailable" },
  );
}
