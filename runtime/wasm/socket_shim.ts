/**
 * Where the socket shim (ffi/native/enarx_wasi_sockets.c) comes from: built
 * once with the system's C compiler (`$ENARX_CC`, else `cc`, `gcc`, `clang`)
 * into the user's cache, `$ENARX_CACHE/wasi-sockets` or
 * `$XDG_CACHE_HOME/enarx/wasi-sockets` (else `~/.cache/enarx/...`), under a
 * name that holds a SHA-256 of its source and build recipe, so that a changed
 * source is rebuilt and a stale library is never used. The build is reproducible (the
 * compiler sees the same file name in every build, so the same compiler
 * gives the same bytes): a VM keep's image holds the library
 * (runtime/backends/kvm_image.ts), and its measurement must be predictable.
 * Inside a VM keep {@link SOCKET_SHIM_ENV} names that prebuilt copy (the
 * guest has no compiler). Loaded only when a workload has `listen` or
 * `connect` entries: a plain `enarx run` needs no compiler and loads nothing
 * of this. See docs/sockets.md.
 *
 * @module
 */
import { join } from "node:path";
import { loadWasiSockets, WasiSocketsError } from "../../ffi/wasi_sockets.ts";
import { wasmtimeLibraryPath } from "../../ffi/wasmtime/mod.ts";
import { userCacheDir } from "../dirs.ts";
import { EnarxError } from "../errors.ts";

/** The shim's C source, beside the FFI binding (compile.sh `--include`s it). */
const SOURCE_URL = new URL("../../ffi/native/enarx_wasi_sockets.c", import.meta.url);

/**
 * Names a prebuilt shim to use instead of building one: set by a VM keep's
 * init, whose image holds the library (measured with the rest of it).
 */
export const SOCKET_SHIM_ENV = "ENARX_SOCKET_SHIM";

/** Part of what a built shim's name hashes: a new recipe never reuses an old build. */
const RECIPE = "enarx/v2 socket shim: cc -shared -fPIC -O2, source enarx_wasi_sockets.c\0";

/** Where built shims are kept, or undefined when there is no user cache (then a temporary one). */
export function socketShimCacheDir(): string | undefined {
  const explicit = Deno.env.get("ENARX_CACHE");
  if (explicit) return join(explicit, "wasi-sockets");
  const user = userCacheDir();
  return user === undefined ? undefined : join(user, "wasi-sockets");
}

function compilers(): string[] {
  const chosen = Deno.env.get("ENARX_CC");
  return chosen ? [chosen] : ["cc", "gcc", "clang"];
}

/** Compiles `enarx_wasi_sockets.c` in `dir` to `out` (in `dir` too). */
async function compile(dir: string, out: string): Promise<void> {
  const tried: string[] = [];
  for (const cc of compilers()) {
    let result: Deno.CommandOutput;
    try {
      result = await new Deno.Command(cc, {
        // Relative names from `dir`: the file name ends up in the library's symbols.
        args: ["-shared", "-fPIC", "-O2", "-o", out, "enarx_wasi_sockets.c"],
        cwd: dir,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) {
        tried.push(cc);
        continue;
      }
      throw error;
    }
    if (result.success) return;
    const said = new TextDecoder().decode(result.stderr).trim().split("\n").slice(0, 3).join("; ");
    throw new EnarxError(
      "socket-shim-build",
      `Cannot build enarx's socket library with "${cc}": ${said}; set ENARX_CC to a working C compiler`,
      { exit: "unavailable" },
    );
  }
  throw new EnarxError(
    "socket-shim-no-compiler",
    `Sockets ([[files]] listen/connect) need a C compiler once, to build enarx's socket ` +
      `library; none of ${tried.map((c) => `"${c}"`).join(", ")} was found: install gcc ` +
      `(Debian: apt-get install gcc) or set ENARX_CC`,
    { exit: "unavailable" },
  );
}

/** Builds the shim unless the cache has it; returns its path. */
async function builtShim(): Promise<string> {
  const prebuilt = Deno.env.get(SOCKET_SHIM_ENV);
  if (prebuilt !== undefined && prebuilt !== "") return prebuilt;
  const source = await Deno.readFile(SOURCE_URL);
  const recipe = new TextEncoder().encode(RECIPE);
  const hashed = new Uint8Array(recipe.length + source.length);
  hashed.set(recipe);
  hashed.set(source, recipe.length);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", hashed)).toHex();
  const dir = socketShimCacheDir() ?? await Deno.makeTempDir({ prefix: "enarx-wasi-sockets-" });
  const path = join(dir, `enarx_wasi_sockets-${digest.slice(0, 16)}.so`);
  try {
    await Deno.stat(path);
    return path;
  } catch {
    // not built yet
  }
  await Deno.mkdir(dir, { recursive: true });
  // The compiler reads a real file: the source may live in a compiled binary's virtual file system.
  // A build folder of its own (concurrent builds), the same file name in each.
  const build = join(dir, `.build-${Deno.pid}-${crypto.randomUUID()}`);
  try {
    await Deno.mkdir(build, { recursive: true });
    await Deno.writeFile(join(build, "enarx_wasi_sockets.c"), source);
    await compile(build, "out.so");
    await Deno.rename(join(build, "out.so"), path); // atomic: a concurrent run sees all or nothing
  } finally {
    await Deno.remove(build, { recursive: true }).catch(() => {});
  }
  return path;
}

/**
 * Builds the socket shim if it is not built yet and returns its path,
 * without loading it: a host process does this for a nil keep, whose
 * sandbox may read the library but not run a compiler. Throws EnarxError
 * (exit 69) when it cannot be built.
 */
export function buildSocketShim(): Promise<string> {
  return builtShim();
}

let ready: Promise<void> | undefined;

/**
 * Makes the socket shim usable in this process (libwasmtime must be loaded):
 * builds it if needed and loads it. Throws EnarxError (exit 69) when it
 * cannot be built or loaded.
 */
export function loadSocketShim(): Promise<void> {
  ready ??= (async () => {
    const libwasmtime = wasmtimeLibraryPath();
    if (libwasmtime === undefined) {
      throw new EnarxError("socket-shim-load", "libwasmtime must be loaded before the socket shim");
    }
    const path = await builtShim();
    try {
      loadWasiSockets(path, libwasmtime);
    } catch (error) {
      if (!(error instanceof WasiSocketsError)) throw error;
      throw new EnarxError("socket-shim-load", error.message, { exit: "unavailable" });
    }
  })();
  ready.catch(() => ready = undefined);
  return ready;
}
