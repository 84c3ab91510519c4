/**
 * How wasmldr inside a keep gets evidence: one code path for every backend.
 * It asks the guest report device (report_device.ts) for an SNP report
 * whose REPORT_DATA binds the client's nonce and the keep's sealing key, and
 * bundles it with the certificates. On SEV-SNP hardware the device is the
 * guest's secure processor; in nil and kvm keeps it is the host channel,
 * answered by keepldr's simulated platform, which measures what it launched
 * and signs. Nothing here holds or reads a key.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import { attestableBackends, backendByName } from "../backends/mod.ts";
import type { EvidenceProvider } from "./wasmldr.ts";
import { encodeEvidenceBundle } from "../attestation/bundle.ts";
import { openGuestReportDevice, type OpenReportDeviceOptions } from "./report_device.ts";

/** Options of {@link backendEvidence}: where to look for devices (tests). */
export type BackendEvidenceOptions = Omit<OpenReportDeviceOptions, "host">;

/** The evidence provider for the keep's backend, named in the hello frame. */
export function backendEvidence(options: BackendEvidenceOptions = {}): EvidenceProvider {
  return async (reportData, hello, context) => {
    const backend = backendByName(hello.backend);
    if (backend === undefined || backend.evidenceSource === undefined) {
      const names = attestableBackends().map((b) => b.name);
      throw new EnarxError(
        "backend-unavailable",
        `This wasmldr cannot get evidence for backend "${hello.backend}"; use ${
          names.slice(0, -1).join(", ")
        } or ${names.at(-1)}`,
        { exit: "unavailable" },
      );
    }
    const device = await openGuestReportDevice({ ...options, host: context?.host });
    const { report, certs } = await device.report(reportData);
    return encodeEvidenceBundle({ format: "snp", report, certs });
  };
}
