/**
 * How wasmldr inside a keep gets evidence for its backend: the backend
 * (runtime/backends/) names an {@link EvidenceSource}, and this module,
 * which runs inside the keep and is covered by its measurement, gets it:
 * `snp-sim` from the simulated SNP platform's state, `sev-guest` from the
 * SEV-SNP guest's own secure processor.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import { attestableBackends, backendByName, type EvidenceSource } from "../backends/mod.ts";
import type { EvidenceProvider } from "./wasmldr.ts";
import { encodeEvidenceBundle } from "../attestation/bundle.ts";
import { wasmldrMeasurement } from "./measurement.ts";

/** Options of {@link backendEvidence}. */
export interface BackendEvidenceOptions {
  /** State directory of the simulated SNP platform (default: the user's state directory). */
  simDir?: string;
}

/** A real SEV-SNP guest's report, with the host's certificate table. */
async function sevGuestEvidence(reportData: Uint8Array): Promise<Uint8Array> {
  // The report comes from the AMD secure processor (/dev/sev-guest or configfs-tsm).
  const { fetchGuestReport } = await import("./guest_report.ts");
  const got = await fetchGuestReport(reportData, { extended: true });
  if (got.format !== "snp") {
    throw new EnarxError(
      "evidence-unavailable",
      `This guest gives "${got.format}" evidence, not an SNP report; it is not an SEV-SNP keep`,
      { exit: "unavailable" },
    );
  }
  const certs = got.certificates === null ? [] : [got.certificates];
  return encodeEvidenceBundle({ format: "snp", report: got.report, certs });
}

/** A report signed by the simulated SNP platform, with the backend's measurement. */
async function snpSimEvidence(
  reportData: Uint8Array,
  measurement: Uint8Array,
  simDir: string | undefined,
): Promise<Uint8Array> {
  const { SnpSimulator } = await import("../attestation/amd/snp_sim.ts");
  const home = Deno.env.get("HOME") ?? "/tmp";
  const dir = simDir ??
    `${Deno.env.get("XDG_STATE_HOME") ?? `${home}/.local/state`}/enarx/snp-sim`;
  const sim = await SnpSimulator.open(dir);
  const { report, certs } = await sim.report(reportData, { measurement });
  return encodeEvidenceBundle({ format: "snp", report, certs });
}

/** The evidence provider for the keep's backend, named in the hello frame. */
export function backendEvidence(options: BackendEvidenceOptions = {}): EvidenceProvider {
  return async (reportData, hello) => {
    const backend = backendByName(hello.backend);
    const source: EvidenceSource | undefined = backend?.evidenceSource;
    if (backend === undefined || source === undefined) {
      const names = attestableBackends().map((b) => b.name);
      throw new EnarxError(
        "backend-unavailable",
        `This wasmldr cannot get evidence for backend "${hello.backend}"; use ${
          names.slice(0, -1).join(", ")
        } or ${names.at(-1)}`,
        { exit: "unavailable" },
      );
    }
    if (source === "sev-guest") return await sevGuestEvidence(reportData);
    // The simulator inside the keep signs the nil keep's measurement (what
    // wasmldr executes) for nil and kvm keeps alike, as clients expect today;
    // a kvm keep's own measurement (backend.measurement(): kernel, initrd,
    // command line) is the host's to compute, once the simulator sits there.
    const measurement = await wasmldrMeasurement();
    return await snpSimEvidence(reportData, measurement, options.simDir);
  };
}
