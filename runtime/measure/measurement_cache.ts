/**
 * A computed keep measurement, kept with the identity of every file it
 * covers, so that a short-lived process (each `enarx deploy` that expects
 * the measurement of its own release, each keepldr) does not read and hash
 * wasmldr's ~75 files again: about 18 ms of CPU per process, where checking
 * their identities costs about 1.
 *
 * An entry is `<dir>/measurement-<hash of its key>.json`: the key (what else
 * the value depends on, e.g. the repository root and the paths of Deno and
 * libwasmtime), the 48-byte measurement, and each input's role, path and
 * identity (device, inode, size, mtime, ctime; runtime/cache_dir.ts). A
 * lookup uses it only when the key is equal and every file's identity is
 * unchanged, so a change to any covered file, or a new file imported by a
 * changed one, computes the measurement afresh. An entry is written only
 * when no file changed in the 2 s before its identity was taken
 * (`QUIET_MS`): a file changed while it was being read is never recorded
 * with the identity of its new content.
 *
 * Trust: the directory is file_digest_cache.ts's, with its checks
 * (runtime/cache_dir.ts: this user's, writable by nobody else) and its
 * reasoning (docs/security.md, "The file-digest cache"): whoever could write
 * an entry could as well change the files it describes or what the user's
 * enarx runs. A missing, foreign or malformed entry costs a computation,
 * never an error.
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
import { writeFileAtomic } from "../fs.ts";

/** Bumped whenever the entry layout changes. */
const FORMAT = "enarx-measurement-cache-v1";

/** One file a cached measurement covers. */
export interface CachedMeasurementInput {
  /** Its role in the digest, e.g. `app/cli/wasmldr.ts`. */
  role: string;
  /** Its absolute path. */
  path: string;
  /** Its identity when it was measured. */
  file: FileIdentity;
}

/** A measurement found in the cache, with the identities of the files it covers. */
export interface CachedMeasurement {
  /** The measurement. */
  digest: Uint8Array;
  /** Path → identity of each covered file. */
  files: Map<string, FileIdentity>;
}

interface MeasurementRecord {
  format: string;
  key: string;
  digest: string;
  inputs: CachedMeasurementInput[];
}

/** FNV-1a (32 bits) of `text`, as hex: spreads keys over file names; the key inside decides. */
function keyHash(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}

/** Where the entry for `key` lives in `dir`. */
export function measurementCachePath(dir: string, key: string): string {
  return `${dir.replace(/\/+$/, "")}/measurement-${keyHash(key)}.json`;
}

function isInput(value: unknown): value is CachedMeasurementInput {
  const v = value as Partial<CachedMeasurementInput> | null;
  return typeof v?.role === "string" && typeof v.path === "string" &&
    typeof v.file === "object" && v.file !== null;
}

/**
 * The measurement recorded in `dir` for `key`, when every file it covers
 * still has the identity it had; undefined otherwise (or when the cache may
 * not be used).
 */
export function readCachedMeasurement(dir: string, key: string): CachedMeasurement | undefined {
  if (!checkCacheDir(dir).ok) return undefined;
  const path = measurementCachePath(dir, key);
  try {
    if (untrustedCacheFile(path, Deno.lstatSync(path)) !== undefined) return undefined;
    const record = JSON.parse(Deno.readTextFileSync(path)) as Partial<MeasurementRecord> | null;
    if (record?.format !== FORMAT || record.key !== key) return undefined;
    if (typeof record.digest !== "string" || !/^[0-9a-f]{96}$/.test(record.digest)) {
      return undefined;
    }
    if (!Array.isArray(record.inputs) || !record.inputs.every(isInput)) return undefined;
    const files = new Map<string, FileIdentity>();
    for (const input of record.inputs) {
      if (!sameFileIdentity(fileIdentity(Deno.statSync(input.path)), input.file)) return undefined;
      files.set(input.path, input.file);
    }
    return { digest: Uint8Array.fromHex(record.digest), files };
  } catch {
    return undefined;
  }
}

/**
 * Records `digest` for `key` in `dir` with the files it covers, unless one
 * of them changed in the last 2 s. Best effort: a cache that cannot be
 * written only costs the next process a computation.
 */
export async function recordCachedMeasurement(
  dir: string,
  key: string,
  measured: { digest: Uint8Array; inputs: CachedMeasurementInput[] },
): Promise<void> {
  if (measured.inputs.some((input) => changedRecently(input.file))) return;
  if (!checkCacheDir(dir).ok) return;
  const record: MeasurementRecord = {
    format: FORMAT,
    key,
    digest: measured.digest.toHex(),
    inputs: measured.inputs,
  };
  await writeFileAtomic(measurementCachePath(dir, key), JSON.stringify(record), { mode: 0o600 })
    .catch(() => {});
}
