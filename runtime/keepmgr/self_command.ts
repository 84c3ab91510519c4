/**
 * Running `enarx <subcommand>` again with this same program: the compiled
 * binary itself, or this Deno with cli/main.ts (keepmgr starts keepldr,
 * a nil keep starts wasmldr this way).
 *
 * @module
 */
import { bridgedSocketPaths } from "../wasm/tls_socket_paths.ts";

/** What a nil keep's wasmldr may touch besides its own code (see {@link wasmldrPermissions}). */
export interface WasmldrPermissionOptions {
  /** The libwasmtime file it loads (readable; FFI itself cannot be scoped, see below). */
  libwasmtime?: string;
  /** Other paths it reads: the module cache, the snp-sim state. */
  read?: readonly string[];
}

/** The folder of enarx's own code (and its node_modules, wherever that link points). */
function codePaths(): string[] {
  const root = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
  const paths = [root];
  try {
    const modules = Deno.realPathSync(`${root}/node_modules`);
    if (!modules.startsWith(`${root}/`)) paths.push(modules);
  } catch { /* no node_modules */ }
  return paths;
}

/**
 * Deno permissions of a nil keep's wasmldr when run from source: read only
 * its code, its work directory, libwasmtime and `options.read`; FFI;
 * environment,
 * loopback network and system info; no subprocesses and no writes outside
 * its work directory. FFI voids Deno's sandbox (native code is not checked),
 * so these narrow mistakes, not an attacker inside libwasmtime: the keep's
 * isolation is the OS process (docs/security.md).
 */
export function wasmldrPermissions(
  workDir?: string,
  options: WasmldrPermissionOptions = {},
): string[] {
  // /proc/self/fd: the workload's output pipes are read by path (ffi/wasmtime/pipe.ts).
  const read = [...codePaths(), "/proc/self/fd", ...(options.read ?? [])];
  if (options.libwasmtime !== undefined) read.push(options.libwasmtime);
  if (workDir !== undefined) read.push(workDir);
  const perms = [
    `--allow-read=${[...new Set(read)].join(",")}`,
    "--allow-env",
    // Not --allow-ffi=PATH: Deno 2.9 scopes only dlopen by path, and calls
    // through a function pointer (UnsafeFnPointer, which the wasmtime
    // bindings use) require the unscoped permission.
    "--allow-ffi",
    "--allow-sys",
    // 127.0.0.1, and the plaintext sockets of prot = "tls" (tls_socket_paths.ts).
    `--allow-net=${
      [
        "127.0.0.1",
        ...(workDir === undefined
          ? []
          : bridgedSocketPaths(keepTlsSocketDir(workDir)).map((p) => `unix:${p}`)),
      ].join(",")
    }`,
  ];
  if (workDir !== undefined) perms.push(`--allow-write=${workDir}`);
  return perms;
}

/** Returns true when this program is a `deno compile` binary rather than Deno running source. */
export function isCompiledBinary(): boolean {
  const exe = Deno.execPath().split("/").pop() ?? "";
  return !(exe === "deno" || exe.startsWith("deno-") || exe === "deno.exe");
}

/** The fixed directory of a keep's bridged TLS sockets, in its work directory. */
export function keepTlsSocketDir(workDir: string): string {
  return `${workDir}/tls`;
}

/** Options of {@link selfCommand}. */
export interface SelfCommandOptions {
  /** Deno permission flags when running from source (default `--allow-all`). */
  permissions?: string[];
}

/**
 * Returns the command line that runs `enarx <subcommand> ...args` with this
 * same program: the compiled binary itself, or this Deno with cli/main.ts.
 */
export function selfCommand(
  subcommand: string,
  args: string[],
  options: SelfCommandOptions = {},
): string[] {
  if (isCompiledBinary()) return [Deno.execPath(), subcommand, ...args];
  const main = new URL("../../cli/main.ts", import.meta.url);
  const config = new URL("../../deno.json", import.meta.url);
  return [
    Deno.execPath(),
    "run",
    "--quiet",
    "--no-prompt",
    // The flags of every enarx process (./enarx): Deno's code cache holds
    // code compiled under one set of V8 flags, and a process with other
    // flags compiles and caches again what it loads. --no-lazy compiles a
    // module's functions with it (a keep runs most of wasmldr's once).
    "--v8-flags=--no-lazy",
    ...(options.permissions ?? ["--allow-all"]),
    "--config",
    config.pathname,
    main.pathname,
    subcommand,
    ...args,
  ];
}
