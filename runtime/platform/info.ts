/**
 * Which keep backends this machine can use, and why: every check behind each
 * answer, with a remedy that is a correct command where a command can fix it
 * (or says which firmware setting to change where none can). Also which TEE
 * guest interfaces this machine has for `enarx attest report`.
 *
 * The result is the documented, schema-stable JSON of `enarx platform info
 * --json` (spec/platform-info.md); change {@link PLATFORM_INFO_VERSION} when
 * a field changes meaning or disappears.
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
  gatherHostFacts,
  type HostFacts,
  QEMU_BINARY,
  TSM_REPORT_DIR,
} from "./host_facts.ts";
import { ENARX_VERSION } from "../version.ts";
import { kvmLaunchable } from "../backends/kvm.ts";

/** The version of the platform-info JSON schema. */
export const PLATFORM_INFO_VERSION = 1;

/** Backends, strongest first: the order `--backend auto` tries them in. */
export const BACKENDS = ["sev", "tdx", "sgx", "kvm", "nil"] as const;
/** A backend name. */
export type BackendName = typeof BACKENDS[number];

/**
 * Backends that enarx can launch keeps on today. A backend can be usable
 * (the machine has what it needs) without being launchable (enarx does not
 * implement launching it yet). Add a name here when its launcher lands.
 */
export const LAUNCHABLE_BACKENDS: readonly BackendName[] = ["nil"];

/** The guest interfaces `enarx attest report` can fetch evidence through, preferred first. */
export const GUEST_INTERFACES = ["sev-guest", "tsm", "tdx-guest"] as const;
/** A guest interface name. */
export type GuestInterfaceName = typeof GUEST_INTERFACES[number];

/** What to do about a failed check. */
export interface Remedy {
  /** Shell commands to run, in order; empty when no command can fix it (e.g. firmware setup). */
  commands: string[];
  /** What else to know or do (reboot, firmware settings, persistence); null when nothing. */
  note: string | null;
}

/** One check and its result. */
export interface PlatformCheck {
  /** Stable identifier, e.g. `sev.kvm-amd.sev-snp`. */
  id: string;
  /** What is checked, for a person. */
  title: string;
  /** `pass`, `fail`, or `skip` (not evaluated because a check it needs did not pass). */
  status: "pass" | "fail" | "skip";
  /** Whether the backend is unusable unless this check passes. */
  required: boolean;
  /** What was found, one line. */
  detail: string;
  /** The errno name when a system call failed, else null. */
  errno: string | null;
  /** For a failed check: what to do; else null. */
  remedy: Remedy | null;
}

/** One backend's verdict. */
export interface BackendInfo {
  /** The backend's name. */
  name: BackendName;
  /** What a keep is on this backend. */
  description: string;
  /** The evidence its keeps produce: `snp-sim` (simulated), `sev-snp`, `tdx`, `sgx`. */
  evidence: "snp-sim" | "sev-snp" | "tdx" | "sgx";
  /** Every required check passed. */
  usable: boolean;
  /** Usable, and enarx can launch keeps on it today. */
  launchable: boolean;
  /** Every check, in order. */
  checks: PlatformCheck[];
}

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

/** The whole report: `enarx platform info --json`. */
export interface PlatformInfo {
  /** Always `enarx-platform-info`. */
  schema: "enarx-platform-info";
  /** {@link PLATFORM_INFO_VERSION}. */
  version: number;
  /** The enarx version that made the report. */
  enarx: string;
  /** The machine. */
  system: {
    kernel: string;
    arch: string;
    cpuVendor: string | null;
    cpuModel: string | null;
    cpuFamily: number | null;
    cpuModelNumber: number | null;
    virtualMachine: boolean;
    user: string;
  };
  /** Every backend, strongest first. */
  backends: BackendInfo[];
  /** The strongest usable backend, and the strongest launchable one (`--backend auto`). */
  best: { usable: BackendName; launchable: BackendName };
  /** This machine as a TEE guest: interfaces for `enarx attest report`. */
  guest: { interfaces: GuestInterfaceInfo[]; preferred: GuestInterfaceName | null };
}

// ---------------------------------------------------------------------------
// Building checks

interface CheckInput {
  title: string;
  pass: boolean;
  detail: string;
  errno?: string | null;
  remedy?: Remedy | null;
  required?: boolean;
  needs?: string[];
}

class CheckList {
  readonly checks: PlatformCheck[] = [];

  add(id: string, input: CheckInput): this {
    const blocked = (input.needs ?? []).map((need) => this.checks.find((c) => c.id === need))
      .find((c) => c !== undefined && c.status !== "pass");
    const required = input.required ?? true;
    if (blocked !== undefined) {
      this.checks.push({
        id,
        title: input.title,
        status: "skip",
        required,
        detail: `Not checked (needs: ${blocked.title})`,
        errno: null,
        remedy: null,
      });
    } else {
      this.checks.push({
        id,
        title: input.title,
        status: input.pass ? "pass" : "fail",
        required,
        detail: input.detail,
        errno: input.pass ? null : input.errno ?? null,
        remedy: input.pass ? null : input.remedy ?? null,
      });
    }
    return this;
  }

  get usable(): boolean {
    return this.checks.every((c) => !c.required || c.status === "pass");
  }
}

function remedy(commands: string[], note: string | null = null): Remedy {
  return { commands, note };
}

function kernelAtLeast(release: string, major: number, minor: number): boolean {
  const [a, b] = release.split(/[.-]/).map(Number);
  return a > major || (a === major && b >= minor);
}

function isOn(value: string | null): boolean {
  return value === "Y" || value === "y" || value === "1";
}

/** Helpers bound to one host, so that remedies can name its user and groups. */
class Judge {
  readonly facts: HostFacts;
  readonly sudo: string;

  constructor(facts: HostFacts) {
    this.facts = facts;
    this.sudo = facts.user.uid === 0 ? "" : "sudo ";
  }

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

  kvmModule(): string {
    const loaded = ["kvm_intel", "kvm_amd", "kvm_pvm"].filter((m) =>
      this.facts.modules.includes(m)
    );
    return loaded.length > 0 ? loaded.join(", ") : "built in";
  }

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

// ---------------------------------------------------------------------------
// Backends

function nilBackend(): BackendInfo {
  const list = new CheckList().add("nil.process", {
    title: "Keeps run as sandboxed local processes",
    pass: true,
    detail: "Always available; evidence is simulated SNP (snp-sim) and proves nothing " +
      "about hardware",
  });
  return backend("nil", list, {
    description: "A sandboxed OS process (no hardware isolation)",
    evidence: "snp-sim",
  });
}

function kvmBackend(judge: Judge): BackendInfo {
  const list = new CheckList();
  judge.kvmChecks(list, "kvm");
  list.add("kvm.qemu", judge.qemu());
  return backend("kvm", list, {
    description: "A QEMU/KVM micro-VM (hardware virtualisation, no memory encryption)",
    evidence: "snp-sim",
  });
}

function sevBackend(judge: Judge): BackendInfo {
  const { facts, sudo } = judge;
  const load = remedy(
    [
      `${sudo}modprobe -r kvm_amd`,
      `${sudo}modprobe kvm_amd sev=1 sev_es=1 sev_snp=1`,
    ],
    'To keep it across reboots: echo "options kvm_amd sev=1 sev_es=1 sev_snp=1" | ' +
      `${sudo}tee /etc/modprobe.d/kvm-amd-snp.conf. If the parameter stays off, the ` +
      "firmware has not enabled SEV-SNP: see dmesg | grep -i -e sev -e snp",
  );
  const bios = judge.hasFlag("hypervisor")
    ? remedy(
      [],
      "This is a virtual machine: sev keeps need a bare-metal AMD EPYC host; run enarx there",
    )
    : remedy(
      [],
      "Enable SMEE (Secure Memory Encryption), SEV-SNP, SNP memory coverage and the IOMMU in " +
        "the firmware setup, then boot a kernel with SNP host support",
    );
  const list = new CheckList();
  list.add("sev.cpu.amd", {
    title: "CPU is an AMD EPYC (Milan or later)",
    pass: facts.cpu.vendor === "AuthenticAMD",
    detail: `${facts.cpu.vendor ?? "Unknown vendor"}: ${facts.cpu.modelName ?? "unknown model"}`,
    remedy: remedy([], "SEV-SNP needs an AMD EPYC 7003 (Milan) or later processor"),
  });
  for (const flag of ["sev", "sev_es", "sev_snp"]) {
    list.add(`sev.cpu.${flag.replace("_", "-")}`, {
      title: `CPU flag "${flag}" in /proc/cpuinfo`,
      pass: judge.hasFlag(flag),
      detail: judge.hasFlag(flag) ? "Present" : "Absent",
      remedy: bios,
      needs: ["sev.cpu.amd"],
    });
  }
  list.add("sev.kernel", judge.kernel(6, 11, "SEV-SNP host support"));
  judge.kvmChecks(list, "sev.kvm");
  list.add("sev.kvm-amd.loaded", {
    title: "kvm_amd module is loaded",
    pass: facts.modules.includes("kvm_amd"),
    detail: facts.modules.includes("kvm_amd") ? "Loaded" : "Not loaded",
    remedy: remedy([`${sudo}modprobe kvm_amd sev=1 sev_es=1 sev_snp=1`]),
    needs: ["sev.cpu.sev-snp"],
  });
  for (const p of ["sev", "sev_es", "sev_snp"]) {
    list.add(
      `sev.kvm-amd.${p.replace("_", "-")}`,
      judge.parameter(`kvm_amd/${p}`, load, ["sev.kvm-amd.loaded"]),
    );
  }
  list.add(
    "sev.kvm.snp-vm-type",
    judge.vmType(KVM_X86_SNP_VM, "SEV-SNP", load, ["sev.kvm.device", "sev.kvm-amd.sev-snp"]),
  );
  list.add("sev.psp.device", {
    ...judge.device(
      SEV_DEVICE,
      `${SEV_DEVICE} (AMD secure processor) opens read-write`,
      remedy([`${sudo}modprobe ccp`], "The ccp driver provides /dev/sev once SEV is enabled"),
    ),
    needs: ["sev.cpu.sev-snp"],
  });
  const sev = facts.sev;
  list.add("sev.psp.platform-status", {
    title: "SEV firmware answers PLATFORM_STATUS",
    pass: sev?.platformStatus != null,
    detail: sev?.platformStatus
      ? `API ${sev.platformStatus.apiMajor}.${sev.platformStatus.apiMinor} build ` +
        `${sev.platformStatus.build}, state ${
          ["UNINIT", "INIT", "WORKING"][sev.platformStatus.state] ?? sev.platformStatus.state
        }, ${sev.platformStatus.guestCount} guests`
      : `Failed: ${sev?.platformStatusError ?? "not run"}`,
    errno: sev?.platformStatusError?.split(" ")[0] ?? null,
    remedy: remedy(
      ["dmesg | grep -i -e ccp -e sev"],
      "The kernel log says why the firmware failed",
    ),
    needs: ["sev.psp.device"],
  });
  list.add("sev.psp.snp-status", {
    title: "SEV-SNP firmware answers SNP_PLATFORM_STATUS",
    pass: sev?.snpStatus != null,
    detail: sev?.snpStatus
      ? `API ${sev.snpStatus.apiMajor}.${sev.snpStatus.apiMinor} build ${sev.snpStatus.buildId}, ` +
        `state ${sev.snpStatus.state === 1 ? "INIT" : "UNINIT"}, reported TCB 0x${
          sev.snpStatus.reportedTcb.toString(16).padStart(16, "0")
        }`
      : `Failed: ${sev?.snpStatusError ?? "not run"}`,
    errno: sev?.snpStatusError?.split(" ")[0] ?? null,
    remedy: sev?.snpStatusError?.startsWith("EINVAL") || sev?.snpStatusError?.startsWith("ENOTTY")
      ? remedy(
        [],
        "This kernel's /dev/sev does not know SNP_PLATFORM_STATUS; boot a kernel >= 6.11",
      )
      : load,
    needs: ["sev.psp.device"],
  });
  list.add("sev.qemu", judge.qemu());
  return backend("sev", list, {
    description: "A QEMU/KVM micro-VM with AMD SEV-SNP memory encryption",
    evidence: "sev-snp",
  });
}

function tdxBackend(judge: Judge): BackendInfo {
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
    judge.vmType(KVM_X86_TDX_VM, "TDX", load, ["tdx.kvm.device", "tdx.kvm-intel.tdx"]),
  );
  list.add("tdx.qemu", judge.qemu());
  return backend("tdx", list, {
    description: "A QEMU/KVM trust domain with Intel TDX",
    evidence: "tdx",
  });
}

function sgxBackend(judge: Judge): BackendInfo {
  const { facts, sudo } = judge;
  const list = new CheckList();
  list.add("sgx.cpu.sgx", {
    title: 'CPU flag "sgx" in /proc/cpuinfo',
    pass: judge.hasFlag("sgx"),
    detail: judge.hasFlag("sgx") ? "Present" : "Absent",
    remedy: remedy(
      [],
      'Set SGX to "Enabled" (not "Software Controlled") in the firmware setup, with a ' +
        "non-zero PRMRR/EPC size; SGX needs an Intel CPU that has it",
    ),
  });
  list.add("sgx.cpu.sgx-lc", {
    title: 'CPU flag "sgx_lc" (Flexible Launch Control) in /proc/cpuinfo',
    pass: judge.hasFlag("sgx_lc"),
    detail: judge.hasFlag("sgx_lc") ? "Present" : "Absent",
    remedy: remedy(
      [],
      "The in-kernel SGX driver needs Flexible Launch Control: enable it in the firmware " +
        'setup (often "SGX Launch Control Policy: Unlocked"); CPUs without it cannot run keeps',
    ),
    needs: ["sgx.cpu.sgx"],
  });
  list.add("sgx.kernel", judge.kernel(5, 11, "in-kernel SGX driver"));
  list.add("sgx.enclave-device", {
    ...judge.device(
      SGX_ENCLAVE_DEVICE,
      `${SGX_ENCLAVE_DEVICE} opens read-write`,
      remedy([], "Boot a kernel built with CONFIG_X86_SGX=y (Linux >= 5.11)"),
    ),
    needs: ["sgx.cpu.sgx-lc"],
  });
  list.add("sgx.provision-device", {
    ...judge.device(
      SGX_PROVISION_DEVICE,
      `${SGX_PROVISION_DEVICE} opens read-write (needed for DCAP quotes)`,
      remedy([], "Boot a kernel built with CONFIG_X86_SGX=y (Linux >= 5.11)"),
    ),
    needs: ["sgx.cpu.sgx-lc"],
  });
  list.add("sgx.aesm", {
    title: `Intel AESM service socket ${AESM_SOCKET} exists`,
    pass: facts.aesmSocket,
    detail: facts.aesmSocket ? "Present" : "Absent",
    remedy: remedy(
      [
        `${sudo}apt-get install sgx-aesm-service libsgx-aesm-ecdsa-plugin`,
        `${sudo}systemctl enable --now aesmd`,
      ],
      "The packages come from Intel's SGX software repository for your distribution",
    ),
    required: false,
    needs: ["sgx.enclave-device"],
  });
  return backend("sgx", list, {
    description: "An Intel SGX enclave",
    evidence: "sgx",
  });
}

function backend(
  name: BackendName,
  list: CheckList,
  options: { description: string; evidence: BackendInfo["evidence"] },
): BackendInfo {
  return {
    name,
    description: options.description,
    evidence: options.evidence,
    usable: list.usable,
    launchable: false,
    checks: list.checks,
  };
}

// ---------------------------------------------------------------------------
// Guest interfaces

function guestInterfaces(judge: Judge): GuestInterfaceInfo[] {
  const { facts, sudo } = judge;
  const inVm = judge.hasFlag("hypervisor");
  const snpGuest = inVm && judge.hasFlag("sev_snp");
  const tdxGuest = judge.hasFlag("tdx_guest");
  const notSnp = remedy([], "Run enarx inside an SEV-SNP guest (e.g. an sev keep)");
  const notTdx = remedy([], "Run enarx inside a TDX guest");

  const sevGuest = new CheckList()
    .add("guest.sev-guest.cpu", {
      title: "This machine is an SEV-SNP guest (CPU flags sev_snp and hypervisor)",
      pass: snpGuest,
      detail: snpGuest ? "SEV-SNP guest" : inVm ? "A VM, but not SEV-SNP" : "Not a VM",
      remedy: notSnp,
    })
    .add("guest.sev-guest.device", {
      ...judge.device(
        SEV_GUEST_DEVICE,
        `${SEV_GUEST_DEVICE} opens read-write`,
        remedy([`${sudo}modprobe sev-guest`]),
      ),
      needs: ["guest.sev-guest.cpu"],
    });

  const tdxList = new CheckList()
    .add("guest.tdx-guest.cpu", {
      title: 'This machine is a TDX guest (CPU flag "tdx_guest")',
      pass: tdxGuest,
      detail: tdxGuest ? "TDX guest" : "Not a TDX guest",
      remedy: notTdx,
    })
    .add("guest.tdx-guest.device", {
      ...judge.device(
        TDX_GUEST_DEVICE,
        `${TDX_GUEST_DEVICE} opens read-write`,
        remedy([`${sudo}modprobe tdx-guest`]),
      ),
      needs: ["guest.tdx-guest.cpu"],
    });

  const tsm = new CheckList()
    .add("guest.tsm.cpu", {
      title: "This machine is an SEV-SNP or TDX guest",
      pass: snpGuest || tdxGuest,
      detail: snpGuest ? "SEV-SNP guest" : tdxGuest ? "TDX guest" : "Not a TEE guest",
      remedy: remedy([], "Run enarx inside an SEV-SNP or TDX guest"),
    })
    .add("guest.tsm.kernel", {
      ...judge.kernel(6, 7, "configfs-tsm reports"),
      needs: ["guest.tsm.cpu"],
    })
    .add("guest.tsm.configfs", {
      title: `configfs is mounted at ${CONFIGFS_DIR}`,
      pass: facts.configfs.mounted,
      detail: facts.configfs.mounted ? "Mounted" : "Not mounted",
      remedy: remedy([`${sudo}mount -t configfs none ${CONFIGFS_DIR}`]),
      needs: ["guest.tsm.cpu"],
    })
    .add("guest.tsm.report", {
      title: `${TSM_REPORT_DIR} exists`,
      pass: facts.configfs.tsmReport,
      detail: facts.configfs.tsmReport ? "Present" : "Absent",
      remedy: remedy(
        [`${sudo}modprobe ${tdxGuest ? "tdx-guest" : "sev-guest"}`],
        "Needs a kernel built with CONFIG_TSM_REPORTS",
      ),
      needs: ["guest.tsm.configfs", "guest.tsm.kernel"],
    });

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
      usable: tdxList.usable,
      checks: tdxList.checks,
    },
  ];
}

// ---------------------------------------------------------------------------
// Entry points

/**
 * Judges `facts` (from {@link gatherHostFacts}, or made up in a test).
 * `launchable` names the backends enarx can launch (default
 * {@link LAUNCHABLE_BACKENDS}).
 */
export function evaluatePlatform(
  facts: HostFacts,
  options: { launchable?: readonly BackendName[] } = {},
): PlatformInfo {
  const judge = new Judge(facts);
  const launchable = new Set(options.launchable ?? LAUNCHABLE_BACKENDS);
  const backends = [
    sevBackend(judge),
    tdxBackend(judge),
    sgxBackend(judge),
    kvmBackend(judge),
    nilBackend(),
  ].map((b) => ({ ...b, launchable: b.usable && launchable.has(b.name) }));
  const interfaces = guestInterfaces(judge);
  const info: PlatformInfo = {
    schema: "enarx-platform-info",
    version: PLATFORM_INFO_VERSION,
    enarx: ENARX_VERSION,
    system: {
      kernel: facts.kernelRelease,
      arch: facts.arch,
      cpuVendor: facts.cpu.vendor,
      cpuModel: facts.cpu.modelName,
      cpuFamily: facts.cpu.family,
      cpuModelNumber: facts.cpu.model,
      virtualMachine: judge.hasFlag("hypervisor"),
      user: facts.user.name,
    },
    backends,
    best: { usable: "nil", launchable: "nil" },
    guest: {
      interfaces,
      preferred: interfaces.find((i) => i.usable)?.name ?? null,
    },
  };
  info.best = {
    usable: bestBackend(info, { launchable: false }),
    launchable: bestBackend(info, { launchable: true }),
  };
  return info;
}

/**
 * Probes this machine and judges it: what `enarx platform info` shows. By
 * default the launchable backends are {@link LAUNCHABLE_BACKENDS}, plus
 * `kvm` where QEMU and a keep kernel are found (keepmgr launches kvm keeps).
 */
export function probePlatform(
  options: { launchable?: readonly BackendName[] } = {},
): PlatformInfo {
  const launchable = options.launchable ??
    [...LAUNCHABLE_BACKENDS, ...(kvmLaunchable() ? ["kvm" as const] : [])];
  return evaluatePlatform(gatherHostFacts(), { launchable });
}

/**
 * The strongest backend for `--backend auto`: sev > tdx > sgx > kvm > nil.
 * With `launchable: true` (the default) only backends enarx can launch
 * today count; nil is always both usable and launchable.
 */
export function bestBackend(
  info: PlatformInfo,
  options: { launchable?: boolean } = {},
): BackendName {
  const wantLaunchable = options.launchable ?? true;
  for (const name of BACKENDS) {
    const b = info.backends.find((x) => x.name === name);
    if (b !== undefined && (wantLaunchable ? b.launchable : b.usable)) return name;
  }
  return "nil";
}
