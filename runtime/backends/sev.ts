/**
 * The `sev` backend: a QEMU/KVM VM with AMD SEV-SNP memory encryption.
 * enarx checks the host for it, launches its keeps (QEMU >= 9.1 with an
 * `sev-snp-guest` object, the AmdSev OVMF and the keep image:
 * sev_launch.ts, sev_qemu.ts) and verifies its evidence (real SNP reports
 * from the guest's /dev/sev-guest or configfs-tsm, to AMD's roots). Its
 * measurement is the SEV-SNP launch digest of what its launch gives QEMU
 * (`enarx measure --backend sev`), computed where the AmdSev OVMF is
 * present; elsewhere only the client's policy can name it. The launch code
 * loads only when a keep is launched or measured, or a host is probed.
 *
 * @module
 */
import type { Backend, KeepHandle, LaunchOptions } from "./backend.ts";
import type { LaunchPiece } from "../platform/host_facts.ts";
import { EnarxError } from "../errors.ts";
import type { Judge } from "../platform/judge.ts";
import { CheckList, type PlatformCheck, type Remedy, remedy } from "../platform/check_list.ts";

/** The remedy that reloads kvm_amd with SEV-SNP on. */
function loadKvmAmd(judge: Judge): Remedy {
  const { sudo } = judge;
  return remedy(
    [
      `${sudo}modprobe -r kvm_amd`,
      `${sudo}modprobe kvm_amd sev=1 sev_es=1 sev_snp=1`,
    ],
    'To keep it across reboots: echo "options kvm_amd sev=1 sev_es=1 sev_snp=1" | ' +
      `${sudo}tee /etc/modprobe.d/kvm-amd-snp.conf. If the parameter stays off, the ` +
      "firmware has not enabled SEV-SNP: see dmesg | grep -i -e sev -e snp",
  );
}

/** The CPU: an AMD EPYC with the SEV, SEV-ES and SEV-SNP flags. */
function cpuChecks(judge: Judge, list: CheckList): void {
  const { facts } = judge;
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
}

/** The kernel, KVM and kvm_amd with its SEV parameters and the SNP VM type. */
function kvmChecks(judge: Judge, list: CheckList): void {
  const { facts, sudo } = judge;
  const load = loadKvmAmd(judge);
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
    judge.vmType(judge.vmTypes.snp, "SEV-SNP", load, ["sev.kvm.device", "sev.kvm-amd.sev-snp"]),
  );
}

/** The AMD secure processor: /dev/sev and its firmware's answers. */
function pspChecks(judge: Judge, list: CheckList): void {
  const { facts, sudo } = judge;
  const device = judge.paths.sev;
  list.add("sev.psp.device", {
    ...judge.device(
      device,
      `${device} (AMD secure processor) opens read-write`,
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
      : loadKvmAmd(judge),
    needs: ["sev.psp.device"],
  });
}

/** What launching a sev keep needs beyond the TEE, when the facts describe it. */
function launchChecks(pieces: LaunchPiece[] | undefined, list: CheckList): void {
  for (const piece of pieces ?? []) {
    list.add(
      `sev.launch.${piece.name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "")}`,
      {
        title: `Launch needs ${piece.name}`,
        pass: piece.ok,
        detail: piece.detail,
        remedy: remedy([], piece.fix),
      },
    );
  }
}

/** What this module uses of sev_launch.ts's launch, loaded when a keep is launched. */
interface SevLaunchModule {
  launchSevKeep(options: { workDir: string; log?: (line: string) => void }): Promise<
    Omit<KeepHandle, "what"> & { hostPort: number }
  >;
}

/** What this module uses of sev_launch.ts's measurement, loaded when a keep is measured. */
interface SevMeasureModule {
  sevKeepMeasurement(): Promise<Uint8Array | undefined>;
}

let cachedMeasurement: Promise<Uint8Array | undefined> | undefined;

/**
 * The launch digest a sev keep launched by this release reports (once per
 * process); undefined without the AmdSev OVMF, when only a policy can name it.
 */
function sevMeasurement(): Promise<Uint8Array | undefined> {
  cachedMeasurement ??= (async () => {
    const { sevKeepMeasurement }: SevMeasureModule = await import(
      new URL("./sev/sev_launch.ts", import.meta.url).href
    );
    return await sevKeepMeasurement();
  })();
  cachedMeasurement.catch(() => cachedMeasurement = undefined);
  return cachedMeasurement;
}

/** Boots a sev keep's VM; every failure is an EnarxError (exit 69 where the host lacks a piece). */
async function launchVm(options: LaunchOptions): Promise<KeepHandle> {
  const { launchSevKeep }: SevLaunchModule = await import(
    new URL("./sev/sev_launch.ts", import.meta.url).href
  );
  try {
    const vm = await launchSevKeep({
      workDir: options.workDir ?? Deno.makeTempDirSync(),
      log: options.log,
    });
    return { ...vm, what: "VM (QEMU, SEV-SNP)" };
  } catch (error) {
    if (error instanceof EnarxError) throw error;
    throw new EnarxError(
      "keep-launch",
      `Cannot start the sev keep: ${error instanceof Error ? error.message : error}`,
      { exit: "unavailable", cause: error },
    );
  }
}

/** The sev backend. */
export const sevBackend: Backend = {
  name: "sev",
  description: "A QEMU/KVM micro-VM with AMD SEV-SNP memory encryption",
  evidence: "sev-snp",
  evidenceSource: "sev-guest",
  checks(judge: Judge): PlatformCheck[] {
    const list = new CheckList();
    cpuChecks(judge, list);
    kvmChecks(judge, list);
    pspChecks(judge, list);
    list.add("sev.qemu", judge.qemu());
    launchChecks(judge.facts.sevLaunch, list);
    return list.checks;
  },
  launchable: (facts) => (facts.sevLaunch ?? []).length > 0 && facts.sevLaunch!.every((p) => p.ok),
  launches: true,
  launch: launchVm,
  measurement: sevMeasurement,
};
