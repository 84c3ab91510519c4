/**
 * Where enarx keeps files for a user, after the XDG Base Directory
 * specification: caches under `$XDG_CACHE_HOME/enarx` (else
 * `~/.cache/enarx`), state under `$XDG_STATE_HOME/enarx` (else
 * `~/.local/state/enarx`), and the bootstrap cache of a checkout
 * (`$ENARX_CACHE`, else `$XDG_CACHE_HOME/enarx`, else the checkout's
 * `.cache/`, where tools/bootstrap.sh puts Deno's libraries, libwasmtime and
 * the test kernel). An empty variable counts as unset, as the specification
 * says.
 *
 * @module
 */

/** Reads an environment variable; tests pass their own. */
export type GetEnv = (name: string) => string | undefined;

/** Options of the functions of this module. */
export interface DirOptions {
  /** Reads the environment (default `Deno.env.get`). */
  getEnv?: GetEnv;
}

function variable(name: string, options: DirOptions): string | undefined {
  const value = (options.getEnv ?? ((n: string) => Deno.env.get(n)))(name);
  return value === undefined || value === "" ? undefined : value;
}

/** The user's enarx cache (`$XDG_CACHE_HOME/enarx`, else `$HOME/.cache/enarx`), or undefined without either. */
export function userCacheDir(options: DirOptions = {}): string | undefined {
  const xdg = variable("XDG_CACHE_HOME", options);
  if (xdg !== undefined) return `${xdg}/enarx`;
  const home = variable("HOME", options);
  return home === undefined ? undefined : `${home}/.cache/enarx`;
}

/** The user's enarx state (`$XDG_STATE_HOME/enarx`, else `$HOME/.local/state/enarx`), or undefined without either. */
export function userStateDir(options: DirOptions = {}): string | undefined {
  const xdg = variable("XDG_STATE_HOME", options);
  if (xdg !== undefined) return `${xdg}/enarx`;
  const home = variable("HOME", options);
  return home === undefined ? undefined : `${home}/.local/state/enarx`;
}

/**
 * The bootstrap cache that tools/bootstrap.sh fills: `$ENARX_CACHE`, else
 * `$XDG_CACHE_HOME/enarx`, else the checkout's `.cache`.
 */
export function bootstrapCacheDir(options: DirOptions = {}): string {
  const explicit = variable("ENARX_CACHE", options);
  if (explicit !== undefined) return explicit;
  const xdg = variable("XDG_CACHE_HOME", options);
  if (xdg !== undefined) return `${xdg}/enarx`;
  // The checkout's root is this file's grandparent (made only here: most runs never need it).
  return decodeURIComponent(new URL("../.cache", import.meta.url).pathname);
}

/**
 * The AmdSev OVMF of sev keeps: `$ENARX_SEV_OVMF`, else
 * `ovmf-amdsev/OVMF.fd` in the user's cache ({@link userCacheDir}), else in
 * the bootstrap cache when there is no user cache. tools/build_ovmf.sh
 * builds it there: outside the checkout, because the firmware is slow to
 * build and the same for every clone. `enarx measure` and the sev launch
 * both ask here, so that what is measured is what boots.
 */
export function amdSevOvmfPath(options: DirOptions = {}): string {
  const cache = userCacheDir(options) ?? bootstrapCacheDir(options);
  return variable("ENARX_SEV_OVMF", options) ?? `${cache}/ovmf-amdsev/OVMF.fd`;
}
