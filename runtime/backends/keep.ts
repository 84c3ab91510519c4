/**
 * Launching a keep and running a workload in it: the keepldr/wasmldr split.
 * `enarx run` calls {@link runInKeep}; with the nil backend the keep runs in
 * this process. keepmgr drives the same {@link Backend}/{@link Keep}
 * interface for keeps in their own processes.
 *
 * @module
 */
import type { Backend, Keep } from "./backend.ts";
import { nilBackend } from "./nil.ts";
import { EnarxError } from "../errors.ts";
import type { RunOptions, Workload, WorkloadResult } from "../wasm/workload.ts";

/** Backends that `enarx run` can use. */
const RUN_BACKENDS: Record<string, Backend> = { nil: nilBackend };

/** Names of the backends that `enarx run` accepts. */
export function runBackendNames(): string[] {
  return Object.keys(RUN_BACKENDS);
}

/** Backends that enarx knows but cannot launch a keep on yet. */
const NOT_YET_LAUNCHABLE = ["sev", "tdx", "sgx", "kvm"];

/**
 * Finds a backend for `enarx run` by name; `auto` is the strongest one that
 * `enarx run` can launch. Throws EnarxError (unavailable) otherwise.
 */
export function runBackend(name: string): Backend {
  // Strongest first; today only nil launches, so auto is nil.
  const backend = name === "auto" ? RUN_BACKENDS.nil : RUN_BACKENDS[name];
  if (backend !== undefined) return backend;
  if (name === "kvm") {
    throw new EnarxError(
      "backend-unavailable",
      `"enarx run" runs nil keeps only; kvm keeps are launched by a keepmgr: start ` +
        `"enarx keepmgr --backends kvm,nil" and use "enarx deploy --backend kvm"`,
      { exit: "unavailable" },
    );
  }
  const known = NOT_YET_LAUNCHABLE.includes(name);
  throw new EnarxError(
    "backend-unavailable",
    known
      ? `Backend "${name}" cannot launch keeps in this version of enarx; use --backend ${
        runBackendNames().join(" or ")
      } (or auto), and see "enarx platform info" for what this host supports`
      : `Unknown backend "${name}"; use one of: ${[...runBackendNames(), "auto"].join(", ")}`,
    { exit: known ? "unavailable" : "usage" },
  );
}

/** Launches a keep on `backend` (keepldr's part). */
export async function launchKeep(backend: Backend): Promise<Keep> {
  return await backend.launch();
}

/** Launches a keep, runs `workload` in it (wasmldr's part), and tears it down. */
export async function runInKeep(
  backend: Backend,
  workload: Workload,
  options: RunOptions = {},
): Promise<WorkloadResult> {
  await using keep = await launchKeep(backend);
  return await keep.run(workload, options);
}
