/**
 * Launching a keep and running a workload in it: the keepldr/wasmldr split.
 * `enarx run` calls {@link runInKeep}; with the nil backend the keep runs in
 * this process. keepmgr drives the same {@link Backend}/{@link Keep}
 * interface for keeps in their own processes.
 *
 * @module
 */
import type { Backend, Keep } from "./backend.ts";
import { nilBackend } from "./backends/nil.ts";
import { EnarxError } from "./errors.ts";
import type { RunOptions, Workload, WorkloadResult } from "./workload.ts";

/** Backends that `enarx run` can use. */
const RUN_BACKENDS: Record<string, Backend> = { nil: nilBackend };

/** Names of the backends that `enarx run` accepts. */
export function runBackendNames(): string[] {
  return Object.keys(RUN_BACKENDS);
}

/** Finds a backend for `enarx run` by name; throws EnarxError (unavailable) if unknown. */
export function runBackend(name: string): Backend {
  const backend = RUN_BACKENDS[name];
  if (backend === undefined) {
    throw new EnarxError(
      "backend-unavailable",
      `Backend "${name}" is not available to "enarx run"; use one of: ${
        runBackendNames().join(", ")
      }`,
      { exit: "unavailable" },
    );
  }
  return backend;
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
