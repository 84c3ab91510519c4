/**
 * The boot image of a VM keep (kvm, and sev's kernel, initrd, command line
 * and base disk): a Linux kernel (Debian's cloud kernel, from
 * `ENARX_KVM_KERNEL` or the cache that tools/test_deps.sh fills), a small
 * initrd, a read-only base disk that every keep shares, and the kernel
 * command line {@link KEEP_APPEND} followed by `enarx.verity=<data
 * blocks>:<root hash>`, the dm-verity parameters of that disk.
 *
 * The base disk (vm/base_disk.ts) holds what is big and the same in every
 * keep: Deno with its libraries, libwasmtime, wasmldr's code, the npm
 * packages it imports, the socket shim (runtime/wasm/socket_shim.ts, built
 * here with the host's C compiler: the guest has none) and a resolver
 * configuration that names QEMU's user-net DNS (10.0.2.3). The initrd holds
 * the init script, busybox, dmsetup with its libraries, and the kernel
 * modules for virtio networking, the virtio disk and dm-verity. The init
 * opens the disk through dm-verity with the root hash from the command
 * line, mounts it read-only and runs wasmldr from it (chroot). The command
 * line is measured (kvm: runtime/measure/keep_measure.ts; sev: the
 * firmware's kernel hashes), so the measurement covers every byte of the
 * disk: a block the host changed fails verification when the guest reads
 * it, and the guest panics (verity.ts).
 *
 * The initrd is an uncompressed cpio (newc) archive written here (no
 * compression: building and unpacking it under emulation stay fast).
 * Reproducible: the same input bytes give the same archive, byte for byte.
 * Entries are sorted by path, every parent directory is listed, inode
 * numbers follow that order, times are 0, owner and group are 0, modes are
 * fixed (0755 programs and directories, 0644 data), and no host path
 * appears. The cache of built initrds is keyed by content:
 * a SHA-256 over the sorted (guest path, mode, SHA-256 of the bytes) list.
 * Cached files are 0600 in a 0700 folder.
 *
 * No key of any kind is in it: a kvm keep's evidence is signed on the host
 * (keepldr's simulated platform, runtime/keepmgr/host_simulator.ts), so the
 * kvm and sev images are the same bytes.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import { findKvmKernel, isFile, type KvmKernel } from "./kvm_kernel.ts";
import { wasmldrFiles } from "../keep/measurement.ts";
import { libwasmtimePath } from "../wasm/libwasmtime_path.ts";
import { BASE_DISK_DEVICE, type BaseDisk, buildBaseDisk } from "./vm/base_disk.ts";
import { cachedFileSha256s, defaultDigestCacheDir } from "../measure/file_digest_cache.ts";
import { bytesEqual } from "../bytes.ts";
import { mapLimited } from "../concurrency.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

export { defaultKernelCache, findKvmKernel, type KvmKernel } from "./kvm_kernel.ts";

/** Where the socket shim is in the guest. */
export const GUEST_SOCKET_SHIM = "/app/enarx_wasi_sockets.so";

/**
 * The guest's /etc: names resolve from /etc/hosts, then through the DNS
 * server of QEMU's user-mode network (it relays to the host's resolvers).
 */
export const GUEST_ETC: Readonly<Record<string, string>> = {
  "/etc/hosts": "127.0.0.1 localhost\n::1 localhost\n",
  "/etc/nsswitch.conf": "hosts: files dns\n",
  "/etc/resolv.conf": "nameserver 10.0.2.3\n",
};

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

/** Kernel modules for the base disk (virtio-blk and dm-verity), in load order, after {@link NET_MODULES}. */
export const DISK_MODULES = ["virtio_blk", "dm-mod", "dm-bufio", "reed_solomon", "dm-verity"];

/** The kernel command line of a VM keep, before its `enarx.verity=` parameter. */
export const KEEP_APPEND = "console=ttyS0 quiet panic=-1";

/** The line the guest's init prints on its console before it stops on an error. */
export const INIT_ERROR_PREFIX = "init: error: ";

/** A built keep image. */
export interface KvmImage extends KvmKernel {
  /** The initrd (cpio newc). */
  initrd: string;
  /** The kernel command line: {@link KEEP_APPEND} and the base disk's verity parameters. */
  append: string;
  /** The read-only base disk, shared by every keep, and its verity parameters. */
  base: BaseDisk;
  /** True when the initrd or the base disk was built now rather than found in the cache. */
  built: boolean;
  /** The content key of the initrd (hex), part of its cache file name. */
  key: string;
}

/** The kernel command line of a keep whose base disk is `base`. */
export function keepAppend(base: { dataBlocks: number; rootHash: string }): string {
  return `${KEEP_APPEND} enarx.verity=${base.dataBlocks}:${base.rootHash}`;
}

/**
 * Finds the modules `names` (uncompressed `NAME.ko`) under the kernel's
 * module tree, walked once; EnarxError `kvm-kernel-missing` for one that is
 * not there.
 */
function findModules(modules: string, names: readonly string[]): string[] {
  const found = new Map<string, string>();
  const walk = (dir: string) => {
    for (const entry of Deno.readDirSync(dir)) {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory) walk(path);
      else if (entry.name.endsWith(".ko") && !found.has(entry.name)) found.set(entry.name, path);
    }
  };
  walk(`${modules}/kernel`);
  return names.map((name) => {
    const path = found.get(`${name}.ko`);
    if (path === undefined) {
      throw new EnarxError(
        "kvm-kernel-missing",
        `The kernel module "${name}.ko" (uncompressed) is not under "${modules}"; ` +
          `use a kernel with virtio networking as modules (Debian's cloud kernel)`,
        { exit: "unavailable" },
      );
    }
    return path;
  });
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

/**
 * The init script of the guest. It loads the modules, brings up the
 * network, opens the base disk through dm-verity with the parameters of
 * the measured command line (the table: Documentation/admin-guide/
 * device-mapper/verity.rst; the tree: vm/verity.ts), mounts it read-only
 * with a fresh tmpfs on its /tmp, and runs wasmldr from it. A failure
 * prints {@link INIT_ERROR_PREFIX} and a reason on the console, which the
 * host passes on (kvm_vm.ts), and powers off.
 */
function initScript(): string {
  const bb = "/bin/busybox";
  const env = [
    "HOME=/tmp",
    "TMPDIR=/tmp",
    "DENO_DIR=/tmp/deno",
    "DENO_NO_UPDATE_CHECK=1",
    "ENARX_LIBWASMTIME=/app/libwasmtime.so",
    `ENARX_WASMLDR_LISTEN=0.0.0.0:${GUEST_PORT}`,
    `ENARX_SOCKET_SHIM=${GUEST_SOCKET_SHIM}`,
  ];
  const dev = BASE_DISK_DEVICE;
  return `#!${bb} sh
fail() { echo "${INIT_ERROR_PREFIX}$*"; ${bb} poweroff -f; }
${bb} mount -t proc proc /proc
${bb} mount -t sysfs sys /sys
${bb} mount -t devtmpfs dev /dev
for m in ${[...NET_MODULES, ...DISK_MODULES].join(" ")}; do ${bb} insmod /lib/modules/$m.ko; done
${bb} ip link set lo up
${bb} ip link set eth0 up
${bb} ip addr add 10.0.2.15/24 dev eth0
${bb} ip route add default via 10.0.2.2
verity=$(${bb} sed -n 's/.* enarx\\.verity=\\([0-9]*:[0-9a-f]*\\).*/\\1/p' /proc/cmdline)
[ -n "$verity" ] || fail "the kernel command line has no enarx.verity=<blocks>:<root hash>"
blocks=\${verity%%:*}
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b ${dev} ] && break; ${bb} sleep 0.2; done
[ -b ${dev} ] || fail "no base disk (${dev}): QEMU was not given the keep's base disk"
DM_DISABLE_UDEV=1 /sbin/dmsetup create base --readonly --noudevsync --table \\
  "0 $((blocks * 8)) verity 1 ${dev} ${dev} 4096 4096 $blocks $blocks sha256 \${verity#*:} - 1 panic_on_corruption" \\
  || fail "dm-verity refused the base disk (${dev}): it is smaller than the command line says"
${bb} mount -t ext4 -o ro /dev/mapper/base /base || fail "the verified base disk does not mount"
${bb} mount -t tmpfs -o mode=1777 tmp /base/tmp
for d in proc sys dev; do ${bb} mount --bind /$d /base/$d; done
exec 3<>/dev/ttyS1
${bb} stty -F /dev/ttyS1 raw -echo -ixon -ixoff -icrnl -opost cs8
echo "init: frames port ready at $(${bb} cut -d' ' -f1 /proc/uptime)"
${bb} printf '${READY_MARKER.replace("\n", "\\n")}' >&3
${bb} env ${env.join(" ")} ${bb} chroot /base /bin/deno run --quiet --no-prompt --allow-all \\
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

/** One entry of the archive: a file from the host, inline bytes, or a directory (mode 0o40755). */
type Entry = { path: string; from?: string; data?: Uint8Array; mode: number };

/** An entry with the SHA-256 of its bytes (of a host file: from the file-digest cache). */
type HashedEntry = Entry & { sha256: Uint8Array };

/** An entry with its bytes, read to build an image. */
type ReadEntry = { path: string; mode: number; data: Uint8Array; sha256: Uint8Array };

const DIR_MODE = 0o40755;

/** The file at `from` as an entry, or EnarxError `kvm-image` naming what to install. */
function hostFile(path: string, from: string, mode: number, install: string): Entry {
  if (!isFile(from)) {
    throw new EnarxError(
      "kvm-image",
      `Cannot build the kvm keep image: "${from}" is missing; install ${install}`,
      { exit: "unavailable" },
    );
  }
  return { path, from, mode };
}

/** The host's dmsetup (Debian's dmsetup package). */
function findDmsetup(): string {
  return ["/usr/sbin/dmsetup", "/sbin/dmsetup"].find(isFile) ?? "/usr/sbin/dmsetup";
}

/** Lists what goes into the initrd: init, busybox, dmsetup and its libraries, the modules. */
async function initrdEntries(kernel: KvmKernel): Promise<Entry[]> {
  const dmsetup = findDmsetup();
  const entries = [
    hostFile("/bin/busybox", "/bin/busybox", 0o755, "busybox-static"),
    hostFile("/sbin/dmsetup", dmsetup, 0o755, "dmsetup"),
  ];
  for (const [path, from] of await sharedLibraries(dmsetup)) {
    entries.push({ path, from, mode: 0o755 });
  }
  const names = [...NET_MODULES, ...DISK_MODULES];
  findModules(kernel.modules, names).forEach((from, i) => {
    entries.push({ path: `/lib/modules/${names[i]}.ko`, from, mode: 0o644 });
  });
  entries.push({ path: "/init", data: new TextEncoder().encode(initScript()), mode: 0o755 });
  for (const dir of ["/proc", "/sys", "/dev", "/base"]) entries.push({ path: dir, mode: DIR_MODE });
  return entries;
}

/** Lists what goes on the base disk: Deno, libwasmtime, their libraries, wasmldr, /etc. */
async function diskEntries(): Promise<Entry[]> {
  const deno = Deno.execPath();
  const libwasmtime = await libwasmtimePath();
  const entries = [
    hostFile("/bin/deno", deno, 0o755, "Deno"),
    hostFile("/app/libwasmtime.so", libwasmtime, 0o755, "libwasmtime"),
  ];
  const file = (path: string, from: string, mode = 0o644) => entries.push({ path, from, mode });
  const libs = new Map<string, string>();
  for (const binary of [deno, libwasmtime]) {
    for (const [path, from] of await sharedLibraries(binary)) libs.set(path, from);
  }
  for (const [path, from] of libs) file(path, from, 0o755);
  for (const path of [...await wasmldrFiles(), ...APP_EXTRA]) {
    file(`/app/${path}`, `${ROOT}${path}`);
  }
  for (const [path, from] of nodeModules()) file(path, from);
  file(GUEST_SOCKET_SHIM, await socketShim(), 0o755);
  const enc = new TextEncoder();
  for (const [path, text] of Object.entries(GUEST_ETC)) {
    entries.push({ path, data: enc.encode(text), mode: 0o644 });
  }
  entries.push({ path: "/app/kvm_entry.ts", data: enc.encode(ENTRY), mode: 0o644 });
  for (const dir of ["/proc", "/sys", "/dev", "/tmp"]) {
    entries.push({ path: dir, mode: DIR_MODE });
  }
  return entries;
}

/** The socket shim, built on this host (or found in its cache); EnarxError `kvm-image` when it cannot be. */
async function socketShim(): Promise<string> {
  const { buildSocketShim } = await import("../wasm/socket_shim.ts");
  try {
    return await buildSocketShim();
  } catch (error) {
    throw new EnarxError(
      "kvm-image",
      `Cannot build the kvm keep image, which holds enarx's socket library: ${
        error instanceof Error ? error.message : error
      }`,
      { exit: "unavailable", cause: error },
    );
  }
}

/** Files of the checkout the guest needs beside wasmldr's code. */
const APP_EXTRA = ["deno.json", "package.json", "package-lock.json"];

/** The npm packages wasmldr imports: [guest path, host path] of every file. */
function nodeModules(): [string, string][] {
  const files: [string, string][] = [];
  const walk = (dir: string, guest: string) => {
    for (const entry of Deno.readDirSync(dir)) {
      const from = `${dir}/${entry.name}`;
      const stat = Deno.statSync(from);
      if (stat.isDirectory) walk(from, `${guest}/${entry.name}`);
      else if (stat.isFile) files.push([`${guest}/${entry.name}`, from]);
    }
  };
  for (const entry of Deno.readDirSync(`${ROOT}node_modules`)) {
    if (["@deno", "@types", ".bin", ".deno", "deno"].includes(entry.name)) continue;
    const from = `${ROOT}node_modules/${entry.name}`;
    if (Deno.statSync(from).isDirectory) walk(from, `/app/node_modules/${entry.name}`);
    else files.push([`/app/node_modules/${entry.name}`, from]);
  }
  return files;
}

/**
 * Hashes every file entry, adds every parent directory, drops duplicates
 * (the last one wins) and sorts by path: the archive's order. A host file's
 * digest comes from the file-digest cache while the file is unchanged
 * (runtime/measure/file_digest_cache.ts), so a launch whose images are
 * already built reads none of the ~130 MB that go into them (Deno,
 * libwasmtime: about 0.4 s of reading and hashing per launch before).
 */
async function hashEntries(entries: Entry[]): Promise<HashedEntry[]> {
  const byPath = new Map<string, Entry>();
  for (const e of entries) {
    const parts = e.path.split("/").filter((x) => x);
    for (let i = 1; i < parts.length; i++) {
      const dir = "/" + parts.slice(0, i).join("/");
      if (!byPath.has(dir)) byPath.set(dir, { path: dir, mode: DIR_MODE });
    }
    byPath.set(e.path, e);
  }
  const sorted = [...byPath.values()].sort((a, b) => compareBytes(a.path, b.path));
  const files = sorted.filter((e) => !(e.mode & 0o40000) && e.data === undefined);
  const digests = new Map<Entry, Uint8Array>();
  const fileDigests = await cachedFileSha256s(files.map((e) => e.from!), {
    cacheDir: defaultDigestCacheDir(),
  });
  files.forEach((e, i) => digests.set(e, fileDigests[i]));
  // The rest are directories (the digest of no bytes) and a few small inline files.
  const empty = await sha256(new Uint8Array(0));
  return await Promise.all(sorted.map(async (e) => ({
    ...e,
    sha256: digests.get(e) ?? (e.data === undefined ? empty : await sha256(e.data)),
  })));
}

/**
 * Reads the bytes of hashed entries, to build an image, and checks that
 * each host file still has the digest its entry was keyed by: an image
 * never holds other bytes than its content key names.
 */
async function readEntries(entries: HashedEntry[]): Promise<ReadEntry[]> {
  // A few at once: WebCrypto digests off the main thread.
  return await mapLimited(entries, 8, async (e) => {
    const data = e.mode & 0o40000 ? new Uint8Array(0) : e.data ?? await Deno.readFile(e.from!);
    if (e.from !== undefined && !bytesEqual(await sha256(data), e.sha256)) {
      throw new EnarxError(
        "kvm-image",
        `"${e.from}" changed while the kvm keep image was being built; try again`,
        { exit: "unavailable" },
      );
    }
    return { path: e.path, mode: e.mode, data, sha256: e.sha256 };
  });
}

/** Orders paths by their UTF-8 bytes (as `LC_ALL=C sort`). */
function compareBytes(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function sha256(data: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data as BufferSource));
}

/** The content key of an archive: SHA-256 over its sorted (path, mode, SHA-256) list. */
async function contentKey(entries: HashedEntry[]): Promise<string> {
  const lines = ["enarx/v1 keep-initrd"];
  for (const e of entries) lines.push(`${e.path} ${e.mode.toString(8)} ${e.sha256.toHex()}`);
  return (await sha256(new TextEncoder().encode(lines.join("\n")))).toHex();
}

/** The cpio newc header and name of one record, padded to 4 bytes. */
function cpioHeader(name: string, mode: number, size: number, ino: number): Uint8Array {
  const enc = new TextEncoder();
  const nameBytes = enc.encode(name + "\0");
  const hex = (n: number) => n.toString(16).padStart(8, "0");
  // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
  // rdevmajor, rdevminor, namesize, check
  const header = "070701" + hex(ino) + hex(mode) + hex(0) + hex(0) +
    hex(mode & 0o40000 ? 2 : 1) + hex(0) + hex(size) + hex(0) + hex(0) + hex(0) +
    hex(0) + hex(nameBytes.length) + hex(0);
  const padded = new Uint8Array(Math.ceil((110 + nameBytes.length) / 4) * 4);
  padded.set(enc.encode(header));
  padded.set(nameBytes, 110);
  return padded;
}

/** Writes sorted entries as a cpio newc archive to `path` (mode 0600). */
async function writeCpio(path: string, entries: ReadEntry[]): Promise<void> {
  const out = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
  const write = async (bytes: Uint8Array) => {
    let written = 0;
    while (written < bytes.length) written += await out.write(bytes.subarray(written));
  };
  try {
    let ino = 1;
    for (const e of entries) {
      const mode = e.mode & 0o40000 ? e.mode : 0o100000 | e.mode;
      await write(cpioHeader(e.path.replace(/^\//, ""), mode, e.data.length, ino++));
      await write(e.data);
      if (e.data.length % 4 !== 0) await write(new Uint8Array(4 - (e.data.length % 4)));
    }
    await write(cpioHeader("TRAILER!!!", 0, 0, 0));
  } finally {
    out.close();
  }
}

/** Options of {@link buildKvmImage}. */
export interface BuildKvmImageOptions {
  /** Folder of cached images (made 0700). */
  cacheDir: string;
  /** The kernel (default {@link findKvmKernel}). */
  kernel?: KvmKernel;
}

/**
 * Returns the keep image, building the base disk and the initrd when the
 * cache has none with the same content. Concurrent builders each write
 * temporary files and rename them into place.
 */
export async function buildKvmImage(options: BuildKvmImageOptions): Promise<KvmImage> {
  const kernel = options.kernel ?? findKvmKernel();
  await Deno.mkdir(options.cacheDir, { recursive: true, mode: 0o700 });
  await Deno.chmod(options.cacheDir, 0o700).catch(() => {});
  let base: BaseDisk;
  try {
    const disk = await hashEntries(await diskEntries());
    base = await buildBaseDisk(disk, () => readEntries(disk), options);
  } catch (error) {
    if (error instanceof EnarxError) throw error;
    throw new EnarxError(
      "kvm-image",
      `Cannot build the kvm keep's base disk in "${options.cacheDir}": ${
        error instanceof Error ? error.message : error
      }`,
      { exit: "unavailable", cause: error },
    );
  }
  const entries = await hashEntries(await initrdEntries(kernel));
  const key = await contentKey(entries);
  const initrd = `${options.cacheDir}/initrd-${key}.cpio`;
  const image = { ...kernel, initrd, append: keepAppend(base), base, key };
  if (isFile(initrd)) return { ...image, built: base.built };
  const tmp = `${initrd}.${crypto.randomUUID()}.tmp`;
  try {
    await writeCpio(tmp, await readEntries(entries));
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
  return { ...image, built: true };
}
