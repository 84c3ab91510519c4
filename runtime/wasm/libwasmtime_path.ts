/**
 * Finds the libwasmtime shared library that `ffi/wasmtime/` loads, and
 * loads it ({@linkcode loadLibwasmtime}).
 *
 * In order: the `ENARX_LIBWASMTIME` environment variable (set by `./enarx`
 * in a checkout); the copy embedded in a `deno compile`d binary by
 * compile.sh, extracted on first start to
 * `$XDG_CACHE_HOME/enarx/wasmtime-<version>-<sha256 prefix>/libwasmtime.so`
 * (written to a temporary name, checked against its sha256, then renamed, so
 * a crash or a concurrent start never leaves a half-written library); the
 * cache where tools/bootstrap.sh puts it (`$ENARX_CACHE`, else
 * `$XDG_CACHE_HOME/enarx`, else the checkout's `.cache/`). Anything else is a clear error.
 *
 * `dlopen` needs a real file, which is why the embedded copy, which lives in
 * the compiled binary's virtual file system, is extracted rather than used in
 * place.
 *
 * @module
 */
import { loadWasmtime, wasmtimeLoaded } from "../../ffi/wasmtime/library.ts";
import { bootstrapCacheDir, type GetEnv, userCacheDir } from "../dirs.ts";
import { EnarxError } from "../errors.ts";
import { WASMTIME_VERSION } from "../version.ts";

/**
 * Where compile.sh stages the library for `deno compile --include`, relative
 * to the repository root: the library and `libwasmtime.so.sha256` (its hex
 * digest) beside it.
 */
export const EMBEDDED_LIBWASMTIME_DIR = `build/embed/wasmtime-${WASMTIME_VERSION}`;

/** Options of {@linkcode libwasmtimePath}; the defaults are the real ones. */
export interface LibwasmtimePathOptions {
  /** Reads an environment variable (default `Deno.env.get`). */
  getEnv?: GetEnv;
  /** Whether this is a compiled binary (default `Deno.build.standalone`). */
  standalone?: boolean;
  /** The directory that holds the embedded copy and its `.sha256`. */
  embeddedDir?: URL;
  /** tools/bootstrap.sh's cache directory (default `$ENARX_CACHE`, `$XDG_CACHE_HOME/enarx`, `.cache/`). */
  checkoutCache?: string;
}

/** The library cannot be found or extracted (exit status "unavailable"). */
export class LibwasmtimeNotFoundError extends EnarxError {
  /** Makes the error with code `libwasmtime-not-found`. */
  constructor(message: string, cause?: unknown) {
    super("libwasmtime-not-found", message, { exit: "unavailable", cause });
    this.name = "LibwasmtimeNotFoundError";
  }
}

/** Returns the path of a libwasmtime file to `dlopen`; see the module doc. */
export async function libwasmtimePath(options: LibwasmtimePathOptions = {}): Promise<string> {
  const getEnv = options.getEnv ?? ((name: string) => Deno.env.get(name));
  const fromEnv = getEnv("ENARX_LIBWASMTIME");
  if (fromEnv) {
    if (!isFile(fromEnv)) {
      throw new LibwasmtimeNotFoundError(
        `ENARX_LIBWASMTIME is "${fromEnv}", which is not a file; ` +
          `point it at libwasmtime ${WASMTIME_VERSION} or unset it`,
      );
    }
    return fromEnv;
  }
  if (options.standalone ?? Deno.build.standalone) {
    // Relative to the repository root, this file's grandparent.
    const embedded = options.embeddedDir ??
      new URL(`../../${EMBEDDED_LIBWASMTIME_DIR}/`, import.meta.url);
    if (isFile(new URL("libwasmtime.so.sha256", embedded))) {
      return await extractEmbedded(embedded, cacheHome(getEnv));
    }
  }
  const checkoutCache = options.checkoutCache ?? bootstrapCacheDir({ getEnv });
  const inCheckout = `${checkoutCache}/wasmtime-${WASMTIME_VERSION}/libwasmtime.so`;
  if (isFile(inCheckout)) return inCheckout;
  throw new LibwasmtimeNotFoundError(
    `Cannot find libwasmtime ${WASMTIME_VERSION} (looked at "${inCheckout}"); ` +
      `run ./enarx once to fetch it, or set ENARX_LIBWASMTIME to its path`,
  );
}

/**
 * Loads libwasmtime once per process from {@linkcode libwasmtimePath}, so
 * that `ffi/wasmtime/` is ready to use. Throws LibwasmtimeNotFoundError
 * when there is no library to load, and ffi's WasmtimeLoadError when the
 * file cannot be opened as one.
 */
export async function loadLibwasmtime(options: LibwasmtimePathOptions = {}): Promise<void> {
  if (wasmtimeLoaded()) return;
  loadWasmtime(await libwasmtimePath(options));
}

/** The per-user cache root (runtime/dirs.ts), or an error when neither XDG_CACHE_HOME nor HOME is set. */
function cacheHome(getEnv: GetEnv): string {
  const dir = userCacheDir({ getEnv });
  if (dir !== undefined) return dir;
  throw new LibwasmtimeNotFoundError(
    "Cannot extract the embedded libwasmtime: neither XDG_CACHE_HOME nor HOME is set; " +
      "set one of them, or set ENARX_LIBWASMTIME",
  );
}

/**
 * Extracts the embedded library once. A file already at the destination is
 * reused when its size matches: its name carries the digest it was verified
 * against when it was written, and re-hashing 30 MB on every start would cost
 * more than enarx's whole start-up budget.
 */
async function extractEmbedded(embedded: URL, cacheRoot: string): Promise<string> {
  const source = new URL("libwasmtime.so", embedded);
  const sidecar = new URL("libwasmtime.so.sha256", embedded);
  const expected = Deno.readTextFileSync(sidecar).trim().split(/\s+/)[0].toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(expected)) {
    throw new LibwasmtimeNotFoundError(
      `The embedded libwasmtime digest "${expected}" is not a sha256; rebuild with compile.sh`,
    );
  }
  const dir = `${cacheRoot}/wasmtime-${WASMTIME_VERSION}-${expected.slice(0, 16)}`;
  const dest = `${dir}/libwasmtime.so`;
  // Synchronous on the path every start takes (the library already extracted).
  const size = Deno.statSync(source).size;
  try {
    if (Deno.statSync(dest).size === size) return dest;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  const bytes = await Deno.readFile(source);
  const actual = await sha256Hex(bytes);
  if (actual !== expected) {
    throw new LibwasmtimeNotFoundError(
      `The embedded libwasmtime has sha256 "${actual}", expected "${expected}"; ` +
        `the binary is damaged, rebuild it with compile.sh`,
    );
  }
  try {
    await Deno.mkdir(dir, { recursive: true });
    const tmp = `${dest}.tmp-${Deno.pid}-${crypto.randomUUID()}`;
    try {
      await Deno.writeFile(tmp, bytes, { mode: 0o755 });
      await Deno.rename(tmp, dest);
    } catch (error) {
      await Deno.remove(tmp).catch(() => {});
      throw error;
    }
  } catch (error) {
    throw new LibwasmtimeNotFoundError(
      `Cannot extract the embedded libwasmtime to "${dest}": ${(error as Error).message}; ` +
        `make the directory writable, or set XDG_CACHE_HOME or ENARX_LIBWASMTIME`,
      error,
    );
  }
  return dest;
}

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)).toHex();
}

/**
 * Whether `path` is a file. Synchronous: it is on every start's path, where
 * an asynchronous stat costs a turn of the event loop for a few microseconds
 * of work.
 */
function isFile(path: string | URL): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}
