/**
 * The interface every backend implements (the shape of Enarx's own
 * `Backend` trait): its name, the platform checks that say whether this
 * host can use it, how a keep is launched on it, how the wasmldr inside
 * such a keep gets evidence, and the measurement a client should expect.
 * runtime/backends/mod.ts lists the backends; adding one touches no other.
 *
 * @module
 */
import type { RunOptions, Workload, WorkloadResult } from "../wasm/workload.ts";
import type { PlatformCheck } from "../platform/check_list.ts";
import type { Judge } from "../platform/judge.ts";
import type { HostFacts } from "../platform/host_facts.ts";
import { EnarxError } from "../errors.ts";

/** An in-process keep (`enarx run`): it runs one workload, then is closed. */
export interface Keep {
  /** The backend's name, e.g. `nil`. */
  readonly backend: string;
  /** Runs `workload` inside the keep (wasmldr's part) and says how it ended. */
  run(workload: Workload, options: RunOptions): Promise<WorkloadResult>;
  /** Tears the keep down; safe to call twice. */
  close(): Promise<void>;
  /** Same as close(). */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * A keep launched for keepldr: a process (nil) or a VM (kvm) whose wasmldr
 * speaks length-prefixed frames on `stdin`/`stdout`.
 */
export interface KeepHandle {
  /** Frames to wasmldr. */
  stdin: WritableStream<Uint8Array>;
  /** Frames from wasmldr. */
  stdout: ReadableStream<Uint8Array>;
  /** Resolves when the keep (its process or VM) has ended. */
  status: Promise<Deno.CommandStatus>;
  /** Signals the keep's process. */
  kill(signal?: Deno.Signal): void;
  /** The keep's process id (wasmldr's, or QEMU's), where the backend knows it. */
  pid?: number;
  /**
   * The keep's diagnostics, when {@link LaunchOptions.pipeStderr} asked for
   * them (else they go to this process's standard error).
   */
  stderr?: ReadableStream<Uint8Array>;
  /**
   * The host loopback port that reaches wasmldr's listening port, when the
   * keep's network is not the host's (kvm: QEMU's forward); else undefined.
   */
  hostPort?: number;
  /**
   * Forwards a free port of the host's 127.0.0.1 to each of these ports of
   * the keep's network and returns them, in order, when that network is not
   * the host's (kvm, sev: QEMU's user-net forwards, vm/user_net.ts); else
   * undefined. keepldr uses it for the workload's `services`.
   */
  forwardGuestPorts?: (guestPorts: number[]) => Promise<number[]>;
  /** What the keep is, in an error message: `wasmldr` or `VM (QEMU)`. */
  what: string;
  /**
   * The measurement of what was launched (48 bytes), computed by the same
   * code as `enarx measure`; the host-side simulated platform signs it.
   * Undefined: the backend's {@link Backend.measurement}.
   */
  measurement?: () => Promise<Uint8Array | undefined>;
}

/** Options of {@link Backend.launch}. */
export interface LaunchOptions {
  /** The keep's work directory (its temporary files). */
  workDir?: string;
  /** Command that runs wasmldr instead of `enarx wasmldr` (tests use a fake one). */
  wasmldrCommand?: string[];
  /** Writes a diagnostic line. */
  log: (line: string) => void;
  /**
   * Start the keep's process in a process group of its own, so that
   * signalling the group stops whatever it started (keepmgr hosting the
   * keep itself; a keepldr process is that group's leader instead).
   */
  detached?: boolean;
  /** Hand the keep's standard error to the caller ({@link KeepHandle.stderr}). */
  pipeStderr?: boolean;
}

/**
 * Where a keep's report comes from: `snp-sim` (the simulated SNP platform
 * that keepldr runs on the host, for keeps without a TEE) or `sev-guest`
 * (the SEV-SNP guest's own secure processor). wasmldr asks both through
 * the same guest report device (runtime/keep/report_device.ts).
 */
export type EvidenceSource = "snp-sim" | "sev-guest";

/** The evidence a backend's keeps produce, as `enarx platform info` names it. */
export type EvidenceKind = "snp-sim" | "sev-snp" | "tdx" | "sgx";

/** A kind of keep. */
export interface Backend {
  /** The name given to `--backend`. */
  readonly name: string;
  /** What a keep is on this backend, for a person. */
  readonly description: string;
  /** The evidence its keeps produce. */
  readonly evidence: EvidenceKind;
  /**
   * How wasmldr inside its keep gets evidence; undefined where enarx cannot
   * get it yet (a client cannot ask for such a backend).
   */
  readonly evidenceSource?: EvidenceSource;
  /** This backend's checks of the host, in order (`enarx platform info`). */
  checks(judge: Judge): PlatformCheck[];
  /**
   * True when enarx can launch its keeps on this host today: it implements
   * {@link launch} and the host has what that needs (kvm: QEMU, a kernel),
   * judged from the host's facts (so that the registry loads no probe code).
   */
  launchable(facts: HostFacts): boolean;
  /** Whether this enarx implements {@link launch} at all (keepldr's backends). */
  readonly launches: boolean;
  /** Launches a keep for keepldr (keepldr's part); throws where {@link launches} is false. */
  launch(options: LaunchOptions): Promise<KeepHandle>;
  /**
   * Launches a keep in this process for `enarx run`, where the backend has
   * such a keep (nil); undefined elsewhere.
   */
  launchLocal?(): Promise<Keep>;
  /**
   * The measurement a client should expect of its keeps (48 bytes), or
   * undefined where only the policy can say (TEE hardware).
   */
  measurement(): Promise<Uint8Array | undefined>;
}

/** The error of launching a backend that enarx knows but cannot launch keeps on yet. */
export function notLaunchableYet(name: string): Promise<never> {
  return Promise.reject(
    new EnarxError(
      "backend-unavailable",
      `Backend "${name}" cannot launch keeps in this version of enarx`,
      { exit: "unavailable" },
    ),
  );
}
