/**
 * Small file-system helpers private to runtime/, and the one way the project
 * writes a secret: {@link writeSecretFile} creates the file 0600 in a 0700
 * directory owned by the running user, atomically (a temporary created 0600
 * with O_EXCL, then renamed), so that no other local user can read it at any
 * moment and a crash or a full disk leaves neither half a file nor a
 * temporary behind.
 *
 * @module
 */
import { EnarxError } from "./errors.ts";

/** True when something exists at `path` (following links); never throws. */
export function pathExists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The directory part of `path` ("." when there is none). */
function dirnameOf(path: string): string {
  const cut = path.replace(/\/+$/, "").lastIndexOf("/");
  return cut < 0 ? "." : cut === 0 ? "/" : path.slice(0, cut);
}

/**
 * Makes `dir` (and its parents) if needed and makes sure only the running
 * user can enter it: a directory owned by this user with a wider mode than
 * 0700 is tightened to 0700; one owned by another user is refused with an
 * EnarxError `secret-dir-owner` (exit status 77).
 */
export async function ensurePrivateDirectory(dir: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(dir);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw ioError(`Cannot read "${dir}"`, error);
    try {
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      info = await Deno.stat(dir);
    } catch (cause) {
      throw ioError(`Cannot make the directory "${dir}"`, cause);
    }
  }
  if (!info.isDirectory) {
    throw new EnarxError("secret-dir-invalid", `"${dir}" is not a directory; remove it`, {
      exit: "config",
    });
  }
  const uid = Deno.uid();
  if (uid !== null && info.uid !== null && info.uid !== uid) {
    throw new EnarxError(
      "secret-dir-owner",
      `Refusing to keep private keys in "${dir}": it belongs to user ${info.uid}, not to ` +
        `this user (${uid}); use a directory of your own`,
      { exit: "permission" },
    );
  }
  if (info.mode !== null && (info.mode & 0o077) !== 0) {
    await Deno.chmod(dir, 0o700);
  }
}

/** Options of {@link writeFileAtomic}. */
export interface AtomicWriteOptions {
  /** The file's mode (default 0600); the temporary is created with it, never wider. */
  mode?: number;
  /**
   * Fail with Deno.errors.AlreadyExists when `path` exists instead of
   * replacing it (the first of several concurrent writers wins).
   */
  createNew?: boolean;
}

/**
 * Writes `data` to `path` atomically: into a temporary beside it created
 * with O_EXCL at `options.mode`, then renamed (or linked, with `createNew`)
 * into place. The temporary is removed whatever happens. A failure other
 * than AlreadyExists is an EnarxError `io` (exit status 74) naming the path.
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array | string,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  try {
    const file = await Deno.open(tmp, {
      write: true,
      createNew: true,
      mode: options.mode ?? 0o600,
    });
    try {
      let at = 0;
      while (at < bytes.length) at += await file.write(bytes.subarray(at));
      await file.sync();
    } finally {
      file.close();
    }
    if (options.createNew) await Deno.link(tmp, path);
    else await Deno.rename(tmp, path);
  } catch (cause) {
    if (cause instanceof Deno.errors.AlreadyExists && options.createNew) throw cause;
    throw ioError(`Cannot write "${path}"`, cause);
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
}

/**
 * Writes a secret (a private key, a simulator's keys, a cached secret):
 * {@link ensurePrivateDirectory} on its directory, then
 * {@link writeFileAtomic} at mode 0600.
 */
export async function writeSecretFile(
  path: string,
  data: Uint8Array | string,
  options: { createNew?: boolean } = {},
): Promise<void> {
  await ensurePrivateDirectory(dirnameOf(path));
  await writeFileAtomic(path, data, { mode: 0o600, createNew: options.createNew });
}

function ioError(what: string, cause: unknown): EnarxError {
  if (cause instanceof EnarxError) return cause;
  const text = cause instanceof Error ? cause.message : String(cause);
  const full = /no space|quota/i.test(text) ? `${text}; free some space and retry` : text;
  return new EnarxError("io", `${what}: ${full}`, { exit: "io", cause });
}
