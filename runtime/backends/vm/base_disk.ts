/**
 * The read-only base disk of VM keeps (kvm, sev): one raw disk image that
 * holds what every keep runs and nothing that differs between keeps —
 * Deno with its libraries, libwasmtime, wasmldr's code, the npm packages it
 * imports, the socket shim and the guest's /etc — as an ext4 file system
 * followed by its dm-verity hash tree (verity.ts). Every keep's QEMU opens
 * the same file read-only (virtio-blk, {@link baseDiskArgs}); the guest
 * reads the pages it uses into its page cache, where the initrd used to
 * copy all of it into every guest's memory.
 *
 * Why ext4 built by `mke2fs -d`: e2fsprogs is in every Debian system
 * (priority required), the keep kernel (Debian's cloud kernel) has ext4
 * built in, and the guest reads its blocks without decompressing them,
 * which matters under emulation. squashfs-tools and erofs-utils would have
 * to be installed and their kernel modules loaded from the initrd.
 *
 * Reproducible: the same input bytes give the same disk, byte for byte.
 * Files are staged with fixed modes and times (0), mke2fs gets a
 * configuration of its own (no host /etc/mke2fs.conf), a fixed UUID, hash
 * seed, label, creator OS and inode count, and a fixed clock
 * (`E2FSPROGS_FAKE_TIME`, `SOURCE_DATE_EPOCH`); mke2fs sorts directory
 * entries itself. Owners and change times, which mke2fs copies from the
 * staged files, are set to 0 afterwards with debugfs. The cache is keyed by content: a SHA-256 over
 * the sorted (guest path, mode, SHA-256 of the bytes) list. Cached files
 * are 0600 in a 0700 folder.
 *
 * @module
 */
import { appendVerityTree, VERITY_BLOCK, type VerityParams } from "./verity.ts";

/** One file or directory (mode 0o40755) of the disk, named by the SHA-256 of its bytes. */
export interface DiskEntryDigest {
  /** Absolute guest path. */
  path: string;
  /** Permission bits, with 0o40000 for a directory. */
  mode: number;
  /** The SHA-256 of its bytes (of nothing, for a directory). */
  sha256: Uint8Array;
}

/** A {@link DiskEntryDigest} with its bytes, read to build the disk. */
export interface DiskEntry extends DiskEntryDigest {
  /** The bytes (empty for a directory). */
  data: Uint8Array;
}

/** A built base disk. */
export interface BaseDisk extends VerityParams {
  /** The disk image: the file system, then its hash tree. */
  path: string;
  /** The content key (hex), part of the file name. */
  key: string;
  /** True when it was built now rather than found in the cache. */
  built: boolean;
}

/** The id of the disk in QEMU and the guest device it becomes (the first virtio disk). */
export const BASE_DISK_DEVICE = "/dev/vda";

/** mke2fs's configuration: a fixed feature set, not the host's /etc/mke2fs.conf. */
const MKE2FS_CONF = `[defaults]
	base_features = sparse_super,large_file,filetype,dir_index,ext_attr,extent,flex_bg,huge_file,dir_nlink,extra_isize,64bit,metadata_csum
	blocksize = 4096
	inode_size = 256
`;

/** Fixed identifiers of the file system (any constant would do). */
const FS_UUID = "a7e2b1f0-5c1d-4e3a-9b0e-6e6172780001";
const FS_HASH_SEED = "a7e2b1f0-5c1d-4e3a-9b0e-6e6172780002";

/** QEMU's arguments that attach `disk` read-only as a virtio disk. */
export function baseDiskArgs(disk: string): string[] {
  return [
    "-drive",
    `file=${disk},format=raw,if=none,id=base,readonly=on`,
    "-device",
    "virtio-blk-pci,drive=base",
  ];
}

async function sha256Hex(data: Uint8Array): Promise<string> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data as BufferSource)).toHex();
}

/** The content key of a disk: SHA-256 over its sorted (path, mode, SHA-256) list. */
async function diskKey(entries: DiskEntryDigest[]): Promise<string> {
  const lines = ["enarx/v1 keep-base ext4 dm-verity"];
  for (const e of entries) lines.push(`${e.path} ${e.mode.toString(8)} ${e.sha256.toHex()}`);
  return await sha256Hex(new TextEncoder().encode(lines.join("\n")));
}

/** Writes `entries` under `stage` with their modes, then sets every time to 0 (deepest first). */
async function stage(entries: DiskEntry[], dir: string): Promise<void> {
  for (const e of entries) {
    const path = `${dir}${e.path}`;
    if (e.mode & 0o40000) {
      await Deno.mkdir(path, { recursive: true });
    } else {
      await Deno.mkdir(path.replace(/\/[^/]*$/, ""), { recursive: true });
      await Deno.writeFile(path, e.data);
    }
    await Deno.chmod(path, e.mode & 0o7777);
  }
  const paths = entries.map((e) => e.path).sort((a, b) => b.length - a.length);
  for (const path of [...paths, ""]) await Deno.utime(`${dir}${path}`, 0, 0);
}

/** The disk's size in blocks before its hash tree: the files, their inodes, and room for metadata. */
function fsBlocks(entries: DiskEntry[]): number {
  let blocks = 0;
  for (const e of entries) blocks += Math.max(1, Math.ceil(e.data.length / VERITY_BLOCK));
  const inodeBlocks = Math.ceil((entries.length + 64) * 256 / VERITY_BLOCK);
  return blocks + inodeBlocks + Math.ceil(blocks / 64) + 2048;
}

/** Runs a program; throws its standard error when it fails. */
async function run(program: string, args: string[], env: Record<string, string> = {}) {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(program, { args, env, stdout: "piped", stderr: "piped" })
      .output();
  } catch (error) {
    throw new Error(
      `cannot run "${program}" (${error instanceof Error ? error.message : error}); ` +
        `install e2fsprogs`,
    );
  }
  if (!out.success) {
    const text = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join("; ");
    throw new Error(`${program} failed: ${text}`);
  }
}

/** Makes the ext4 file system of `entries` in `image` (staged in `work`). */
async function makeFileSystem(entries: DiskEntry[], image: string, work: string) {
  const root = `${work}/root`;
  await stage(entries, root);
  await Deno.writeTextFile(`${work}/mke2fs.conf`, MKE2FS_CONF);
  const env = { MKE2FS_CONFIG: `${work}/mke2fs.conf`, E2FSPROGS_FAKE_TIME: "1" };
  await run("mke2fs", [
    "-q",
    "-F",
    "-b",
    String(VERITY_BLOCK),
    "-I",
    "256",
    "-N",
    String(entries.length + 64),
    "-m",
    "0",
    "-o",
    "Linux",
    "-L",
    "enarx-base",
    "-U",
    FS_UUID,
    "-E",
    `hash_seed=${FS_HASH_SEED},root_owner=0:0,lazy_itable_init=0,nodiscard`,
    "-d",
    root,
    image,
    String(fsBlocks(entries)),
  ], { ...env, SOURCE_DATE_EPOCH: "1" });
  // mke2fs copies each staged file's owner and change time (which no one can set): make
  // them 0, as on every builder.
  const script = ["/", ...entries.map((e) => e.path)].flatMap((path) =>
    ["uid", "gid", "ctime"].map((field) => `sif ${path} ${field} 0`)
  );
  await Deno.writeTextFile(`${work}/fixed`, script.join("\n") + "\n");
  await run("debugfs", ["-w", "-f", `${work}/fixed`, image], env);
}

/** Options of {@link buildBaseDisk}. */
export interface BuildBaseDiskOptions {
  /** Folder of cached images (exists, 0700). */
  cacheDir: string;
}

/**
 * Returns the base disk of `entries` (sorted by path, every parent listed),
 * building it when the cache has none with the same content: only then are
 * the bytes needed, and `load` gives them (the same entries, in the same
 * order, whose bytes must have the digests given). Concurrent builders each
 * work in a folder of their own and rename into place.
 */
export async function buildBaseDisk(
  entries: DiskEntryDigest[],
  load: () => Promise<DiskEntry[]>,
  options: BuildBaseDiskOptions,
): Promise<BaseDisk> {
  const key = await diskKey(entries);
  const path = `${options.cacheDir}/base-${key}.img`;
  const paramsFile = `${options.cacheDir}/base-${key}.verity.json`;
  try {
    const params: VerityParams = JSON.parse(await Deno.readTextFile(paramsFile));
    if ((await Deno.stat(path)).isFile) return { ...params, path, key, built: false };
  } catch { /* not built yet */ }
  const work = await Deno.makeTempDir({ dir: options.cacheDir, prefix: "base-build-" });
  try {
    const image = `${work}/base.img`;
    await makeFileSystem(await load(), image, work);
    const params = await appendVerityTree(image);
    await Deno.chmod(image, 0o600);
    await Deno.writeTextFile(`${work}/params`, JSON.stringify(params) + "\n", { mode: 0o600 });
    await Deno.rename(`${work}/params`, paramsFile);
    await Deno.rename(image, path);
    return { ...params, path, key, built: true };
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}
