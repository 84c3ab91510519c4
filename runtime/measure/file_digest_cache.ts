/**
 * SHA-256 digests of measured files, cached by the file's identity, so that
 * a measurement does not read and hash the same large files (the Deno
 * executable, libwasmtime: about 100 MB, some 300 ms of CPU) on every keep
 * launch and every deploy.
 *
 * An entry is `<dir>/<dev>-<ino>.json`: the file's identity (device, inode,
 * size, mtime, ctime) when it was hashed and its SHA-256. A lookup stats the
 * file and uses the entry only when all five fields are equal; otherwise the
 * file is read, hashed and the entry rewritten. An entry is written only for
 * a file unchanged for 2 s (`QUIET_MS`, runtime/cache_dir.ts) before it was read and unchanged
 * while it was read, so any later change gives it a later ctime (which no
 * user can set back) or another size or inode: a changed file is never
 * given its old digest.
 *
 * Trust: the cache directory and its entries must pass runtime/cache_dir.ts's
 * checks (this user's, writable by nobody else), or the cache is not used
 * and every file is hashed. Whoever could write such an entry could as well
 * replace the file it describes, which belongs to the same user or root
 * (docs/security.md, "The file-digest cache"). A missing, unreadable,
 * malformed or foreign entry costs a hash, never an error.
 *
 * @module
 */
import {
  changedRecently,
  checkCacheDir,
  type FileIdentity,
  fileIdentity,
  sameFileIdentity,
  untrustedCacheFile,
} from "../cache_dir.ts";
import { type DirOptions, userCacheDir } from "../dirs.ts";
import { writeFileAtomic } from "../fs.ts";
import { mapLimited } from "../concurrency.ts";

/** Bumped whenever the entry layout changes. */
const FORMAT = "enarx-file-digest-cache-v1";

/** An entry: a file's identity when it was hashed, and its SHA-256 (hex). */
interface DigestRecord {
  format: string;
  file: FileIdentity;
  sha256: string;
}

/** What a lookup did, for tests and benchmarks. */
export type DigestCacheOutcome =
  | "disabled" // no cache directory, or not a regular file
  | "refused" // the directory is not this user's alone
  | "hit" // the entry's identity matched
  | "miss" // no usable entry: hashed
  | "stale"; // an entry for another identity of the file: hashed

/** Options of {@link cachedFileSha256}. */
export interface FileDigestOptions {
  /** The cache directory; undefined hashes without a cache. */
  cacheDir?: string;
  /** Called with what the cache did (and, when refused, why). */
  onCache?: (outcome: DigestCacheOutcome, detail: { reason?: string }) => void;
}

/** The default cache directory: `digests` in the user's cache (runtime/dirs.ts). */
export function defaultDigestCacheDir(options: DirOptions = {}): string | undefined {
  const user = userCacheDir(options);
  return user === undefined ? undefined : `${user}/digests`;
}

/** Where the entry of the file with `identity` lives in `dir`. */
export function digestCachePath(dir: string, identity: FileIdentity): string {
  return `${dir.replace(/\/+$/, "")}/${identity.dev}-${identity.ino}.json`;
}

async function sha256File(path: string): Promise<Uint8Array> {
  const bytes = await Deno.readFile(path);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** The entry at `path` for exactly `identity`: its digest, "stale", or undefined (none usable). */
function readDigest(path: string, identity: FileIdentity): Uint8Array | "stale" | undefined {
  try {
    if (untrustedCacheFile(path, Deno.lstatSync(path)) !== undefined) return undefined;
    const record = JSON.parse(Deno.readTextFileSync(path)) as Partial<DigestRecord> | null;
    if (record?.format !== FORMAT || typeof record.sha256 !== "string") return undefined;
    if (!/^[0-9a-f]{64}$/.test(record.sha256)) return undefined;
    if (!sameFileIdentity(identity, record.file)) return "stale";
    return Uint8Array.fromHex(record.sha256);
  } catch {
    return undefined;
  }
}

/**
 * The SHA-256 of the file at `path`, from the cache when an entry records
 * its current identity, else read and hashed (and recorded when the file is
 * quiet). Throws what reading the file throws.
 */
export async function cachedFileSha256(
  path: string,
  options: FileDigestOptions = {},
): Promise<Uint8Array> {
  return (await cachedFileSha256s([path], options))[0];
}

/**
 * {@link cachedFileSha256} of each of `paths`, in order, with the cache
 * directory checked once for all of them (an image's thousand inputs).
 * Throws what reading a file throws.
 */
export async function cachedFileSha256s(
  paths: readonly string[],
  options: FileDigestOptions = {},
): Promise<Uint8Array[]> {
  let dir = options.cacheDir;
  if (dir !== undefined) {
    const check = checkCacheDir(dir);
    if (!check.ok) {
      if (check.refused !== undefined) {
        options.onCache?.("refused", { reason: check.refused });
        options = { ...options, onCache: undefined };
      }
      dir = undefined;
    }
  }
  // A few at once: a file not in the cache is read and hashed.
  return await mapLimited(paths, 8, (path) => lookup(path, dir, options));
}

/** One file's digest through the checked cache directory `dir` (undefined: no cache). */
async function lookup(
  path: string,
  dir: string | undefined,
  options: FileDigestOptions,
): Promise<Uint8Array> {
  let info: Deno.FileInfo | undefined;
  try {
    info = Deno.statSync(path);
  } catch { /* reading it says why */ }
  if (dir === undefined || info === undefined || !info.isFile) {
    options.onCache?.("disabled", {});
    return await sha256File(path);
  }
  const before = fileIdentity(info);
  const entry = digestCachePath(dir, before);
  const found = readDigest(entry, before);
  if (found instanceof Uint8Array) {
    options.onCache?.("hit", {});
    return found;
  }
  const digest = await sha256File(path);
  options.onCache?.(found ?? "miss", {});
  let after: FileIdentity | undefined;
  try {
    after = fileIdentity(Deno.statSync(path));
  } catch { /* gone: not recorded */ }
  if (after !== undefined && sameFileIdentity(before, after) && !changedRecently(before)) {
    const record: DigestRecord = { format: FORMAT, file: before, sha256: digest.toHex() };
    // A read-only or full cache only costs the next run a hash.
    await writeFileAtomic(entry, JSON.stringify(record), { mode: 0o600 }).catch(() => {});
  }
  return digest;
}
