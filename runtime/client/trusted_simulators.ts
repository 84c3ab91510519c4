/**
 * Simulated platform roots trusted on first use, per keepmgr, in the
 * user's config: `$XDG_CONFIG_HOME/enarx/trusted-simulators.toml` (default
 * `~/.config`), a 0600 file in a 0700 folder. `enarx deploy
 * --insecure-allow-simulated` without a fingerprint records the root of the
 * first simulated evidence a keepmgr shows and from then on accepts that
 * root only, the way ssh's known_hosts pins a host key:
 *
 * ```toml
 * [keepmgr."https://127.0.0.1:8443"]
 * root = "sha256:…"
 * since = "2025-01-01T00:00:00.000Z"
 * ```
 *
 * @module
 */
import { parse as parseToml, stringify as stringifyToml } from "smol-toml";
import { EnarxError } from "../errors.ts";

/** The file's path: `$XDG_CONFIG_HOME/enarx/trusted-simulators.toml`. */
export function trustedSimulatorsPath(): string {
  const config = Deno.env.get("XDG_CONFIG_HOME");
  const base = config !== undefined && config !== ""
    ? config
    : `${Deno.env.get("HOME") ?? "/tmp"}/.config`;
  return `${base}/enarx/trusted-simulators.toml`;
}

/** Options of the functions here. */
export interface TrustedSimulatorsOptions {
  /** The file (default {@link trustedSimulatorsPath}). */
  path?: string;
}

type Table = { keepmgr?: Record<string, { root?: string; since?: string }> };

/** The key of a keepmgr in the file: its URL's origin. */
function keepmgrKey(keepmgr: string): string {
  try {
    return new URL(keepmgr).origin;
  } catch {
    return keepmgr;
  }
}

async function readTable(path: string): Promise<Table> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return {};
    throw new EnarxError("config-unreadable", `Cannot read "${path}": ${error}`, {
      exit: "config",
      cause: error,
    });
  }
  try {
    return parseToml(text) as Table;
  } catch (error) {
    throw new EnarxError(
      "config-invalid",
      `"${path}" is not valid TOML (${String(error).split("\n")[0]}); fix or remove it`,
      { exit: "config", cause: error },
    );
  }
}

/** The root recorded for `keepmgr` (`sha256:<hex>`), or undefined when none is. */
export async function readTrustedSimulator(
  keepmgr: string,
  options: TrustedSimulatorsOptions = {},
): Promise<string | undefined> {
  const table = await readTable(options.path ?? trustedSimulatorsPath());
  const root = table.keepmgr?.[keepmgrKey(keepmgr)]?.root;
  return typeof root === "string" ? root : undefined;
}

/** Records `fingerprint` (hex or `sha256:<hex>`) as the simulated root of `keepmgr`. */
export async function recordTrustedSimulator(
  keepmgr: string,
  fingerprint: string,
  options: TrustedSimulatorsOptions = {},
): Promise<string> {
  const path = options.path ?? trustedSimulatorsPath();
  const dir = path.slice(0, path.lastIndexOf("/"));
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const table = await readTable(path);
  table.keepmgr ??= {};
  table.keepmgr[keepmgrKey(keepmgr)] = {
    root: `sha256:${fingerprint.replace(/^sha256:/i, "").toLowerCase()}`,
    since: new Date().toISOString(),
  };
  const text = "# Simulated SNP platform roots trusted on first use by " +
    '"enarx deploy --insecure-allow-simulated", per keepmgr\n' + stringifyToml(table) + "\n";
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeTextFile(tmp, text, { mode: 0o600 });
  await Deno.rename(tmp, path);
  return path;
}
