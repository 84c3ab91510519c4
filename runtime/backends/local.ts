/**
 * The backends `enarx run` runs in this very process (those with a
 * `launchLocal`), without loading the whole registry: `enarx run` starts
 * faster for every module it does not load. The list is the registry's
 * `localBackends()` (tests/backends/registry_test.ts checks that they are
 * equal). VM backends (kvm, sev) are named here too, without their
 * modules: `enarx run` starts their keeps through a local keepmgr
 * (runtime/client/local_keep_run.ts). Any other name is handed to the
 * registry, which says why it cannot run.
 *
 * @module
 */
import type { Backend } from "./backend.ts";
import { nilBackend } from "./nil.ts";
// The in-process keeps run workloads with runtime/wasm/workload.ts, which
// nil.ts loads only when a keep runs (the registry must not pull in the
// wasmtime bindings). `enarx run` always runs one: loaded with this module,
// Deno prepares and instantiates one module graph instead of two.
import "../wasm/workload.ts";
import type * as Registry from "./mod.ts";

// A specifier in a variable: `deno run` reads every literal dynamic import at
// start-up (the string resolves against this module all the same).
const REGISTRY = "./mod.ts";

const LOCAL: readonly Backend[] = [nilBackend];

/**
 * The backends whose keeps `enarx run` starts through a local keepmgr,
 * strongest first: the registry's launching backends without an in-process
 * keep (tests/backends/registry_test.ts checks that they are equal).
 */
const THROUGH_KEEPMGR: readonly string[] = ["sev", "kvm"];

/** The backends whose keeps `enarx run` starts through a local keepmgr (kvm, sev). */
export function keepmgrRunBackends(): readonly string[] {
  return THROUGH_KEEPMGR;
}

/** The backends `enarx run` runs in-process, strongest first (the registry's `localBackends()`). */
export function runnableBackends(): readonly Backend[] {
  return LOCAL;
}

/**
 * The backend `enarx run --backend NAME` uses; `auto` is the strongest
 * local one. Other names get the registry's error (unavailable, or usage for
 * a name enarx does not know).
 */
export async function runnableBackend(name: string): Promise<Backend> {
  const found = name === "auto" ? LOCAL[0] : LOCAL.find((b) => b.name === name);
  if (found !== undefined) return found;
  const { localBackend } = await import(REGISTRY) as typeof Registry;
  return localBackend(name);
}
