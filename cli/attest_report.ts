/**
 * `enarx attest report`: inside a TEE guest, fetches an attestation report
 * with the given report data through the kernel (`/dev/sev-guest`,
 * configfs-tsm or `/dev/tdx_guest`) and writes it out.
 *
 * @module
 */
import { UsageError } from "../runtime/errors.ts";
import { fetchGuestReport, type GuestInterface } from "../runtime/keep/guest_report.ts";
import { type Command, parseCommandArgs, printErr, printJson, printOut } from "./_command.ts";

const HELP = `Usage: enarx attest report [OPTIONS]

Fetches an attestation report from this machine's TEE (it must be an SEV-SNP
or TDX guest) with the report data you choose, and prints it as hex or writes
it to a file.

Options:
      --report-data HEX  Up to 64 bytes of report data, in hex; zero-padded to
                         64 (default: 64 zero bytes)
      --vmpl N           SEV-SNP: the VMPL to request, 0-3 (default 0)
      --ext              SEV-SNP via sev-guest: also fetch the host's certificate
                         table (SNP_GET_EXT_REPORT); tsm always returns it
      --via INTERFACE    sev-guest, tsm, tdx (the TDX TDREPORT) or auto (default:
                         the first present, in that order)
      --out FILE         Write the raw report to FILE (and the certificate table,
                         if any, to FILE.certs) instead of printing hex
      --json             Print {via, format, provider, reportData, report,
                         certificates} as JSON, bytes in hex
  -h, --help             Show this help

Exit status: 0 on success, 64 bad usage, 69 no TEE guest device here,
74 the request failed, 77 permission denied. "enarx platform info" shows
which guest interfaces this machine has.
`;

const VIA: Record<string, GuestInterface | "auto"> = {
  "sev-guest": "sev-guest",
  tsm: "tsm",
  tdx: "tdx-guest",
  "tdx-guest": "tdx-guest",
  auto: "auto",
};

/** Parses report data given in hex (an optional 0x prefix; at most 64 bytes). */
export function parseReportData(text: string): Uint8Array {
  const digits = text.startsWith("0x") || text.startsWith("0X") ? text.slice(2) : text;
  if (digits.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(digits)) {
    throw new UsageError(
      `Report data "${text}" is not hex (two digits per byte); see "enarx attest report --help"`,
    );
  }
  if (digits.length > 128) {
    throw new UsageError(
      `Report data "${text.slice(0, 16)}..." is ${digits.length / 2} bytes; at most 64 fit`,
    );
  }
  return Uint8Array.fromHex(digits);
}

function parseVmpl(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[0-3]$/.test(text)) {
    throw new UsageError(`VMPL "${text}" is not 0, 1, 2 or 3; see "enarx attest report --help"`);
  }
  return Number(text);
}

/** The `attest report` command. */
export const command: Command = {
  name: "attest report",
  summary: "Fetch an attestation report from this guest's TEE",
  async run(args: string[]): Promise<number> {
    const { values, positionals } = parseCommandArgs("attest report", args, {
      options: {
        "report-data": { type: "string" },
        vmpl: { type: "string" },
        ext: { type: "boolean" },
        via: { type: "string" },
        out: { type: "string" },
        json: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
    if (values.help) {
      await printOut(HELP);
      return 0;
    }
    if (positionals.length > 0) {
      throw new UsageError(
        `Unexpected argument "${positionals[0]}"; see "enarx attest report --help"`,
      );
    }
    const via = VIA[values.via ?? "auto"];
    if (via === undefined) {
      throw new UsageError(
        `Unknown interface "${values.via}": use sev-guest, tsm, tdx or auto`,
      );
    }
    const vmpl = parseVmpl(values.vmpl);
    if (via === "tdx-guest" && (vmpl !== undefined || values.ext)) {
      throw new UsageError(`--vmpl and --ext are SEV-SNP options; "--via tdx" takes neither`);
    }
    const reportData = parseReportData(values["report-data"] ?? "");
    const report = await fetchGuestReport(reportData, { via, vmpl, extended: values.ext });

    if (values.out !== undefined) {
      await Deno.writeFile(values.out, report.report);
      if (report.certificates !== null) {
        await Deno.writeFile(`${values.out}.certs`, report.certificates);
      }
      if (!values.json) {
        await printErr(
          `Wrote ${report.format} report (${report.report.length} bytes, via ${report.via}) ` +
            `to "${values.out}"${
              report.certificates === null ? "" : ` and certificates to "${values.out}.certs"`
            }\n`,
        );
      }
    }
    if (values.json) {
      await printJson({
        via: report.via,
        format: report.format,
        provider: report.provider,
        reportData: report.reportData.toHex(),
        report: report.report.toHex(),
        certificates: report.certificates === null ? null : report.certificates.toHex(),
      });
    } else if (values.out === undefined) {
      await printOut(report.report.toHex() + "\n");
    }
    return 0;
  },
};
