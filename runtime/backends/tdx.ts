/**
 * The `tdx` backend: a QEMU/KVM trust domain with Intel TDX. enarx checks the host for it and verifies
 * its evidence (TDX quotes v4, to Intel's root); launching its keeps, and getting evidence inside
 * them, come later. Its measurement comes from the hardware, so only the
 * client's policy can name it.
 *
 * @module
 */
import { type Backend, notLaunchableYet } from "./backend.ts";
import type { Judge } from "../platform/judge.ts";
import { CheckList, type PlatformCheck, remedy } from "../platform/check_list.ts";

/** Every check of a tdx host, in order. */
function tdxChecks(judge: Judge): PlatformCheck[] {
  const { facts, sudo } = judge;
  const load = remedy(
    [`${sudo}modprobe -r kvm_intel`, `${sudo}modprobe kvm_intel tdx=1`],
    'To keep it across reboots: echo "options kvm_intel tdx=1" | ' +
      `${sudo}tee /etc/modprobe.d/kvm-intel-tdx.conf. If it stays off, see dmesg | grep -i tdx`,
  );
  const list = new CheckList();
  list.add("tdx.cpu.intel", {
    title: "CPU is an Intel Xeon with TDX (4th generation or later)",
    pass: facts.cpu.vendor === "GenuineIntel",
    detail: `${facts.cpu.vendor ?? "Unknown vendor"}: ${facts.cpu.modelName ?? "unknown model"}`,
    remedy: remedy([], "TDX needs an Intel Xeon processor with TDX (Sapphire Rapids or later)"),
  });
  list.add("tdx.cpu.tdx-host", {
    title: 'CPU flag "tdx_host_platform" in /proc/cpuinfo',
    pass: judge.hasFlag("tdx_host_platform"),
    detail: judge.hasFlag("tdx_host_platform") ? "Present" : "Absent",
    remedy: judge.hasFlag("hypervisor")
      ? remedy([], "This is a virtual machine: tdx keeps need a bare-metal Intel host")
      : remedy(
        [],
        "Enable TME, TME-MT (multi-key), TDX and the SEAM loader in the firmware setup, then " +
          "boot a kernel with TDX host support",
      ),
    needs: ["tdx.cpu.intel"],
  });
  list.add("tdx.kernel", judge.kernel(6, 16, "TDX host support"));
  judge.kvmChecks(list, "tdx.kvm");
  list.add("tdx.kvm-intel.loaded", {
    title: "kvm_intel module is loaded",
    pass: facts.modules.includes("kvm_intel"),
    detail: facts.modules.includes("kvm_intel") ? "Loaded" : "Not loaded",
    remedy: remedy([`${sudo}modprobe kvm_intel tdx=1`]),
    needs: ["tdx.cpu.tdx-host"],
  });
  list.add("tdx.kvm-intel.tdx", judge.parameter("kvm_intel/tdx", load, ["tdx.kvm-intel.loaded"]));
  list.add(
    "tdx.kvm.tdx-vm-type",
    judge.vmType(judge.vmTypes.tdx, "TDX", load, ["tdx.kvm.device", "tdx.kvm-intel.tdx"]),
  );
  list.add("tdx.qemu", judge.qemu());
  return list.checks;
}

/** The tdx backend. */
export const tdxBackend: Backend = {
  name: "tdx",
  description: "A QEMU/KVM trust domain with Intel TDX",
  evidence: "tdx",
  checks: tdxChecks,
  launchable: () => false,
  launches: false,
  launch: () => notLaunchableYet("tdx"),
  measurement: () => Promise.resolve(undefined),
};
