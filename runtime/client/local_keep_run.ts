/**
 * `enarx run --backend kvm|sev`: a workload in a VM keep on this machine,
 * the way a deploy reaches one. A local keepmgr (127.0.0.1, a temporary
 * state directory, only the backend asked for) launches the keep through its
 * keepldr; the deploy client verifies the keep's evidence before the module
 * leaves this process (for kvm: simulated evidence, trusted only for that
 * keepmgr's own simulated root, by its fingerprint, as `enarx demo` does;
 * for sev: the hardware's, to AMD's roots), then uploads the workload and
 * streams its output. A host that cannot launch the backend is told so
 * before anything starts, naming each failed check (exit 69).
 *
 * Loaded by cli/run.ts only for these backends, by a computed specifier, so
 * that `enarx run` of a nil keep loads none of it.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import { backendByName, localBackend } from "../backends/mod.ts";
import { defaultImageCacheDir } from "../backends/keep_image.ts";
import { gatherHostFacts } from "../platform/host_facts.ts";
import { evaluatePlatform } from "../platform/info.ts";
import { LocalKeepmgr, localSimulatorDir } from "../keepmgr/local.ts";
import {
  deploy,
  type DeployEndpoint,
  type DeployEvent,
  type DeployResult,
  type DeployTls,
  type DeployWorkload,
} from "./deploy.ts";
import type { Backend } from "../backends/backend.ts";
import type { EnarxConfig } from "../wasm/config.ts";
import { UsageError } from "../errors.ts";

/** Options of {@link runInLocalKeep}. */
export interface LocalKeepRunOptions {
  /** The backend: one whose keeps a keepmgr launches (kvm, sev). */
  backend: string;
  /** Deadline of the whole run (keep start included); past it the status is 124. */
  timeoutMs?: number;
  /** The workload's memory limit in bytes (the keepmgr's --keep-memory; 126 when hit). */
  keepMemoryBytes?: number;
  /** Receives a line of progress for a person (starting the keep, evidence verified). */
  onProgress?: (line: string) => void;
  /** Receives the workload's standard output as it arrives. */
  onStdout?: (chunk: Uint8Array) => void | Promise<void>;
  /** Receives the workload's standard error as it arrives. */
  onStderr?: (chunk: Uint8Array) => void | Promise<void>;
  /** Told where each `listen` socket is reached: a port of the local keepmgr's. */
  onEndpoint?: (endpoint: DeployEndpoint) => void;
}

/** The default names of a VM keep's certificate in `enarx run` (as `enarx run` of a nil keep). */
const RUN_SERVICE_NAMES = ["localhost", "127.0.0.1"];

/**
 * What a VM keep run needs of `config`'s sockets: how many `listen`
 * endpoints to wait for, and the keep's service identity when a socket
 * presents its certificate (`names`: `--service-name`, default localhost
 * and 127.0.0.1). UsageError (64) for names without such a socket.
 */
export function vmRunSockets(
  config: EnarxConfig | undefined,
  names: string[] | undefined,
): { services: number; tls?: DeployTls } {
  const files = config?.files ?? [];
  const services = files.filter((f) => f.kind === "listen").length;
  const presents = files.some((f) =>
    f.prot === "tls" && (f.kind === "listen" || (f.kind === "connect" && f.mtls === true))
  );
  if (!presents) {
    if (names !== undefined && names.length > 0) {
      throw new UsageError(
        `--service-name needs a [[files]] socket with prot = "tls" (kind = "listen", or ` +
          `"connect" with mtls = true) in --wasmcfgfile`,
      );
    }
    return { services };
  }
  return { services, tls: { names: names ?? RUN_SERVICE_NAMES } };
}

/** The backend by name, or the registry's error for one whose keeps no keepmgr launches. */
function launchingBackend(name: string): Backend {
  const backend = backendByName(name);
  if (backend === undefined || !backend.launches || backend.launchLocal !== undefined) {
    localBackend(name); // throws: unknown (64) or not launchable (69)
  }
  return backend!;
}

/**
 * The error for a host that cannot launch `backend`: each failed required
 * check of `enarx platform info` with what was found (exit 69).
 */
export function hostCannotLaunchError(backend: Backend): EnarxError | undefined {
  const facts = gatherHostFacts();
  if (backend.launchable(facts)) return undefined;
  const info = evaluatePlatform(facts).backends.find((b) => b.name === backend.name);
  const failed = (info?.checks ?? []).filter((c) => c.required && c.status === "fail");
  const what = failed.length === 0
    ? "it lacks a piece this backend needs"
    : `missing ${failed.map((c) => `${c.title}: ${c.detail}`).join("; ")}`;
  return new EnarxError(
    "backend-unavailable",
    `Cannot run a ${backend.name} keep on this host: ${what}. "enarx platform info" says how to ` +
      `fix each; "enarx run --backend nil" runs the workload in a local process keep`,
    { exit: "unavailable" },
  );
}

/** A person's line for each deploy step that ends. */
function progressLine(event: DeployEvent, backend: string): string | undefined {
  if (event.kind === "warning") return event.message;
  if (event.kind !== "step-end") return undefined;
  const { step } = event;
  const took = `${(step.ms / 1000).toFixed(1)} s`;
  if (step.failed) return `${step.title}: failed after ${took}`;
  if (step.id === "create") return `${backend} keep started and attested (${took})`;
  if (step.id === "verify") return `evidence verified: ${step.detail ?? "ok"} (${took})`;
  if (step.id === "upload") return `workload uploaded (${took})`;
  return undefined;
}

/**
 * Runs `workload` in a keep of `options.backend` on this machine through a
 * local keepmgr, verifying the keep's evidence first; returns the deploy's
 * result (the workload's status). Throws EnarxError: exit 69 when this host
 * cannot launch the backend, the deploy's errors otherwise.
 */
export async function runInLocalKeep(
  workload: DeployWorkload,
  options: LocalKeepRunOptions,
): Promise<DeployResult> {
  const backend = launchingBackend(options.backend);
  const unavailable = hostCannotLaunchError(backend);
  if (unavailable !== undefined) throw unavailable;
  const progress = options.onProgress ?? (() => {});
  progress(`starting a local keepmgr for a ${backend.name} keep`);
  await using keepmgr = await LocalKeepmgr.start({
    simDir: localSimulatorDir(),
    args: [
      "--backends",
      backend.name,
      // A VM keep under emulation (TCG) on a busy machine can take longer
      // than keepmgr's default 30 s to boot and attest.
      "--step-timeout",
      "120s",
      ...(options.keepMemoryBytes === undefined
        ? []
        : ["--keep-memory", String(options.keepMemoryBytes)]),
    ],
    // The keep image is built once and kept in the cache that `enarx measure` reads.
    env: { ENARX_KVM_CACHE_DIR: defaultImageCacheDir() },
  });
  return await deploy(workload, {
    keepmgr: keepmgr.url,
    keepmgrToken: keepmgr.token,
    backend: backend.name,
    // Simulated evidence only from this very keepmgr's simulator; sev's is the hardware's.
    trustSimulated: backend.evidence === "snp-sim" ? keepmgr.simulatorRoot : undefined,
    timeoutMs: options.timeoutMs,
    onStep: (event) => {
      if (event.kind === "endpoint") options.onEndpoint?.(event.endpoint);
      const line = progressLine(event, backend.name);
      if (line !== undefined) progress(line);
    },
    onStdout: options.onStdout,
    onStderr: options.onStderr,
  });
}
