/**
 * The simulated SNP platform where the firmware sits: on the host, in
 * keepldr, never inside the keep. Like the AMD secure processor it stands
 * for, it measures the keep from the bytes keepldr launched (the same code
 * as `enarx measure`: runtime/measure/keep_measure.ts, through the keep's
 * {@link KeepHandle.measurement}) and signs a report whose REPORT_DATA is
 * what the guest asked for in its `report-request` frame. The private keys
 * stay in the simulator's state directory, which only keepmgr and keepldr
 * read.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import type { Backend, KeepHandle } from "../backends/mod.ts";
import type { ErrorFrame, ReportRequestFrame, ReportResponseFrame } from "../protocol/messages.ts";

/** The environment variable keepmgr sets to its simulator's state directory. */
export const SNP_SIM_DIR_ENV = "ENARX_SNP_SIM_DIR";

/** The simulator's state directory when none is given: the user's state directory. */
export function defaultSimDir(): string {
  const home = Deno.env.get("HOME") ?? "/tmp";
  return `${Deno.env.get("XDG_STATE_HOME") ?? `${home}/.local/state`}/enarx/snp-sim`;
}

/** Answers a keep's report requests. */
export interface HostReportSigner {
  /** The report for one request, or the error frame that refuses it. */
  answer(request: ReportRequestFrame): Promise<ReportResponseFrame | ErrorFrame>;
}

/** Options of {@link hostReportSigner}. */
export interface HostReportSignerOptions {
  /** The simulator's state directory (default `$ENARX_SNP_SIM_DIR`, else {@link defaultSimDir}). */
  simDir?: string;
}

/**
 * The report signer for a keep of `backend`: the simulated platform for
 * backends whose evidence is `snp-sim`; for others every request is
 * refused (their keeps ask their own hardware). The measurement is computed
 * once, starting now, so that it overlaps the keep's start.
 */
export function hostReportSigner(
  backend: Backend,
  keep: KeepHandle,
  options: HostReportSignerOptions = {},
): HostReportSigner {
  if (backend.evidenceSource !== "snp-sim") {
    return {
      answer: () =>
        Promise.resolve({
          t: "error",
          code: "report-unavailable",
          message: `A ${backend.name} keep gets its report from its own hardware, not the host`,
        }),
    };
  }
  const measuring = (keep.measurement ?? backend.measurement)();
  measuring.catch(() => {}); // reported when a request needs it
  const simDir = options.simDir ?? nonEmpty(Deno.env.get(SNP_SIM_DIR_ENV)) ?? defaultSimDir();
  return {
    async answer(request) {
      try {
        const measurement = await measuring;
        if (measurement === undefined) {
          throw new EnarxError("measurement-unavailable", "The keep has no measurement", {
            exit: "unavailable",
          });
        }
        const { SnpSimulator } = await import("../attestation/amd/snp_sim.ts");
        const sim = await SnpSimulator.open(simDir);
        const { report, certs } = await sim.report(request.report_data, { measurement });
        return { t: "report-response", report, certs };
      } catch (error) {
        return {
          t: "error",
          code: error instanceof EnarxError ? error.code : "report-failed",
          message: `The simulated platform cannot sign a report: ${
            error instanceof Error ? error.message : error
          }`,
        };
      }
    },
  };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}
