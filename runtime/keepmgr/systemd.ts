/**
 * Transient systemd units for keeps: where systemd is PID 1 and the operator
 * asked for it (`enarx keepmgr --systemd`), each keepldr runs as
 * `enarx-keep-<id>.service` started by `systemd-run`, so that systemd
 * enforces its memory and run-time limits and stops it with its children.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";

/** Unit name prefix of keep units. */
export const KEEP_UNIT_PREFIX = "enarx-keep-";

/** Returns true when systemd is PID 1 (reads `/proc/1/comm`). */
export function systemdIsInit(): boolean {
  try {
    return Deno.readTextFileSync("/proc/1/comm").trim() === "systemd";
  } catch {
    return false;
  }
}

/** Throws a clear error unless systemd is PID 1. */
export function requireSystemd(): void {
  if (systemdIsInit()) return;
  let init = "unknown";
  try {
    init = Deno.readTextFileSync("/proc/1/comm").trim();
  } catch { /* keep "unknown" */ }
  throw new EnarxError(
    "systemd-unavailable",
    `Cannot run keeps as systemd units: PID 1 is "${init}", not systemd; ` +
      `run keepmgr without --systemd to supervise keeps as child processes`,
    { exit: "unavailable" },
  );
}

/** Options of {@link systemdRunArgs}. */
export interface SystemdRunOptions {
  /** MemoryMax= in bytes. */
  memoryMax?: number;
  /** RuntimeMaxSec= in seconds. */
  runtimeMaxSec?: number;
  /**
   * Environment variables for the unit (`--setenv`): a transient unit starts
   * with none of keepmgr's, and without `XDG_CACHE_HOME` or `HOME` a keepldr
   * has no digest cache and hashes Deno and libwasmtime (~300 ms) per keep.
   */
  env?: Record<string, string>;
}

/** Returns the unit name of a keep. */
export function keepUnitName(keepId: string): string {
  return `${KEEP_UNIT_PREFIX}${keepId}`;
}

/**
 * Returns the `systemd-run` argument list that runs `command` as the
 * transient unit `unit`, with its stdio piped to the caller (`--pipe`), the
 * unit collected even if it fails (`--collect`), and the resource limits.
 */
export function systemdRunArgs(
  unit: string,
  command: string[],
  options: SystemdRunOptions = {},
): string[] {
  const args = ["--unit", unit, "--collect", "--pipe", "--quiet", "--wait"];
  if (options.memoryMax !== undefined) args.push("--property", `MemoryMax=${options.memoryMax}`);
  if (options.runtimeMaxSec !== undefined) {
    args.push("--property", `RuntimeMaxSec=${Math.max(1, Math.ceil(options.runtimeMaxSec))}`);
  }
  for (const [name, value] of Object.entries(options.env ?? {})) {
    args.push(`--setenv=${name}=${value}`);
  }
  // A keep's loader needs no new privileges and dies with its whole cgroup.
  args.push("--property", "NoNewPrivileges=yes", "--property", "KillMode=control-group");
  args.push("--", ...command);
  return args;
}

/** Stops a unit (`systemctl stop`), ignoring a unit that no longer exists. */
export async function stopUnit(unit: string): Promise<void> {
  try {
    await new Deno.Command("systemctl", {
      args: ["stop", "--no-block", unit],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
  } catch { /* systemctl missing: nothing to stop */ }
}
