/**
 * Gathers what this machine has for running keeps: CPU flags, kernel, KVM,
 * the AMD secure processor, SGX and TDX devices, configfs-tsm, QEMU, and the
 * user's access to each device. Only facts, with errno names for failures;
 * runtime/platform/info.ts turns them into checks and remedies. Nothing here
 * needs root, and nothing is changed on the machine (a KVM VM is created and
 * destroyed to prove that KVM works).
 *
 * @module
 */
import { FileDescriptor, O_RDWR, SyscallError } from "../../ffi/libc.ts";
import { KVM_CAP_VM_TYPES, KVM_DEVICE, KVM_X86_DEFAULT_VM, KvmSystem } from "../../ffi/kvm.ts";
import {
  SEV_DEVICE,
  SEV_RET_NAMES,
  type SevPlatformStatus,
  sevPlatformStatus,
  type SnpPlatformStatus,
  snpPlatformStatus,
} from "../../ffi/psp_sev.ts";
import { SEV_GUEST_DEVICE } from "../../ffi/sev_guest.ts";
import { TDX_GUEST_DEVICE } from "../../ffi/tdx_guest.ts";
import { SGX_ENCLAVE_DEVICE, SGX_PROVISION_DEVICE } from "../../ffi/sgx.ts";
import { pathExists } from "../fs.ts";
import { sevPieces } from "../backends/sev/sev_launch.ts";

/** The configfs-tsm report directory (Linux >= 6.7). */
export const TSM_REPORT_DIR = "/sys/kernel/config/tsm/report";
/** Where configfs is mounted. */
export const CONFIGFS_DIR = "/sys/kernel/config";
/** Intel's AESM service socket (SGX quoting). */
export const AESM_SOCKET = "/var/run/aesmd/aesm.socket";
/** The QEMU binary that VM keeps use. */
export const QEMU_BINARY = "qemu-system-x86_64";

/** Device nodes probed, in display order. */
export const PROBED_DEVICES = [
  KVM_DEVICE,
  SEV_DEVICE,
  SGX_ENCLAVE_DEVICE,
  SGX_PROVISION_DEVICE,
  SEV_GUEST_DEVICE,
  TDX_GUEST_DEVICE,
] as const;

/** Module parameters probed, as `module/parameter`. */
export const PROBED_PARAMETERS = [
  "kvm_amd/sev",
  "kvm_amd/sev_es",
  "kvm_amd/sev_snp",
  "kvm_intel/tdx",
  "kvm_intel/sgx",
] as const;

/** Kernel modules whose presence matters. */
export const PROBED_MODULES = [
  "kvm",
  "kvm_amd",
  "kvm_intel",
  "kvm_pvm",
  "ccp",
  "sev_guest",
  "tdx_guest",
  "tsm",
] as const;

/** What opening a device node read-write did. */
export interface DeviceFacts {
  /** Whether the node exists. */
  present: boolean;
  /** `"ok"`, or the errno name of the failed open (e.g. `EACCES`, `ENOENT`). */
  open: string;
  /** The node's group name, when it exists. */
  group: string | null;
}

/** What the KVM probe found. */
export interface KvmFacts {
  /** KVM_GET_API_VERSION, or null when /dev/kvm could not be opened. */
  apiVersion: number | null;
  /** KVM_CHECK_EXTENSION(KVM_CAP_VM_TYPES): a bit mask; 0 on kernels before 6.8. */
  vmTypes: number | null;
  /** KVM_CREATE_VM of a default VM: `"ok"` or the errno name. */
  createVm: string | null;
}

/** What the AMD secure processor answered through /dev/sev. */
export interface SevFacts {
  /** SEV PLATFORM_STATUS, or null. */
  platformStatus: SevPlatformStatus | null;
  /** Why PLATFORM_STATUS failed: errno name, maybe with the firmware status. */
  platformStatusError: string | null;
  /** SNP_PLATFORM_STATUS (kernels with SNP host support), or null. */
  snpStatus: SnpPlatformStatus | null;
  /** Why SNP_PLATFORM_STATUS failed. */
  snpStatusError: string | null;
}

/** One piece a keep's launch needs (sev: QEMU version, OVMF, kernel...), found or not. */
export interface LaunchPiece {
  /** What it is, e.g. `QEMU >= 9.1`. */
  name: string;
  /** Whether this host has it. */
  ok: boolean;
  /** What was found. */
  detail: string;
  /** What to do when it is missing. */
  fix: string;
}

/** Everything runtime/platform/info.ts judges. Plain data, so tests can describe any host. */
export interface HostFacts {
  /** `uname -r`. */
  kernelRelease: string;
  /** `uname -m`-style architecture, e.g. `x86_64`. */
  arch: string;
  /** From /proc/cpuinfo (first processor). */
  cpu: {
    vendor: string | null;
    modelName: string | null;
    family: number | null;
    model: number | null;
    flags: string[];
  };
  /** Which of {@link PROBED_MODULES} are loaded (present in /sys/module). */
  modules: string[];
  /** Values of {@link PROBED_PARAMETERS}; null when the parameter does not exist. */
  parameters: Record<string, string | null>;
  /** Facts about {@link PROBED_DEVICES}, keyed by path. */
  devices: Record<string, DeviceFacts>;
  /** The KVM probe. */
  kvm: KvmFacts;
  /** The /dev/sev probe, or null when the device could not be opened. */
  sev: SevFacts | null;
  /** configfs and its tsm report directory. */
  configfs: { mounted: boolean; tsmReport: boolean };
  /** Absolute paths of executables found on PATH (null when absent), keyed by name. */
  executables: Record<string, string | null>;
  /** Whether the AESM socket exists. */
  aesmSocket: boolean;
  /** Who runs enarx, for remedies that name the user. */
  user: { name: string; uid: number; groups: string[] };
  /**
   * The acceleration kvm keeps get: "kvm" only when `ENARX_KVM_ACCEL=kvm`
   * (what kvm_vm.ts passes to QEMU), else "tcg" (emulation). Undefined is "tcg".
   */
  kvmAccel?: "kvm" | "tcg";
  /**
   * What launching a sev keep needs beyond the TEE (QEMU's version, the
   * AmdSev OVMF, the keep kernel...: runtime/backends/sev/sev_launch.ts);
   * absent from facts that do not describe it.
   */
  sevLaunch?: LaunchPiece[];
}

function readText(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return null;
  }
}

function errorName(error: unknown): string {
  if (error instanceof SyscallError) {
    const fw = error.details.firmwareError;
    return fw ? `${error.code} (firmware ${SEV_RET_NAMES[fw] ?? fw})` : error.code;
  }
  return error instanceof Error ? error.message : String(error);
}

/** Parses the first processor of /proc/cpuinfo. */
export function parseCpuinfo(text: string): HostFacts["cpu"] {
  const first = text.split(/\n\s*\n/)[0] ?? "";
  const fields = new Map<string, string>();
  for (const line of first.split("\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) fields.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  const number = (key: string) => {
    const value = fields.get(key);
    return value === undefined || !/^\d+$/.test(value) ? null : Number(value);
  };
  return {
    vendor: fields.get("vendor_id") ?? null,
    modelName: fields.get("model name") ?? null,
    family: number("cpu family"),
    model: number("model"),
    flags: (fields.get("flags") ?? "").split(/\s+/).filter((f) => f !== ""),
  };
}

function groupNames(): Map<number, string> {
  const names = new Map<number, string>();
  for (const line of (readText("/etc/group") ?? "").split("\n")) {
    const [name, , gid] = line.split(":");
    if (name && gid !== undefined && /^\d+$/.test(gid)) names.set(Number(gid), name);
  }
  return names;
}

function currentUser(groups: Map<number, string>): HostFacts["user"] {
  const uid = Deno.uid() ?? -1;
  let name = Deno.env.get("USER") ?? Deno.env.get("LOGNAME") ?? null;
  if (name === null) {
    for (const line of (readText("/etc/passwd") ?? "").split("\n")) {
      const [user, , id] = line.split(":");
      if (Number(id) === uid) name = user;
    }
  }
  const status = readText("/proc/self/status") ?? "";
  const gids = /^Groups:\s*(.*)$/m.exec(status)?.[1].trim().split(/\s+/) ?? [];
  const gid = Deno.gid();
  const all = new Set([...(gid === null ? [] : [gid]), ...gids.filter((g) => g).map(Number)]);
  return {
    name: name ?? String(uid),
    uid,
    groups: [...all].map((g) => groups.get(g) ?? String(g)),
  };
}

function probeDevice(path: string, groups: Map<number, string>): DeviceFacts {
  let stat: Deno.FileInfo;
  try {
    stat = Deno.statSync(path);
  } catch {
    return { present: false, open: "ENOENT", group: null };
  }
  const group = stat.gid === null ? null : groups.get(stat.gid) ?? String(stat.gid);
  try {
    using _fd = FileDescriptor.open(path, O_RDWR);
    return { present: true, open: "ok", group };
  } catch (error) {
    return { present: true, open: errorName(error), group };
  }
}

function probeKvm(device: DeviceFacts): KvmFacts {
  const facts: KvmFacts = { apiVersion: null, vmTypes: null, createVm: null };
  if (device.open !== "ok") return facts;
  try {
    using kvm = KvmSystem.open();
    facts.apiVersion = kvm.apiVersion();
    facts.vmTypes = kvm.checkExtension(KVM_CAP_VM_TYPES);
    try {
      using _vm = kvm.createVm({ type: KVM_X86_DEFAULT_VM });
      facts.createVm = "ok";
    } catch (error) {
      facts.createVm = errorName(error);
    }
  } catch (error) {
    facts.createVm ??= errorName(error);
  }
  return facts;
}

function probeSev(device: DeviceFacts): SevFacts | null {
  if (device.open !== "ok") return null;
  const facts: SevFacts = {
    platformStatus: null,
    platformStatusError: null,
    snpStatus: null,
    snpStatusError: null,
  };
  try {
    using sev = FileDescriptor.open(SEV_DEVICE, O_RDWR);
    try {
      facts.platformStatus = sevPlatformStatus(sev);
    } catch (error) {
      facts.platformStatusError = errorName(error);
    }
    try {
      facts.snpStatus = snpPlatformStatus(sev);
    } catch (error) {
      facts.snpStatusError = errorName(error);
    }
  } catch (error) {
    facts.platformStatusError = errorName(error);
  }
  return facts;
}

function findExecutable(name: string): string | null {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    if (dir === "") continue;
    const path = `${dir}/${name}`;
    try {
      const stat = Deno.statSync(path);
      if (stat.isFile && stat.mode !== null && (stat.mode & 0o111) !== 0) return path;
    } catch {
      // not in this directory
    }
  }
  return null;
}

/** Probes this machine. Takes a few milliseconds; creates and destroys one KVM VM. */
export function gatherHostFacts(): HostFacts {
  const groups = groupNames();
  const devices: Record<string, DeviceFacts> = {};
  for (const path of PROBED_DEVICES) devices[path] = probeDevice(path, groups);
  const parameters: Record<string, string | null> = {};
  for (const name of PROBED_PARAMETERS) {
    parameters[name] = readText(`/sys/module/${name.replace("/", "/parameters/")}`)?.trim() ??
      null;
  }
  const mounts = readText("/proc/self/mounts") ?? "";
  return {
    kernelRelease: Deno.osRelease(),
    arch: Deno.build.arch,
    cpu: parseCpuinfo(readText("/proc/cpuinfo") ?? ""),
    modules: PROBED_MODULES.filter((m) => pathExists(`/sys/module/${m}`)),
    parameters,
    devices,
    kvm: probeKvm(devices[KVM_DEVICE]),
    sev: probeSev(devices[SEV_DEVICE]),
    configfs: {
      mounted: mounts.split("\n").some((line) => line.split(" ")[1] === CONFIGFS_DIR),
      tsmReport: pathExists(TSM_REPORT_DIR),
    },
    executables: { [QEMU_BINARY]: findExecutable(QEMU_BINARY) },
    aesmSocket: pathExists(AESM_SOCKET),
    user: currentUser(groups),
    kvmAccel: Deno.env.get("ENARX_KVM_ACCEL") === "kvm" ? "kvm" : "tcg",
    sevLaunch: sevPieces(),
  };
}
