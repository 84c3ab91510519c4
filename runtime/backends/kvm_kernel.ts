/**
 * The kernel a kvm keep boots: `ENARX_KVM_KERNEL`, else the newest one in
 * the cache that tools/test_deps.sh fills. Separate from the image builder
 * (kvm_image.ts) so that asking whether kvm keeps can launch here loads
 * nothing of it.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** A kernel and the folder of its modules. */
export interface KvmKernel {
  /** The bzImage (vmlinuz). */
  kernel: string;
  /** Its modules, `lib/modules/<release>`. */
  modules: string;
}

/** True when `path` is a regular file. */
export function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** True when `path` is a directory. */
export function isDir(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/**
 * The kernel cache that tools/test_deps.sh fills (`apt-get download` +
 * `dpkg-deb -x`): `kvm-kernel/root` in the bootstrap cache (`$ENARX_CACHE`,
 * else `$XDG_CACHE_HOME/enarx`, else `.cache` in the checkout).
 */
export function defaultKernelCache(): string {
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  const cache = Deno.env.get("ENARX_CACHE") ??
    (xdg !== undefined && xdg !== "" ? `${xdg}/enarx` : `${ROOT}.cache`);
  return `${cache}/kvm-kernel/root`;
}

/**
 * Finds the keep kernel: `ENARX_KVM_KERNEL` (a vmlinuz; its modules at
 * `ENARX_KVM_MODULES`, else `../lib/modules/<release>` beside its `boot/`),
 * else the newest vmlinuz in the test-deps cache. Throws a clear error
 * naming what to install when there is none.
 */
export function findKvmKernel(): KvmKernel {
  const fromEnv = Deno.env.get("ENARX_KVM_KERNEL");
  if (fromEnv !== undefined && fromEnv !== "") {
    if (!isFile(fromEnv)) {
      throw new EnarxError(
        "kvm-kernel-missing",
        `ENARX_KVM_KERNEL is "${fromEnv}", which is not a file; point it at a vmlinuz`,
        { exit: "unavailable" },
      );
    }
    const release = fromEnv.split("/").pop()!.replace(/^vmlinuz-/, "");
    const modules = Deno.env.get("ENARX_KVM_MODULES") ??
      `${fromEnv.replace(/\/[^/]*$/, "")}/../lib/modules/${release}`;
    return { kernel: fromEnv, modules: checkModules(modules) };
  }
  const root = defaultKernelCache();
  let names: string[] = [];
  try {
    names = [...Deno.readDirSync(`${root}/boot`)].map((e) => e.name)
      .filter((n) => n.startsWith("vmlinuz-")).sort();
  } catch { /* no cache */ }
  const name = names.pop();
  if (name === undefined) {
    throw new EnarxError(
      "kvm-kernel-missing",
      `No kernel for kvm keeps in "${root}"; run tools/test.sh (it fetches Debian's ` +
        `linux-image-cloud-amd64 with apt-get download) or set ENARX_KVM_KERNEL to a vmlinuz`,
      { exit: "unavailable" },
    );
  }
  const release = name.slice("vmlinuz-".length);
  return {
    kernel: `${root}/boot/${name}`,
    modules: checkModules(`${root}/lib/modules/${release}`),
  };
}

function checkModules(dir: string): string {
  if (!isDir(dir)) {
    throw new EnarxError(
      "kvm-kernel-missing",
      `The kernel's modules folder "${dir}" is missing; set ENARX_KVM_MODULES to its lib/modules/<release>`,
      { exit: "unavailable" },
    );
  }
  return dir;
}
