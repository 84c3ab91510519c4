/**
 * Private temporary directories of one `enarx run` (the plaintext Unix
 * sockets of `prot = "tls"`, the placeholders of socket fds), and the
 * removal of those a killed run left behind.
 *
 * A run removes its directories when it ends, but a SIGKILL (or a crash of
 * the runtime) leaves them in `$TMPDIR`, with dead socket names in them. So
 * each directory holds `owner.lock`, on which its run holds an exclusive
 * `flock` for as long as it lives (the kernel releases it when the process
 * ends, however it ends; a pid could be reused, a lock cannot outlive its
 * holder). The lock file appears under its name already locked (it is
 * locked as `owner.lock.new`, then renamed), so a directory being made is
 * never taken for a leftover.
 *
 * Before a run makes a directory it sweeps the same folder for leftovers of
 * either prefix, and removes only what is surely its own kind: a real
 * directory (not a link) owned by this user with mode 0700, whose
 * `owner.lock` this process can lock, and which holds nothing but Unix
 * sockets named as runtime/wasm/tls_socket_paths.ts names them, empty
 * directories and the lock file. Anything else stays where it is.
 *
 * @module
 */
import { join } from "node:path";

/** The name of the lock file in each directory. */
export const OWNER_LOCK = "owner.lock";

/** The prefixes of run directories: swept together, whichever a run makes. */
export const RUN_DIR_PREFIXES = ["enarx-tls-", "enarx-sockets-"] as const;

/** What a leftover may hold (besides {@link OWNER_LOCK}): the bridged sockets. */
const SOCKET_NAME = /^(listen|connect)-\d+\.sock$/;

/** A private directory held by this process; {@link close} removes it. */
export class RunDir {
  readonly #path: string;
  #lock: Deno.FsFile | undefined;

  private constructor(path: string, lock: Deno.FsFile) {
    this.#path = path;
    this.#lock = lock;
  }

  /**
   * Removes the leftovers of every {@link RUN_DIR_PREFIXES} in the
   * temporary folder (see the module's comment), then makes a new directory
   * `prefix*` there, mode 0700, holding its locked `owner.lock`.
   */
  static async create(prefix: (typeof RUN_DIR_PREFIXES)[number]): Promise<RunDir> {
    await removeLeftovers(tempFolder(), RUN_DIR_PREFIXES);
    const path = await Deno.makeTempDir({ prefix });
    try {
      await Deno.chmod(path, 0o700);
      const fresh = join(path, `${OWNER_LOCK}.new`);
      const lock = await Deno.open(fresh, { write: true, createNew: true, mode: 0o600 });
      try {
        await lock.lock(true);
        await lock.write(new TextEncoder().encode(`${Deno.pid}\n`));
        await Deno.rename(fresh, join(path, OWNER_LOCK));
      } catch (error) {
        lock.close();
        throw error;
      }
      return new RunDir(path, lock);
    } catch (error) {
      await Deno.remove(path, { recursive: true }).catch(() => {});
      throw error;
    }
  }

  /** The directory. */
  get path(): string {
    return this.#path;
  }

  /** Removes the directory and lets its lock go (safe to call twice). */
  async close(): Promise<void> {
    const lock = this.#lock;
    if (lock === undefined) return;
    this.#lock = undefined;
    await Deno.remove(this.#path, { recursive: true }).catch(() => {});
    lock.close();
  }
}

/** The folder Deno.makeTempDir uses: $TMPDIR, else /tmp. */
export function tempFolder(): string {
  const tmp = Deno.env.get("TMPDIR");
  return tmp === undefined || tmp === "" ? "/tmp" : tmp;
}

/**
 * Removes the leftovers named with one of `prefixes` in `folder` whose
 * owner is gone; returns the paths removed. Never throws: what cannot be
 * checked or removed stays.
 */
export async function removeLeftovers(
  folder: string,
  prefixes: readonly string[],
): Promise<string[]> {
  const removed: string[] = [];
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(folder));
  } catch {
    return removed;
  }
  for (const entry of entries) {
    if (!entry.isDirectory || !prefixes.some((p) => entry.name.startsWith(p))) continue;
    const path = join(folder, entry.name);
    if (await removeIfAbandoned(path)) removed.push(path);
  }
  return removed;
}

/** Whether `path` is a real directory of this user's with mode 0700. */
async function isPrivateDir(path: string): Promise<boolean> {
  try {
    const info = await Deno.lstat(path);
    return info.isDirectory && info.uid === Deno.uid() && ((info.mode ?? 0) & 0o777) === 0o700;
  } catch {
    return false;
  }
}

/** Removes `path` when it is a private directory whose owner.lock nobody holds. */
async function removeIfAbandoned(path: string): Promise<boolean> {
  if (!await isPrivateDir(path)) return false;
  const lockPath = join(path, OWNER_LOCK);
  let lock: Deno.FsFile;
  try {
    if (!(await Deno.lstat(lockPath)).isFile) return false;
    lock = await Deno.open(lockPath, { read: true });
  } catch {
    return false; // no lock file: not ours, or being made
  }
  try {
    if (!await lock.tryLock(true)) return false; // its run is alive
    return await emptyAndRemove(path);
  } catch {
    return false;
  } finally {
    lock.close();
  }
}

/**
 * Removes `path` when it holds only what a run leaves (sockets named as
 * ours, empty directories, the lock); otherwise leaves it as it is.
 */
async function emptyAndRemove(path: string): Promise<boolean> {
  const inside: string[] = [];
  for await (const entry of Deno.readDir(path)) {
    const inner = join(path, entry.name);
    const info = await Deno.lstat(inner);
    const ours = (info.isSocket && SOCKET_NAME.test(entry.name)) ||
      (info.isFile && entry.name === OWNER_LOCK) || info.isDirectory;
    if (!ours) return false;
    inside.push(inner);
  }
  try {
    // Not recursive: a directory goes only if it is empty.
    for (const inner of inside) await Deno.remove(inner);
    await Deno.remove(path);
    return true;
  } catch {
    return false;
  }
}
