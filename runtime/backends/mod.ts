/**
 * The backend registry: every kind of keep enarx knows, strongest first
 * (the order `--backend auto` tries them in). Each backend is one module
 * implementing {@link Backend} (backend.ts); every list of backend names in
 * enarx derives from {@link backends}: platform info's backends, the ones
 * keepldr launches, the ones `enarx run` runs, the ones a client may ask a
 * keepmgr for (runtime/protocol/messages.ts). Adding a backend is adding
 * its module here.
 *
 * Launching goes through the same interface everywhere. keepldr asks the
 * registry for the hello frame's backend and calls its `launch`: a keep
 * whose wasmldr speaks frames on stdio (a nil keep is an `enarx wasmldr`
 * process, a kvm keep a QEMU VM). `enarx run` asks the registry too, and
 * calls `launchLocal`: the keep that runs a workload in this very process.
 * Only nil has one, because a nil keep adds no isolation that a separate
 * process would make real for a local run, and starting one would cost
 * `enarx run` its start-up time; other backends' keeps are launched by a
 * keepmgr, and `enarx run` says so.
 *
 * The backend modules are small: what they need only to launch (the kvm
 * image builder, the measurement) or only to judge a host (the kernel
 * bindings behind platform/judge.ts) loads when used, so `enarx run`
 * loads no more than it runs.
 *
 * @module
 */
import type { Backend } from "./backend.ts";
import { nilBackend } from "./nil.ts";
import { kvmBackend } from "./kvm.ts";
import { sevBackend } from "./sev.ts";
import { tdxBackend } from "./tdx.ts";
import { sgxBackend } from "./sgx.ts";
import { EnarxError } from "../errors.ts";

export type {
  Backend,
  EvidenceKind,
  EvidenceSource,
  Keep,
  KeepHandle,
  LaunchOptions,
} from "./backend.ts";

/** Every backend, strongest first. */
const REGISTRY: readonly Backend[] = [sevBackend, tdxBackend, sgxBackend, kvmBackend, nilBackend];

/** Every backend, strongest first: the order `--backend auto` tries them in. */
export function backends(): readonly Backend[] {
  return REGISTRY;
}

/** The names of every backend, strongest first. */
export function backendNames(): string[] {
  return REGISTRY.map((b) => b.name);
}

/** The backend named `name`, or undefined when enarx knows none by that name. */
export function backendByName(name: string): Backend | undefined {
  return REGISTRY.find((b) => b.name === name);
}

/** Backends whose keeps keepldr launches (this enarx implements their `launch`). */
export function launchingBackends(): Backend[] {
  return REGISTRY.filter((b) => b.launches);
}

/** Backends that `enarx run` runs: those with an in-process keep. */
export function localBackends(): Backend[] {
  return REGISTRY.filter((b) => b.launchLocal !== undefined);
}

/**
 * Backends a client may ask a keepmgr for: those whose keeps can give
 * evidence (wasmldr knows how to get it inside them), weakest first.
 */
export function attestableBackends(): Backend[] {
  return REGISTRY.filter((b) => b.evidenceSource !== undefined).reverse();
}

/**
 * Finds a backend for `enarx run` by name; `auto` is the strongest one that
 * `enarx run` can launch. Throws EnarxError (unavailable, or usage for a
 * name enarx does not know) otherwise.
 */
export function localBackend(name: string): Backend {
  const local = localBackends();
  const backend = name === "auto" ? local[0] : local.find((b) => b.name === name);
  if (backend !== undefined) return backend;
  const known = backendByName(name);
  const names = local.map((b) => b.name);
  if (known?.launches) {
    throw new EnarxError(
      "backend-unavailable",
      `${name} keeps do not run in this process: "enarx run --backend ${name}" starts one ` +
        `through a local keepmgr, "enarx deploy --backend ${name}" through a host's keepmgr`,
      { exit: "unavailable" },
    );
  }
  throw new EnarxError(
    "backend-unavailable",
    known !== undefined
      ? `Backend "${name}" cannot launch keeps in this version of enarx; use --backend ${
        names.join(" or ")
      } (or auto), and see "enarx platform info" for what this host supports`
      : `Unknown backend "${name}"; use one of: ${[...names, "auto"].join(", ")}`,
    { exit: known !== undefined ? "unavailable" : "usage" },
  );
}
