/**
 * The QEMU command line of a `sev` keep, as pure functions of typed
 * options: a q35 machine whose confidential-guest-support is an
 * `sev-snp-guest` object (QEMU >= 9.1), a memfd memory backend (SNP guest
 * memory must be a shareable memfd: guest_memfd pairs with it), the OVMF of
 * edk2's AmdSev platform (tools/build_ovmf.sh) and the keep image's kernel,
 * initrd and command line, which QEMU hashes into the launch measurement
 * (`kernel-hashes=on`) and the firmware checks before booting them. Frames
 * travel on the second serial port and wasmldr's HTTPS through a user-net
 * forward, and the workload's services through forwards added over QMP, as
 * for kvm keeps (kvm_vm.ts, vm/user_net.ts).
 *
 * Without `snp` the same firmware, kernel, initrd and command line boot on
 * q35 with neither the SNP object nor the memfd (TCG here): the test of the
 * firmware path on hosts without the hardware. There the hashes table that
 * QEMU would have written must be loaded by a `loader` device (`hashes`),
 * since the AmdSev firmware boots no kernel without one; and the kernel,
 * initrd and command line go as the firmware's named fw_cfg blobs
 * (`etc/boot/*`), because without SEV QEMU rewrites the kernel's setup
 * header in the `-kernel` view, so that its hash would not be the file's.
 *
 * Also here: the minimum QEMU version, reading it from `--version`, the C-bit
 * position from CPUID Fn8000_001F, and what a failed SNP launch means.
 *
 * @module
 */
import { baseDiskArgs } from "../vm/base_disk.ts";
import { vmNetworkArgs } from "../vm/user_net.ts";

/** The first QEMU release with `sev-snp-guest` (upstream SNP support). */
export const SEV_MIN_QEMU: readonly [number, number] = [9, 1];

/**
 * The default guest policy: bit 17 SMT allowed, bit 16 reserved (must be
 * one); ABI 0.0; no debug, no migration agent, no single socket (SEV-SNP
 * ABI, "Guest Policy").
 */
export const SNP_DEFAULT_POLICY = 0x30000;

/** The C-bit position and the physical address bits lost to encryption. */
export interface SnpAddressBits {
  /** CPUID Fn8000_001F EBX[5:0]: the C-bit's position in a page table entry. */
  cbitpos: number;
  /** CPUID Fn8000_001F EBX[11:6]: physical address bits lost when memory encryption is on. */
  reducedPhysBits: number;
}

/** Reads the C-bit position and reduced physical bits from CPUID Fn8000_001F's EBX. */
export function snpAddressBits(ebx: number): SnpAddressBits {
  return { cbitpos: ebx & 0x3f, reducedPhysBits: (ebx >>> 6) & 0x3f };
}

/** The SEV-SNP part of a keep's command line. */
export interface SnpOptions extends SnpAddressBits {
  /** The guest policy (default {@link SNP_DEFAULT_POLICY}). */
  policy?: number;
}

/** A hashes page that a `loader` device writes into guest memory (no-SNP boots). */
export interface HashesLoad {
  /** The file holding the page. */
  file: string;
  /** Its guest-physical address. */
  gpa: number;
  /** A file holding the command line and its terminating NUL (the `etc/boot/cmdline` blob). */
  cmdlineFile: string;
}

/** Options of {@link sevQemuArgs}. */
export interface SevQemuOptions {
  /** The AmdSev OVMF image. */
  ovmf: string;
  /** The keep kernel. */
  kernel: string;
  /** The keep initrd. */
  initrd: string;
  /** The kernel command line (with the base disk's `enarx.verity=`, runtime/backends/kvm_image.ts). */
  append: string;
  /** The read-only base disk that every VM keep shares (runtime/backends/vm/base_disk.ts). */
  baseDisk: string;
  /** Guest memory in MiB. */
  memoryMiB: number;
  /** Number of vCPUs. */
  vcpus: number;
  /** QEMU's CPU model, e.g. `EPYC-Milan`. */
  vcpuType: string;
  /** The SNP guest; undefined boots the same image without SNP (tests). */
  snp?: SnpOptions;
  /** Accelerator: `kvm` (SNP needs it) or `tcg`. */
  accel: "kvm" | "tcg";
  /** File that receives the guest console (first serial port). */
  consoleLog: string;
  /** Unix socket of the frames port (second serial port), QEMU the server. */
  framesSocket: string;
  /** Unix socket of QEMU's QMP (keepldr adds the services' forwards through it). */
  qmpSocket: string;
  /** Host loopback port forwarded to {@link guestPort}. */
  hostPort: number;
  /** The port wasmldr listens on in the guest. */
  guestPort: number;
  /** A hashes page to load (boots without SNP only). */
  hashes?: HashesLoad;
}

/** The command-line arguments of QEMU for a `sev` keep (no program name). */
export function sevQemuArgs(options: SevQemuOptions): string[] {
  const machine = options.snp === undefined
    ? ["-machine", "q35"]
    : ["-machine", "q35,confidential-guest-support=sev0,memory-backend=ram1"];
  return [
    ...machine,
    "-accel",
    options.accel,
    "-cpu",
    options.vcpuType,
    "-smp",
    String(options.vcpus),
    "-m",
    `${options.memoryMiB}M`,
    ...snpObjects(options),
    "-bios",
    options.ovmf,
    ...bootBlobs(options),
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-no-reboot",
    "-serial",
    `file:${options.consoleLog}`,
    "-chardev",
    `socket,id=frames,path=${options.framesSocket},server=on,wait=off`,
    "-serial",
    "chardev:frames",
    ...vmNetworkArgs(options, options.qmpSocket),
    ...baseDiskArgs(options.baseDisk),
  ];
}

/** The kernel, initrd and command line: QEMU's direct boot, or named blobs beside a hashes page. */
function bootBlobs(options: SevQemuOptions): string[] {
  const { hashes } = options;
  if (hashes === undefined) {
    return ["-kernel", options.kernel, "-initrd", options.initrd, "-append", options.append];
  }
  return [
    "-fw_cfg",
    `name=etc/boot/kernel,file=${options.kernel}`,
    "-fw_cfg",
    `name=etc/boot/initrd,file=${options.initrd}`,
    "-fw_cfg",
    `name=etc/boot/cmdline,file=${hashes.cmdlineFile}`,
  ];
}

/** The memfd memory backend and the sev-snp-guest object, or the no-SNP hashes loader. */
function snpObjects(options: SevQemuOptions): string[] {
  const { snp, hashes } = options;
  if (snp === undefined) {
    return hashes === undefined
      ? []
      : ["-device", `loader,file=${hashes.file},addr=0x${hashes.gpa.toString(16)},force-raw=on`];
  }
  if (hashes !== undefined) {
    throw new RangeError(
      "An SNP guest's hashes table is QEMU's (kernel-hashes=on), not a loader's",
    );
  }
  const policy = snp.policy ?? SNP_DEFAULT_POLICY;
  return [
    "-object",
    `memory-backend-memfd,id=ram1,size=${options.memoryMiB}M,share=true,prealloc=false`,
    "-object",
    `sev-snp-guest,id=sev0,cbitpos=${snp.cbitpos},reduced-phys-bits=${snp.reducedPhysBits},` +
    `policy=0x${policy.toString(16)},kernel-hashes=on`,
  ];
}

/** Reads `major.minor.micro` from `qemu-system-x86_64 --version`; undefined when absent. */
export function parseQemuVersion(text: string): [number, number, number] | undefined {
  const match = /QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?/.exec(text);
  if (match === null) return undefined;
  return [Number(match[1]), Number(match[2]), Number(match[3] ?? 0)];
}

/** Whether `version` is at least {@link SEV_MIN_QEMU}. */
export function qemuSupportsSnp(version: readonly number[]): boolean {
  const [major, minor] = version;
  return major > SEV_MIN_QEMU[0] || (major === SEV_MIN_QEMU[0] && minor >= SEV_MIN_QEMU[1]);
}

/** What to check, for each kind of message a QEMU that failed to start an SNP guest prints. */
const SNP_FAILURES: readonly [RegExp, string][] = [
  [
    /invalid object type: sev-snp-guest|Parameter 'qom-type' does not accept value 'sev-snp-guest'/i,
    `this QEMU has no SEV-SNP support: use QEMU >= ${SEV_MIN_QEMU.join(".")}`,
  ],
  [
    /sev.*(not supported|disabled)|KVM_SEV_INIT|KVM_SEV_SNP|SNP_LAUNCH|sev_snp|failed to initialize sev/i,
    "KVM refused the SNP guest: load kvm_amd with sev_snp=1 (cat " +
    "/sys/module/kvm_amd/parameters/sev_snp must say Y), on a host whose firmware enables SEV-SNP",
  ],
  [
    /cbitpos|reduced.phys.bits/i,
    "the C-bit position or reduced physical bits differ from the host's: they come from CPUID " +
    "Fn8000_001F (/dev/cpu/0/cpuid, the cpuid module)",
  ],
  [
    /\/dev\/sev/i,
    "/dev/sev (the AMD secure processor) is missing or not readable: modprobe ccp, and see dmesg",
  ],
  [
    /kvm.*(No such file|Permission denied|not available)|Could not access KVM|failed to initialize kvm/i,
    "/dev/kvm is missing or not usable by this user: load kvm_amd and join the kvm group",
  ],
  [
    /memory-backend-memfd|guest_memfd|KVM_CREATE_GUEST_MEMFD|private memory/i,
    "the kernel lacks guest_memfd (KVM_CAP_GUEST_MEMFD): boot a kernel >= 6.11 with SNP host support",
  ],
];

/**
 * The first error line of a failed QEMU's stderr and what to check for it
 * (one line each), for the error of a keep that could not start.
 */
export function explainSnpFailure(stderr: string): { line: string; checks: string[] } {
  const lines = stderr.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const line = lines.find((l) => /error|fail|invalid|cannot|not /i.test(l)) ?? lines[0] ??
    "QEMU exited without a message";
  const checks = SNP_FAILURES.filter(([pattern]) => pattern.test(stderr)).map(([, check]) => check);
  if (checks.length === 0) {
    checks.push(
      'see "enarx platform info" for what this host lacks for sev keeps (the CPU, firmware, ' +
        "kvm_amd sev_snp=1, /dev/sev, QEMU, the AmdSev OVMF)",
    );
  }
  return { line, checks };
}
