/**
 * This machine as a TEE guest: the interfaces `enarx attest report` can
 * fetch evidence through (sev-guest, configfs-tsm, tdx-guest), each with
 * the checks behind its verdict.
 *
 * @module
 */
import { CheckList, remedy } from "./check_list.ts";
import type { Judge } from "./judge.ts";
import type { PlatformCheck } from "./check_list.ts";

/** The guest interfaces `enarx attest report` can fetch evidence through, preferred first. */
export const GUEST_INTERFACES = ["sev-guest", "tsm", "tdx-guest"] as const;
/** A guest interface name. */
export type GuestInterfaceName = typeof GUEST_INTERFACES[number];

/** One guest interface's verdict (this machine as a TEE guest). */
export interface GuestInterfaceInfo {
  /** The interface's name. */
  name: GuestInterfaceName;
  /** What it yields. */
  description: string;
  /** Every required check passed. */
  usable: boolean;
  /** Every check, in order. */
  checks: PlatformCheck[];
}

/** What kind of guest this machine is. */
function guestKind(judge: Judge) {
  const inVm = judge.hasFlag("hypervisor");
  return { inVm, snp: inVm && judge.hasFlag("sev_snp"), tdx: judge.hasFlag("tdx_guest") };
}

function sevGuestChecks(judge: Judge): CheckList {
  const { inVm, snp } = guestKind(judge);
  const device = judge.paths.sevGuest;
  return new CheckList()
    .add("guest.sev-guest.cpu", {
      title: "This machine is an SEV-SNP guest (CPU flags sev_snp and hypervisor)",
      pass: snp,
      detail: snp ? "SEV-SNP guest" : inVm ? "A VM, but not SEV-SNP" : "Not a VM",
      remedy: remedy([], "Run enarx inside an SEV-SNP guest (e.g. an sev keep)"),
    })
    .add("guest.sev-guest.device", {
      ...judge.device(
        device,
        `${device} opens read-write`,
        remedy([`${judge.sudo}modprobe sev-guest`]),
      ),
      needs: ["guest.sev-guest.cpu"],
    });
}

function tdxGuestChecks(judge: Judge): CheckList {
  const { tdx } = guestKind(judge);
  const device = judge.paths.tdxGuest;
  return new CheckList()
    .add("guest.tdx-guest.cpu", {
      title: 'This machine is a TDX guest (CPU flag "tdx_guest")',
      pass: tdx,
      detail: tdx ? "TDX guest" : "Not a TDX guest",
      remedy: remedy([], "Run enarx inside a TDX guest"),
    })
    .add("guest.tdx-guest.device", {
      ...judge.device(
        device,
        `${device} opens read-write`,
        remedy([`${judge.sudo}modprobe tdx-guest`]),
      ),
      needs: ["guest.tdx-guest.cpu"],
    });
}

function tsmChecks(judge: Judge): CheckList {
  const { facts, sudo, paths } = judge;
  const { snp, tdx } = guestKind(judge);
  return new CheckList()
    .add("guest.tsm.cpu", {
      title: "This machine is an SEV-SNP or TDX guest",
      pass: snp || tdx,
      detail: snp ? "SEV-SNP guest" : tdx ? "TDX guest" : "Not a TEE guest",
      remedy: remedy([], "Run enarx inside an SEV-SNP or TDX guest"),
    })
    .add("guest.tsm.kernel", {
      ...judge.kernel(6, 7, "configfs-tsm reports"),
      needs: ["guest.tsm.cpu"],
    })
    .add("guest.tsm.configfs", {
      title: `configfs is mounted at ${paths.configfs}`,
      pass: facts.configfs.mounted,
      detail: facts.configfs.mounted ? "Mounted" : "Not mounted",
      remedy: remedy([`${sudo}mount -t configfs none ${paths.configfs}`]),
      needs: ["guest.tsm.cpu"],
    })
    .add("guest.tsm.report", {
      title: `${paths.tsmReport} exists`,
      pass: facts.configfs.tsmReport,
      detail: facts.configfs.tsmReport ? "Present" : "Absent",
      remedy: remedy(
        [`${sudo}modprobe ${tdx ? "tdx-guest" : "sev-guest"}`],
        "Needs a kernel built with CONFIG_TSM_REPORTS",
      ),
      needs: ["guest.tsm.configfs", "guest.tsm.kernel"],
    });
}

/** Judges every guest interface, preferred first. */
export function guestInterfaces(judge: Judge): GuestInterfaceInfo[] {
  const sevGuest = sevGuestChecks(judge);
  const tsm = tsmChecks(judge);
  const tdxGuest = tdxGuestChecks(judge);
  return [
    {
      name: "sev-guest",
      description: "SEV-SNP report (and host certificates) through SNP_GET_REPORT/EXT_REPORT",
      usable: sevGuest.usable,
      checks: sevGuest.checks,
    },
    {
      name: "tsm",
      description: "SEV-SNP report or TDX quote through configfs-tsm",
      usable: tsm.usable,
      checks: tsm.checks,
    },
    {
      name: "tdx-guest",
      description:
        "TDX TDREPORT through TDX_CMD_GET_REPORT0 (needs a quoting service to become a quote)",
      usable: tdxGuest.usable,
      checks: tdxGuest.checks,
    },
  ];
}
