/**
 * The boot image of a kvm keep: a Linux kernel (Debian's cloud kernel, from
 * `ENARX_KVM_KERNEL` or the cache that tools/test_deps.sh fills) and an
 * initrd that holds busybox, Deno with its libraries, libwasmtime, wasmldr's
 * code (the same files the simulated measurement covers), the npm packages
 * it imports, the snp-sim state it signs evidence with and the virtio
 * network modules. The initrd is an uncompressed cpio (newc) archive written
 * here (no compression: building and unpacking it under emulation stay
 * fast), cached by a digest of its inputs' paths, sizes and times so that
 * later keeps reuse it.
 *
 * Not measured: the simulated measurement of a kvm keep covers wasmldr's
 * code only (runtime/keep/measurement.ts), exactly as for nil; the kernel,
 * the init script, Deno and the libraries in the initrd are not. Real SEV
 * would measure the whole launch image.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import { findKvmKernel, isDir, isFile, type KvmKernel } from "./kvm_kernel.ts";
import { wasmldrFiles } from "../keep/measurement.ts";
import { libwasmtimePath } from "../wasm/libwasmtime_path.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

export { defaultKernelCache, findKvmKernel, type KvmKernel } from "./kvm_kernel.ts";

/** Port wasmldr listens on inside the guest. */
export const GUEST_PORT = 8443;

/** The line the guest's init writes on the frames port once it is raw, before wasmldr starts. */
export const READY_MARKER = "ENARX-KVM-READY\n";

/** Kernel modules for virtio networking, in load order. */
export const NET_MODULES = [
  "virtio_ring",
  "virtio",
  "virtio_pci_modern_dev",
  "virtio_pci_legacy_dev",
  "virtio_pci",
  "failover",
  "net_failover",
  "virtio_net",
];

/** A built keep image. */
export interface KvmImage extends KvmKernel {
  /** The initrd (cpio newc). */
  initrd: string;
  /** True when it was built now rather than found in the cache. */
  built: boolean;
}

/** Finds a kernel module's .ko file under `modules/kernel`. */
function findModule(modules: string, name: string): string {
  const walk = (dir: string): string | undefined => {
    for (const entry of Deno.readDirSync(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) {
        const found = walk(path);
        if (found !== undefined) return found;
      } else if (entry.name === `${name}.ko`) return path;
    }
    return undefined;
  };
  const found = walk(`${modules}/kernel`);
  if (found === undefined) {
    throw new EnarxError(
      "kvm-kernel-missing",
      `The kernel module "${name}.ko" (uncompressed) is not under "${modules}"; ` +
        `use a kernel with virtio networking as modules (Debian's cloud kernel)`,
      { exit: "unavailable" },
    );
  }
  return found;
}

/** The shared libraries `ldd` lists for `binary`: [guest path, host path]. */
async function sharedLibraries(binary: string): Promise<[string, string][]> {
  const out = await new Deno.Command("ldd", { args: [binary], stdout: "piped", stderr: "null" })
    .output();
  const text = new TextDecoder().decode(out.stdout);
  const libs: [string, string][] = [];
  for (const line of text.split("\n")) {
    const arrow = line.match(/=>\s*(\/\S+)/);
    const direct = line.match(/^\s*(\/\S+)\s*\(/);
    const path = arrow?.[1] ?? direct?.[1];
    if (path !== undefined) libs.push([path, Deno.realPathSync(path)]);
  }
  return libs;
}

/** The init script of the guest. */
function initScript(): string {
  const bb = "/bin/busybox";
  const env = [
    "HOME=/tmp",
    "TMPDIR=/tmp",
    "DENO_DIR=/tmp/deno",
    "DENO_NO_UPDATE_CHECK=1",
    "ENARX_SNP_SIM_DIR=/sim",
    "ENARX_LIBWASMTIME=/app/libwasmtime.so",
    `ENARX_WASMLDR_LISTEN=0.0.0.0:${GUEST_PORT}`,
  ];
  return `#!${bb} sh
${bb} mount -t proc proc /proc
${bb} mount -t sysfs sys /sys
${bb} mount -t devtmpfs dev /dev
for m in ${NET_MODULES.join(" ")}; do ${bb} insmod /lib/modules/$m.ko; done
${bb} ip link set lo up
${bb} ip link set eth0 up
${bb} ip addr add 10.0.2.15/24 dev eth0
${bb} ip route add default via 10.0.2.2
exec 3<>/dev/ttyS1
${bb} stty -F /dev/ttyS1 raw -echo -ixon -ixoff -icrnl -opost cs8
echo "init: frames port ready at $(${bb} cut -d' ' -f1 /proc/uptime)"
${bb} printf '${READY_MARKER.replace("\n", "\\n")}' >&3
${bb} env ${env.join(" ")} /bin/deno run --quiet --no-prompt --allow-all \\
  --config /app/deno.json /app/kvm_entry.ts <&3 >&3
echo "init: wasmldr exited with $? at $(${bb} cut -d' ' -f1 /proc/uptime)"
${bb} sleep 1
${bb} poweroff -f
`;
}

/** The guest's entry point: `enarx wasmldr` without the rest of the CLI. */
const ENTRY = `import { command } from "./cli/wasmldr.ts";
let status = 70;
try {
  status = await command.run([]);
} catch (error) {
  console.error(\`enarx: \${error instanceof Error ? error.message : error}\`);
  status = typeof error?.exitStatus === "number" ? error.exitStatus : 70;
}
Deno.exit(status);
`;

/** One entry of the archive: a file from the host, inline bytes, or a directory. */
type Entry = { path: string; from?: string; data?: Uint8Array; mode: number };

/** Lists what goes into the initrd. */
async function imageEntries(kernel: KvmKernel, simDir: string): Promise<Entry[]> {
  const entries: Entry[] = [];
  const file = (path: string, from: string, mode = 0o644) => entries.push({ path, from, mode });
  const deno = Deno.execPath();
  const libwasmtime = await libwasmtimePath();
  for (const [path, from] of [["/bin/busybox", "/bin/busybox"], ["/bin/deno", deno]]) {
    if (!isFile(from)) {
      throw new EnarxError(
        "kvm-image",
        `Cannot build the kvm keep image: "${from}" is missing; install busybox-static`,
        { exit: "unavailable" },
      );
    }
    file(path, from, 0o755);
  }
  file("/app/libwasmtime.so", libwasmtime, 0o755);
  const libs = new Map<string, string>();
  for (const binary of [deno, libwasmtime]) {
    for (const [path, from] of await sharedLibraries(binary)) libs.set(path, from);
  }
  for (const [path, from] of libs) file(path, from, 0o755);
  for (const name of NET_MODULES) file(`/lib/modules/${name}.ko`, findModule(kernel.modules, name));
  for (const path of [...await wasmldrFiles(), "deno.json", "package.json", "package-lock.json"]) {
    file(`/app/${path}`, `${ROOT}${path}`);
  }
  const walk = (dir: string, guest: string) => {
    for (const entry of Deno.readDirSync(dir)) {
      const from = `${dir}/${entry.name}`;
      const stat = Deno.statSync(from);
      if (stat.isDirectory) walk(from, `${guest}/${entry.name}`);
      else if (stat.isFile) file(`${guest}/${entry.name}`, from);
    }
  };
  for (const entry of Deno.readDirSync(`${ROOT}node_modules`)) {
    if (["@deno", "@types", ".bin", ".deno", "deno"].includes(entry.name)) continue;
    const from = `${ROOT}node_modules/${entry.name}`;
    if (Deno.statSync(from).isDirectory) walk(from, `/app/node_modules/${entry.name}`);
    else file(`/app/node_modules/${entry.name}`, from);
  }
  if (isDir(simDir)) {
    for (const entry of Deno.readDirSync(simDir)) {
      if (entry.isFile) file(`/sim/${entry.name}`, `${simDir}/${entry.name}`, 0o600);
    }
  }
  const enc = new TextEncoder();
  entries.push({ path: "/init", data: enc.encode(initScript()), mode: 0o755 });
  entries.push({ path: "/app/kvm_entry.ts", data: enc.encode(ENTRY), mode: 0o644 });
  for (const dir of ["/proc", "/sys", "/dev", "/tmp", "/sim"]) {
    entries.push({ path: dir, mode: 0o40755 });
  }
  return entries;
}

/** A digest of the entries' paths, sources, sizes and modification times (plus the kernel). */
async function inputsKey(kernel: KvmKernel, entries: Entry[]): Promise<string> {
  const parts = [`kernel ${kernel.kernel}`];
  for (const e of entries) {
    if (e.from !== undefined) {
      const s = Deno.statSync(e.from);
      parts.push(`${e.path} ${e.from} ${s.size} ${s.mtime?.getTime()} ${e.mode}`);
    } else {
      parts.push(`${e.path} ${e.mode} ${e.data === undefined ? "" : await sha256(e.data)}`);
    }
  }
  return (await sha256(new TextEncoder().encode(parts.join("\n")))).slice(0, 32);
}

async function sha256(data: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data as BufferSource));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Writes the entries as a cpio newc archive to `path` (parent directories added). */
async function writeCpio(path: string, entries: Entry[]): Promise<void> {
  const dirs = new Set<string>();
  const all: Entry[] = [];
  const addParents = (p: string) => {
    const parts = p.split("/").filter((x) => x);
    for (let i = 1; i < parts.length; i++) {
      const dir = "/" + parts.slice(0, i).join("/");
      if (!dirs.has(dir)) {
        dirs.add(dir);
        all.push({ path: dir, mode: 0o40755 });
      }
    }
  };
  for (const e of entries) {
    addParents(e.path);
    if (e.mode & 0o40000) {
      if (dirs.has(e.path)) continue;
      dirs.add(e.path);
    }
    all.push(e);
  }
  const out = await Deno.open(path, { write: true, create: true, truncate: true });
  const enc = new TextEncoder();
  const chunks: Uint8Array[] = [];
  let pending = 0;
  const flush = async () => {
    const buf = new Uint8Array(pending);
    let at = 0;
    for (const c of chunks) {
      buf.set(c, at);
      at += c.length;
    }
    chunks.length = 0;
    pending = 0;
    let written = 0;
    while (written < buf.length) written += await out.write(buf.subarray(written));
  };
  const push = async (bytes: Uint8Array) => {
    chunks.push(bytes);
    pending += bytes.length;
    if (pending > 8 << 20) await flush();
  };
  const pad = async (n: number) => {
    if (n % 4 !== 0) await push(new Uint8Array(4 - (n % 4)));
  };
  const hex = (n: number) => n.toString(16).padStart(8, "0");
  const record = async (name: string, mode: number, data: Uint8Array, ino: number) => {
    const nameBytes = enc.encode(name + "\0");
    const header = "070701" + hex(ino) + hex(mode) + hex(0) + hex(0) +
      hex(mode & 0o40000 ? 2 : 1) + hex(0) + hex(data.length) + hex(0) + hex(0) + hex(0) +
      hex(0) + hex(nameBytes.length) + hex(0);
    await push(enc.encode(header));
    await push(nameBytes);
    await pad(110 + nameBytes.length);
    await push(data);
    await pad(data.length);
  };
  try {
    let ino = 1;
    for (const e of all) {
      const name = e.path.replace(/^\//, "");
      if (e.mode & 0o40000) await record(name, e.mode, new Uint8Array(0), ino++);
      else {
        const data = e.data ?? await Deno.readFile(e.from!);
        await record(name, 0o100000 | e.mode, data, ino++);
      }
    }
    await record("TRAILER!!!", 0, new Uint8Array(0), 0);
    await flush();
  } finally {
    out.close();
  }
}

/** Options of {@link buildKvmImage}. */
export interface BuildKvmImageOptions {
  /** Folder of cached images. */
  cacheDir: string;
  /** The snp-sim state to put in the guest (`ENARX_SNP_SIM_DIR`). */
  simDir: string;
  /** The kernel (default {@link findKvmKernel}). */
  kernel?: KvmKernel;
}

/**
 * Returns the keep image, building the initrd when the cache has none for
 * the current inputs. Concurrent builders each write a temporary file and
 * rename it into place.
 */
export async function buildKvmImage(options: BuildKvmImageOptions): Promise<KvmImage> {
  const kernel = options.kernel ?? findKvmKernel();
  const entries = await imageEntries(kernel, options.simDir);
  const key = await inputsKey(kernel, entries);
  const initrd = `${options.cacheDir}/initrd-${key}.cpio`;
  if (isFile(initrd)) return { ...kernel, initrd, built: false };
  await Deno.mkdir(options.cacheDir, { recursive: true, mode: 0o700 });
  const tmp = `${initrd}.${crypto.randomUUID()}.tmp`;
  try {
    await writeCpio(tmp, entries);
    await Deno.rename(tmp, initrd);
  } catch (error) {
    await Deno.remove(tmp).catch(() => {});
    throw new EnarxError(
      "kvm-image",
      `Cannot build the kvm keep image in "${options.cacheDir}": ${
        error instanceof Error ? error.message : error
      }`,
      { exit: "io", cause: error },
    );
  }
  return { ...kernel, initrd, built: true };
}
