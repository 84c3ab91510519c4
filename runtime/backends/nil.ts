/**
 * The `nil` backend: no TEE and no isolation beyond wasmtime's own and the
 * process's. For keepmgr, a keep is a separate `enarx wasmldr` process
 * (re-executing this same program with fewer Deno permissions where the
 * runtime allows it); for `enarx run`, wasmldr's part
 * (runtime/wasm/workload.ts) runs in this process. Evidence is simulated
 * SNP (snp-sim), signed by keepldr on the host over the measurement of what
 * the keep executes (runtime/keep/measurement.ts).
 *
 * @module
 */
import type { Backend, Keep, KeepHandle, LaunchOptions } from "./backend.ts";
import type { RunOptions, Workload, WorkloadResult } from "../wasm/workload.ts";
import { EnarxError } from "../errors.ts";
import type * as SelfCommand from "../keepmgr/self_command.ts";
import type * as Measurement from "../keep/measurement.ts";
import type * as SocketShim from "../wasm/socket_shim.ts";
import type * as TlsSocketPaths from "../wasm/tls_socket_paths.ts";

// Specifiers in variables: `deno run` reads every literal dynamic import at
// start-up, and `enarx run` needs neither module (compile.sh includes both).
// They resolve against this module as literals would.
const SELF_COMMAND = "../keepmgr/self_command.ts";
const MEASUREMENT = "../keep/measurement.ts";
const SOCKET_SHIM = "../wasm/socket_shim.ts";
const TLS_SOCKET_PATHS = "../wasm/tls_socket_paths.ts";

class InProcessKeep implements Keep {
  readonly backend = "nil";
  #used = false;
  #closed = false;

  async run(workload: Workload, options: RunOptions): Promise<WorkloadResult> {
    if (this.#closed) {
      throw new EnarxError("keep-closed", "The keep is closed", { exit: "internal" });
    }
    if (this.#used) {
      throw new EnarxError("keep-used", "A keep runs one workload only", { exit: "internal" });
    }
    this.#used = true;
    // Loaded here, not at the top: the registry (and so keepmgr and the
    // deploy client, which only need backend names) must not pull in the
    // wasmtime bindings.
    const { runWorkload } = await import("../wasm/workload.ts");
    return await runWorkload(workload, options);
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * The narrow permissions of a nil keep: its code, libwasmtime (the only
 * library it may load) and the module cache; never the simulator's keys.
 */
async function nilKeepPermissions(workDir: string | undefined): Promise<string[]> {
  // Loaded here: the registry must not pull in the wasmtime bindings.
  const { libwasmtimePath } = await import("../wasm/libwasmtime_path.ts");
  const { defaultModuleCacheDir } = await import("../wasm/module_cache.ts");
  // Sockets: the keep may not run a compiler, so the host builds the shim
  // (once; without a compiler the keep says so when a workload needs it).
  const { buildSocketShim } = await import(SOCKET_SHIM) as typeof SocketShim;
  const shim = await buildSocketShim().catch(() => undefined);
  const read = [defaultModuleCacheDir(), shim]
    .filter((p): p is string => p !== undefined && p !== "");
  const libwasmtime = await libwasmtimePath().catch(() => undefined);
  const { wasmldrPermissions } = await import(SELF_COMMAND) as typeof SelfCommand;
  return wasmldrPermissions(workDir, { libwasmtime, read });
}

/** util-linux's setsid(1) where this host has it (looked up once). */
let setsidPath: string | null | undefined;

function findSetsid(): string | null {
  if (setsidPath === undefined) {
    setsidPath = ["/usr/bin/setsid", "/bin/setsid"].find((path) => {
      try {
        const info = Deno.statSync(path);
        return info.isFile && ((info.mode ?? 0) & 0o111) !== 0;
      } catch {
        return false;
      }
    }) ?? null;
  }
  return setsidPath;
}

/**
 * `command` started in a session (so a process group) of its own. Deno's
 * `detached: true` calls setsid() between fork and exec, which rules out
 * posix_spawn: keepmgr's whole address space is forked for every keep,
 * about 6 ms of its CPU with a few hundred MB of heap. setsid(1), started
 * by posix_spawn, makes the same setsid() call and execs the command in the
 * same process (it forks only when it is a group leader, which a spawned
 * child is not): about 0.3 ms. Deno's way remains where there is no setsid(1).
 */
export function sessionCommand(command: string[]): { command: string[]; detached: boolean } {
  const setsid = findSetsid();
  return setsid === null
    ? { command, detached: true }
    : { command: [setsid, ...command], detached: false };
}

/** Starts wasmldr as a child process with frames on its stdin/stdout. */
async function launchProcessKeep(options: LaunchOptions): Promise<KeepHandle> {
  const permissions = await nilKeepPermissions(options.workDir);
  // The simulated platform's keys are the host's: the keep may not read them.
  const simDir = Deno.env.get("ENARX_SNP_SIM_DIR");
  if (simDir !== undefined && simDir !== "") permissions.push(`--deny-read=${simDir}`);
  const { selfCommand } = await import(SELF_COMMAND) as typeof SelfCommand;
  const command = options.wasmldrCommand ??
    selfCommand("wasmldr", [], { permissions });
  const env: Record<string, string> = {};
  if (options.workDir !== undefined) {
    env.TMPDIR = options.workDir;
    // The sandbox grants exactly the TLS socket paths of this directory.
    const { keepTlsSocketDir } = await import(SELF_COMMAND) as typeof SelfCommand;
    const { TLS_SOCKET_DIR_ENV } = await import(TLS_SOCKET_PATHS) as typeof TlsSocketPaths;
    env[TLS_SOCKET_DIR_ENV] = keepTlsSocketDir(options.workDir);
  }
  const launch = options.detached ? sessionCommand(command) : { command, detached: false };
  let child: Deno.ChildProcess;
  try {
    // Through setsid(1) a missing program would fail only after the spawn.
    if (launch.command !== command && command[0].includes("/")) Deno.statSync(command[0]);
    child = new Deno.Command(launch.command[0], {
      args: launch.command.slice(1),
      stdin: "piped",
      stdout: "piped",
      stderr: options.pipeStderr ? "piped" : "inherit",
      env,
      detached: launch.detached,
    }).spawn();
  } catch (error) {
    throw new EnarxError(
      "keep-launch",
      `Cannot start the keep's wasmldr "${command[0]}": ${error}`,
      { exit: "unavailable" },
    );
  }
  return {
    stdin: child.stdin,
    stdout: child.stdout,
    status: child.status,
    kill: (signal?: Deno.Signal) => child.kill(signal),
    pid: child.pid,
    stderr: options.pipeStderr ? child.stderr : undefined,
    what: "wasmldr",
    // The files `enarx wasmldr` executes: this same program's.
    measurement: nilMeasurement,
  };
}

/**
 * The measurement of a nil keep (runtime/keep/measurement.ts), loaded when
 * asked for so that the registry stays light for `enarx run`.
 */
async function nilMeasurement(): Promise<Uint8Array> {
  const { wasmldrMeasurement } = await import(MEASUREMENT) as typeof Measurement;
  return await wasmldrMeasurement();
}

/** The nil backend. */
export const nilBackend: Backend = {
  name: "nil",
  description:
    "An OS process: its isolation is the kernel's process boundary (FFI to libwasmtime voids Deno's sandbox); no hardware isolation",
  evidence: "snp-sim",
  evidenceSource: "snp-sim",
  // One check that always passes, written out as CheckList would build it
  // (runtime/platform/check_list.ts, not loaded: `enarx run` needs no checks).
  checks: () => [{
    id: "nil.process",
    title: "Keeps run as local OS processes (not sandboxed)",
    status: "pass",
    required: true,
    detail: "Always available; evidence is simulated SNP (snp-sim) and proves nothing " +
      "about hardware",
    errno: null,
    remedy: null,
  }],
  launchable: () => true,
  launches: true,
  launch: launchProcessKeep,
  launchLocal: () => Promise.resolve(new InProcessKeep()),
  measurement: nilMeasurement,
};
