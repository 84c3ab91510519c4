/**
 * Running `enarx <subcommand>` again with this same program: the compiled
 * binary itself, or this Deno with cli/main.ts (keepmgr starts keepldr,
 * a nil keep starts wasmldr this way).
 *
 * @module
 */

/**
 * Deno permissions of a nil keep's wasmldr when run from source: read files
 * (its code, libwasmtime), environment, FFI (libwasmtime), loopback network
 * and system info; no subprocesses and no writes outside its work directory.
 */
export function wasmldrPermissions(workDir?: string): string[] {
  const perms = [
    "--allow-read",
    "--allow-env",
    "--allow-ffi",
    "--allow-sys",
    "--allow-net=127.0.0.1",
  ];
  if (workDir !== undefined) perms.push(`--allow-write=${workDir}`);
  return perms;
}

/** Returns true when this program is a `deno compile` binary rather than Deno running source. */
export function isCompiledBinary(): boolean {
  const exe = Deno.execPath().split("/").pop() ?? "";
  return !(exe === "deno" || exe.startsWith("deno-") || exe === "deno.exe");
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
    ...(options.permissions ?? ["--allow-all"]),
    "--config",
    config.pathname,
    main.pathname,
    subcommand,
    ...args,
  ];
}
