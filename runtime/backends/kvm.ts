/**
 * The `kvm` backend: a keep is a QEMU micro-VM (no memory encryption; under
 * TCG emulation unless `ENARX_KVM_ACCEL=kvm` gives it KVM acceleration) that boots a kernel and a
 * small initrd, and runs wasmldr from a read-only base disk that every keep shares, verified with
 * dm-verity against the root hash on its measured command line (kvm_image.ts, kvm_vm.ts). keepmgr launches it (`enarx run --backend kvm`
 * through a local keepmgr).
 * Evidence is simulated SNP (snp-sim), signed by keepldr on the host over
 * the kvm keep's own measurement (kernel, initrd, command line:
 * runtime/measure/keep_measure.ts), what `enarx measure --backend kvm`
 * prints and what {@link kvmBackend}'s `measurement()` returns (computed
 * once per process).
 * This module is small on purpose: the VM and image code loads only when a
 * kvm keep is launched or measured.
 *
 * @module
 */
import type { Backend, KeepHandle, LaunchOptions } from "./backend.ts";
import { EnarxError } from "../errors.ts";
import { CheckList } from "../platform/check_list.ts";
import { findKvmKernel } from "./kvm_kernel.ts";

/** The QEMU program. */
export const QEMU = "qemu-system-x86_64";

/** Returns the path of qemu-system-x86_64 on PATH, or undefined. */
export function findQemu(): string | undefined {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":")) {
    try {
      const path = `${dir}/${QEMU}`;
      if (Deno.statSync(path).isFile) return path;
    } catch { /* not here */ }
  }
  return undefined;
}

/** True when kvm keeps can be launched here: QEMU and a keep kernel are present. */
export function kvmLaunchable(): boolean {
  if (findQemu() === undefined) return false;
  try {
    findKvmKernel();
    return true;
  } catch {
    return false;
  }
}

/**
 * What this module uses of kvm_vm.ts. Declared here rather than imported as
 * a type: wasmldr's measurement follows every import of the modules it
 * loads, and the VM and image builder are the host's, not wasmldr's.
 */
interface KvmVmModule {
  launchKvmKeep(
    options: { workDir: string; log?: (line: string) => void; detached?: boolean },
  ): Promise<
    Omit<KeepHandle, "what" | "measurement"> & {
      hostPort: number;
      measurement: () => Promise<Uint8Array>;
    }
  >;
}

/** Boots the keep's VM. */
async function launchVm(options: LaunchOptions): Promise<KeepHandle> {
  // A computed specifier: `deno run` would otherwise load the kvm image
  // builder's module graph with every backend (compile.sh --includes it).
  const { launchKvmKeep }: KvmVmModule = await import(
    new URL("./kvm_vm.ts", import.meta.url).href
  );
  try {
    const vm = await launchKvmKeep({
      workDir: options.workDir ?? Deno.makeTempDirSync(),
      log: options.log,
      detached: options.detached,
    });
    return { ...vm, what: "VM (QEMU)" };
  } catch (error) {
    throw new EnarxError(
      error instanceof EnarxError ? error.code : "keep-launch",
      `Cannot start the kvm keep: ${error instanceof Error ? error.message : error}`,
      { exit: "unavailable", cause: error },
    );
  }
}

/** What this module uses of runtime/measure/keep_measure.ts (see {@link KvmVmModule}). */
interface KeepMeasureModule {
  keepMeasurement(backend: string): Promise<{ digest: Uint8Array }>;
}

let cachedMeasurement: Promise<Uint8Array> | undefined;

/** The kvm keep's measurement: over the kernel, initrd and command line it boots (once per process). */
function kvmMeasurement(): Promise<Uint8Array> {
  cachedMeasurement ??= (async () => {
    const { keepMeasurement }: KeepMeasureModule = await import(
      new URL("../measure/keep_measure.ts", import.meta.url).href
    );
    return (await keepMeasurement("kvm")).digest;
  })();
  cachedMeasurement.catch(() => cachedMeasurement = undefined);
  return cachedMeasurement;
}

/** The kvm backend. */
export const kvmBackend: Backend = {
  name: "kvm",
  description:
    "A QEMU micro-VM, emulated (TCG) unless ENARX_KVM_ACCEL=kvm enables KVM acceleration; no memory encryption",
  evidence: "snp-sim",
  evidenceSource: "snp-sim",
  checks(judge) {
    const list = new CheckList();
    judge.kvmChecks(list, "kvm");
    list.add("kvm.qemu", judge.qemu());
    list.add("kvm.accel", judge.kvmAcceleration());
    return list.checks;
  },
  launchable: kvmLaunchable,
  launches: true,
  launch: launchVm,
  measurement: kvmMeasurement,
};
