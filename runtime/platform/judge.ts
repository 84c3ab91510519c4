/**
 * {@link Judge}: one host's facts (runtime/platform/host_facts.ts) with the
 * helpers that backends write their checks with, and the kernel's names
 * for the interfaces they check (device nodes, VM types, sockets). Backend
 * modules import it for its type only: the kernel bindings behind these
 * names load with `enarx platform info`, not with every backend.
 *
 * @module
 */
import { KVM_API_VERSION, KVM_DEVICE, KVM_X86_SNP_VM, KVM_X86_TDX_VM } from "../../ffi/kvm.ts";
import { SEV_DEVICE } from "../../ffi/psp_sev.ts";
import { SEV_GUEST_DEVICE } from "../../ffi/sev_guest.ts";
import { SGX_ENCLAVE_DEVICE, SGX_PROVISION_DEVICE } from "../../ffi/sgx.ts";
import { TDX_GUEST_DEVICE } from "../../ffi/tdx_guest.ts";
import {
  AESM_SOCKET,
  CONFIGFS_DIR,
  type HostFacts,
  QEMU_BINARY,
  TSM_REPORT_DIR,
} from "./host_facts.ts";
import { type CheckInput, type CheckList, type Remedy, remedy } from "./check_list.ts";

/** Where the interfaces that checks name live. */
export const PLATFORM_PATHS = {
  kvm: KVM_DEVICE,
  sev: SEV_DEVICE,
  sevGuest: SEV_GUEST_DEVICE,
  tdxGuest: TDX_GUEST_DEVICE,
  sgxEnclave: SGX_ENCLAVE_DEVICE,
  sgxProvision: SGX_PROVISION_DEVICE,
  aesmSocket: AESM_SOCKET,
  configfs: CONFIGFS_DIR,
  tsmReport: TSM_REPORT_DIR,
} as const;

/** KVM VM types (KVM_CAP_VM_TYPES bits) that checks name. */
export const KVM_VM_TYPES = { snp: KVM_X86_SNP_VM, tdx: KVM_X86_TDX_VM } as const;

function kernelAtLeast(release: string, major: number, minor: number): boolean {
  const [a, b] = release.split(/[.-]/).map(Number);
  return a > major || (a === major && b >= minor);
}

function isOn(value: string | null): boolean {
  return value === "Y" || value === "y" || value === "1";
}

/** Helpers bound to one host, so that remedies can name its user and groups. */
export class Judge {
  /** The kernel's names for the interfaces checks name. */
  readonly paths = PLATFORM_PATHS;
  /** KVM VM types. */
  readonly vmTypes = KVM_VM_TYPES;
  /** The facts judged. */
  readonly facts: HostFacts;
  /** `sudo ` in commands for a user that is not root, else empty. */
  readonly sudo: string;

  /** Judges `facts`. */
  constructor(facts: HostFacts) {
    this.facts = facts;
    this.sudo = facts.user.uid === 0 ? "" : "sudo ";
  }

  /** Whether the CPU has `flag` in /proc/cpuinfo. */
  hasFlag(flag: string): boolean {
    return this.facts.cpu.flags.includes(flag);
  }

  /** The check that a device node opens read-write, with the right remedy for its errno. */
  device(path: string, title: string, missing: Remedy, options: { needs?: string[] } = {}) {
    const device = this.facts.devices[path] ?? { present: false, open: "ENOENT", group: null };
    const errno = device.open === "ok" ? null : device.open.split(" ")[0];
    let fix: Remedy = missing;
    let detail = device.open === "ok" ? "Opens read-write" : `Cannot open: ${device.open}`;
    if (!device.present) {
      detail = "No such device (ENOENT)";
    } else if (errno === "EACCES" || errno === "EPERM") {
      const user = this.facts.user.name;
      fix = device.group !== null && device.group !== "root"
        ? remedy(
          [`${this.sudo}usermod -aG ${device.group} ${user}`],
          `Log out and in again for the new group "${device.group}" to apply`,
        )
        : remedy(
          [`${this.sudo}setfacl -m u:${user}:rw ${path}`],
          `Lasts until "${path}" is recreated (reboot); for a permanent grant add a udev rule ` +
            `that sets its GROUP and MODE`,
        );
    } else if (errno === "EBUSY") {
      fix = remedy([], `"${path}" is held exclusively by another program; stop it and retry`);
    }
    return {
      title,
      pass: device.open === "ok",
      detail,
      errno,
      remedy: fix,
      needs: options.needs,
    };
  }

  /** The check that a kernel is at least `major.minor`. */
  kernel(major: number, minor: number, why: string): CheckInput {
    const ok = kernelAtLeast(this.facts.kernelRelease, major, minor);
    return {
      title: `Linux kernel >= ${major}.${minor} (${why})`,
      pass: ok,
      detail: `Running ${this.facts.kernelRelease}`,
      remedy: remedy(
        [],
        `Install and boot a kernel >= ${major}.${minor} from your distribution ` +
          `(Debian: the linux-image-amd64 package of a release that has one)`,
      ),
    };
  }

  /** The check that QEMU is installed. */
  qemu(): CheckInput {
    const path = this.facts.executables[QEMU_BINARY] ?? null;
    return {
      title: `QEMU (${QEMU_BINARY}) is installed`,
      pass: path !== null,
      detail: path ?? "Not found on PATH",
      remedy: remedy([
        `${this.sudo}apt-get install qemu-system-x86`,
      ], "On Fedora or RHEL: dnf install qemu-kvm"),
    };
  }

  /**
   * Whether kvm keeps get KVM acceleration: QEMU runs them under TCG
   * (emulation: no hardware virtualisation boundary, and slow) unless
   * `ENARX_KVM_ACCEL=kvm` is set for whoever launches them. Optional: TCG
   * keeps still run.
   */
  kvmAcceleration(): CheckInput {
    const kvm = this.facts.kvmAccel === "kvm";
    return {
      title: "Keeps get KVM acceleration",
      required: false,
      pass: kvm,
      detail: kvm
        ? "ENARX_KVM_ACCEL=kvm: QEMU runs keeps with KVM (hardware virtualisation)"
        : "Keeps run under TCG (emulation, no hardware virtualisation) unless ENARX_KVM_ACCEL=kvm is set",
      remedy: remedy(
        [],
        "Set ENARX_KVM_ACCEL=kvm in keepmgr's environment (Environment= in its systemd unit) " +
          "once /dev/kvm works",
      ),
    };
  }

  /** Adds the checks that KVM works, as `<prefix>.device`, `.api-version`, `.create-vm`. */
  kvmChecks(list: CheckList, prefix: string): void {
    const { facts } = this;
    const vendorModule = facts.cpu.vendor === "GenuineIntel" ? "kvm_intel" : "kvm_amd";
    const hwFlag = facts.cpu.vendor === "GenuineIntel" ? "vmx" : "svm";
    const loadable = this.hasFlag(hwFlag);
    list.add(`${prefix}.device`, {
      ...this.device(
        KVM_DEVICE,
        `${KVM_DEVICE} opens read-write`,
        loadable ? remedy([`${this.sudo}modprobe ${vendorModule}`]) : remedy(
          [],
          `The CPU does not offer hardware virtualisation (no "${hwFlag}" flag): enable ` +
            `${hwFlag === "vmx" ? "Intel VT-x" : "AMD-V (SVM)"} in the firmware setup, or, ` +
            `inside a VM, enable nested virtualisation on its host`,
        ),
      ),
    });
    list.add(`${prefix}.api-version`, {
      title: `KVM API version is ${KVM_API_VERSION}`,
      pass: facts.kvm.apiVersion === KVM_API_VERSION,
      detail: facts.kvm.apiVersion === null ? "Unknown" : `API version ${facts.kvm.apiVersion}`,
      remedy: remedy([], "This kernel's KVM is not mainline KVM; use a mainline kernel"),
      needs: [`${prefix}.device`],
    });
    list.add(`${prefix}.create-vm`, {
      title: "KVM creates a virtual machine (KVM_CREATE_VM)",
      pass: facts.kvm.createVm === "ok",
      detail: facts.kvm.createVm === "ok"
        ? `Created and destroyed a VM (KVM module: ${this.kvmModule()})`
        : `KVM_CREATE_VM failed: ${facts.kvm.createVm}`,
      errno: facts.kvm.createVm === "ok" ? null : facts.kvm.createVm?.split(" ")[0] ?? null,
      remedy: remedy(
        ["dmesg | grep -i kvm"],
        "The kernel log says why; EBUSY means another hypervisor (e.g. VirtualBox) holds " +
          "the CPU's virtualisation extensions",
      ),
      needs: [`${prefix}.api-version`],
    });
  }

  /** The loaded KVM vendor modules, for a detail line. */
  kvmModule(): string {
    const loaded = ["kvm_intel", "kvm_amd", "kvm_pvm"].filter((m) =>
      this.facts.modules.includes(m)
    );
    return loaded.length > 0 ? loaded.join(", ") : "built in";
  }

  /** The check that KVM offers VMs of `type`. */
  vmType(type: number, name: string, fix: Remedy, needs: string[]): CheckInput {
    const types = this.facts.kvm.vmTypes;
    return {
      title: `KVM offers ${name} VMs (KVM_CAP_VM_TYPES)`,
      pass: types !== null && (types & (1 << type)) !== 0,
      detail: types === null
        ? "Unknown"
        : types === 0
        ? "KVM_CAP_VM_TYPES unsupported (kernel before 6.8)"
        : `VM types mask 0x${types.toString(16)}`,
      remedy: fix,
      needs,
    };
  }

  /** A check on a kvm_amd or kvm_intel module parameter that must be on. */
  parameter(name: string, fix: Remedy, needs: string[]): CheckInput {
    const value = this.facts.parameters[name] ?? null;
    const [module, parameter] = name.split("/");
    return {
      title: `${module} parameter ${parameter} is enabled`,
      pass: isOn(value),
      detail: value === null
        ? this.facts.modules.includes(module)
          ? `${module} has no "${parameter}" parameter (kernel too old)`
          : `${module} is not loaded`
        : `/sys/module/${module}/parameters/${parameter} = ${value}`,
      remedy: fix,
      needs,
    };
  }
}
