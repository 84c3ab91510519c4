/**
 * The rules of the caches whose content enarx trusts (the compiled-module
 * cache, the file-digest cache): which directory may hold them, and when a
 * file's identity stands for its content.
 *
 * A cache is used only when its directory belongs to this user (or root),
 * is writable by nobody else, and every directory above it belongs to root
 * or this user and is writable by nobody else unless sticky (like `/tmp`);
 * entries must be regular files of this user, writable by nobody else.
 * Whoever passes these checks could as well replace what the entries
 * describe (this user's files), so an entry is no weaker than the file.
 *
 * A file's identity is its device, inode, size, mtime and ctime. It stands
 * for the file's content only once the file has been unchanged for
 * {@link QUIET_MS}: any later change gives it a later ctime (which no user
 * can set back), or another size or inode.
 *
 * @module
 */

/**
 * How long a file must have been unchanged before its identity stands for
 * its content: more than the coarsest timestamp granularity of common
 * filesystems (FAT's 2 s) and the kernel's clock tick.
 */
export const QUIET_MS = 2000;

/** What identifies a file's content without reading it. */
export interface FileIdentity {
  /** Device. */
  dev: number;
  /** Inode (-1 where unknown). */
  ino: number;
  /** Size in bytes. */
  size: number;
  /** Modification time, ms since the epoch (-1 where unknown). */
  mtime: number;
  /** Status change time, ms since the epoch (-1 where unknown). */
  ctime: number;
}

/** The identity of the file that `info` describes. */
export function fileIdentity(info: Deno.FileInfo): FileIdentity {
  return {
    dev: info.dev,
    ino: info.ino ?? -1,
    size: info.size,
    mtime: info.mtime?.getTime() ?? -1,
    ctime: info.ctime?.getTime() ?? -1,
  };
}

/** Whether `a` and `b` are the same known identity (an unknown inode or ctime never is). */
export function sameFileIdentity(a: FileIdentity, b: FileIdentity | undefined): boolean {
  return b !== undefined && a.dev === b.dev && a.ino === b.ino && a.size === b.size &&
    a.mtime === b.mtime && a.ctime === b.ctime && a.ino !== -1 && a.ctime !== -1;
}

/** Whether a file changed in the last {@link QUIET_MS} (or its ctime is unknown). */
export function changedRecently(identity: FileIdentity): boolean {
  return identity.ctime < 0 || Date.now() - identity.ctime < QUIET_MS;
}

/** Whether a cache may use a directory: yes, missing (cannot be made), or refused with a reason. */
export type CacheDirCheck = { ok: true } | { ok: false; refused?: string };

function modeText(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, "0");
}

/** Why `info` of `path`, a directory at or above the cache, makes it untrusted. */
function untrustedDir(path: string, info: Deno.FileInfo, isCache: boolean): string | undefined {
  const uid = Deno.uid();
  const mode = info.mode ?? 0o7777;
  if (!info.isDirectory) return `"${path}" is not a directory`;
  if (info.uid !== uid && (isCache || info.uid !== 0)) {
    return `"${path}" belongs to uid ${info.uid}, not to you (uid ${uid}) or root`;
  }
  const sticky = !isCache && (mode & 0o1000) !== 0;
  if ((mode & 0o022) !== 0 && !sticky) {
    return `"${path}" is writable by others (mode ${modeText(mode)}); run chmod go-w "${path}"`;
  }
  return undefined;
}

/**
 * Checks that `dir` (made 0700 when missing) and every directory above it
 * may hold what this user trusts; see the module's documentation.
 */
export function checkCacheDir(dir: string): CacheDirCheck {
  let real: string;
  try {
    real = Deno.realPathSync(dir);
  } catch {
    try {
      Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
      real = Deno.realPathSync(dir);
    } catch {
      return { ok: false };
    }
  }
  const parts = real.split("/").filter((p) => p !== "");
  for (let i = parts.length; i >= 0; i--) {
    const path = "/" + parts.slice(0, i).join("/");
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(path);
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      return { ok: false, refused: `Cannot check "${path}": ${why}` };
    }
    const why = untrustedDir(path, info, i === parts.length);
    if (why !== undefined) return { ok: false, refused: why };
  }
  return { ok: true };
}

/** Why an entry file of a cache is not this user's alone, or undefined when it is. */
export function untrustedCacheFile(path: string, info: Deno.FileInfo): string | undefined {
  if (!info.isFile) return `"${path}" is not a regular file`;
  if (info.uid !== Deno.uid()) return `"${path}" belongs to uid ${info.uid}, not to you`;
  if (((info.mode ?? 0o777) & 0o022) !== 0) return `"${path}" is writable by others`;
  return undefined;
}
