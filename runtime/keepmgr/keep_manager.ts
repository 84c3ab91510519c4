/**
 * keepmgr's keeps, as one object for the HTTP layer (http.ts): the keep
 * table (keep_table.ts: records, states, limits, persistence, listing)
 * composed with the supervisor (keep_supervisor.ts: keepldr processes,
 * frames, timeouts, cleanup). {@link KeepManager} only orders their calls
 * for each operation of the API.
 *
 * @module
 */
import type {
  CreateKeepRequest,
  CreateKeepResponse,
  DeliverKeyRequest,
  DeliverKeyResponse,
  KeepLogsResponse,
  KeepSummary,
} from "../protocol/messages.ts";
import { type PortRange, ServicePorts } from "./services/mod.ts";
import { HPKE_SUITE } from "../protocol/messages.ts";
import { launchKeepldr } from "./keepldr.ts";
import { KeepHost } from "./host/keep_host.ts";
import { StateDirLock } from "./state_lock.ts";
import { isActive, KeepTable, summarize } from "./keep_table.ts";
import {
  type KeepLauncher,
  type KeepLog,
  KeepSupervisor,
  type SupervisedKeep,
  supervisedKeep,
} from "./keep_supervisor.ts";

export { KeepError } from "./keep_table.ts";
export { isOurKeep, isOurKeepldr, type KeepLauncher, type KeepLog } from "./keep_supervisor.ts";

/** Options of {@link KeepManager.open}. */
export interface KeepManagerOptions {
  /** Directory for records of running keeps and their work directories. */
  stateDir: string;
  /** Backends offered (default `["nil"]`); `auto` picks the first. */
  backends?: string[];
  /** Keeps alive at once (default 64); more are refused with `too-many-keeps`. */
  maxKeeps?: number;
  /** Per-keep memory limit in bytes, sent in hello.limits. */
  keepMemory?: number;
  /** Most memory the live keeps may reserve together; creates past it get `not-enough-memory`. */
  totalKeepMemory?: number;
  /** Per-keep lifetime in milliseconds (default 10 minutes), sent in hello.limits. */
  keepTimeoutMs?: number;
  /** Time for the keep to answer one step (evidence, listening); default 30 s. */
  stepTimeoutMs?: number;
  /** Time the keep waits for the client (key, workload); default 120 s. */
  clientTimeoutMs?: number;
  /** Address the forwards listen on (default 127.0.0.1). */
  forwardHostname?: string;
  /** Host ports forwarded to keeps' `listen` sockets (default 20000-20999). */
  servicePorts?: PortRange;
  /** Run keeps as transient systemd units. */
  systemd?: boolean;
  /** Command that runs wasmldr in place of `enarx wasmldr` (tests). */
  wasmldrCommand?: string[];
  /** Command that runs keepldr in place of `enarx keepldr` (tests); implies {@link keepldrProcess}. */
  keepldrCommand?: string[];
  /**
   * Start a keepldr process per keep (as with systemd, which implies it)
   * instead of keepmgr hosting keepldr's part itself (host/keep_host.ts).
   */
  keepldrProcess?: boolean;
  /**
   * Keeps launched ahead per backend, waiting for a deploy (default none);
   * only where keepmgr hosts its keeps.
   */
  warmKeeps?: Record<string, number>;
  /** Finished keeps remembered for list/show (default 256). */
  maxFinished?: number;
  /** Structured log (default: none). */
  log?: KeepLog;
}

/**
 * The keeps of a keepmgr. Use {@link KeepManager.open}, which also cleans up
 * keeps left running by a keepmgr that crashed, and {@link close} to stop
 * every keep.
 */
export class KeepManager {
  #table: KeepTable<SupervisedKeep>;
  #supervisor: KeepSupervisor;
  #log: KeepLog;
  #lock: StateDirLock | undefined;
  #host: KeepHost | undefined;

  private constructor(options: KeepManagerOptions, launcher?: KeepLauncher) {
    const keepTimeoutMs = options.keepTimeoutMs ?? 10 * 60_000;
    this.#log = options.log ?? (() => {});
    this.#table = new KeepTable({
      stateDir: options.stateDir,
      backends: options.backends ?? ["nil"],
      maxKeeps: options.maxKeeps ?? 64,
      maxFinished: options.maxFinished ?? 256,
      keepMemory: options.keepMemory,
      totalKeepMemory: options.totalKeepMemory,
    });
    if (
      launcher === undefined && !options.systemd && !options.keepldrProcess &&
      options.keepldrCommand === undefined
    ) {
      this.#host = new KeepHost({
        workRoot: this.#table.workRoot,
        warmKeeps: options.warmKeeps,
        wasmldrCommand: options.wasmldrCommand,
        log: this.#log,
      });
    }
    const host = this.#host;
    this.#supervisor = new KeepSupervisor(this.#table, {
      launcher: launcher ?? (host !== undefined ? (id, o) => host.launch(id, o) : undefined) ??
        (async (id, { workDir }) => {
          await Deno.mkdir(workDir, { recursive: true, mode: 0o700 });
          return launchKeepldr(id, {
            workDir,
            systemd: options.systemd,
            memoryMax: options.keepMemory,
            runtimeMaxSec: keepTimeoutMs / 1000 + 10,
            wasmldrCommand: options.wasmldrCommand,
            keepldrCommand: options.keepldrCommand,
          });
        }),
      keepMemory: options.keepMemory,
      keepTimeoutMs,
      stepTimeoutMs: options.stepTimeoutMs ?? 30_000,
      clientTimeoutMs: options.clientTimeoutMs ?? 120_000,
      forwardHostname: options.forwardHostname,
      servicePorts: new ServicePorts(
        options.servicePorts ?? { first: 20000, last: 20999 },
        options.forwardHostname ?? "127.0.0.1",
      ),
      log: this.#log,
    });
  }

  /**
   * Opens the keep table: creates and locks the state directory (EnarxError
   * `state-dir-locked`, exit 69, while another keepmgr uses it), and stops and forgets
   * keeps recorded there by an earlier keepmgr (only processes whose command
   * line shows they are that keep's keepldr are killed).
   */
  static async open(options: KeepManagerOptions, launcher?: KeepLauncher): Promise<KeepManager> {
    const manager = new KeepManager(options, launcher);
    await Deno.mkdir(options.stateDir, { recursive: true, mode: 0o700 });
    // Before any record is read: the records of a live keepmgr are not leftovers.
    manager.#lock = await StateDirLock.acquire(options.stateDir);
    try {
      await manager.#table.open((record) => manager.#supervisor.reap(record));
    } catch (error) {
      manager.#lock.release();
      throw error;
    }
    manager.#host?.fill();
    return manager;
  }

  /** Backends offered. */
  get backends(): string[] {
    return this.#table.backends;
  }

  /** Number of keeps that are alive (not exited or failed). */
  get activeCount(): number {
    return this.#table.activeCount;
  }

  /** Process ids of the keeps' keepldrs (or hosted keeps' own) alive now (tests, diagnostics). */
  get pids(): number[] {
    const pids: number[] = [];
    for (const keep of this.#table.entries()) {
      const pid = keep.proc?.pid;
      if (pid !== undefined && isActive(keep.state)) pids.push(pid);
    }
    return pids;
  }

  /** Warm keeps per backend, launched and not yet claimed. */
  get warm(): Record<string, number> {
    return this.#host?.warm ?? {};
  }

  /**
   * Creates a keep: starts its keepldr, sends hello with the client's nonce
   * and the limits, and waits for the evidence. Throws KeepError:
   * `backend-unavailable` (400), `too-many-keeps` (503),
   * `not-enough-memory` (503), `shutting-down` (503), `timeout` (504), `keep-failed` (502).
   */
  async create(request: CreateKeepRequest): Promise<Omit<CreateKeepResponse, "capability">> {
    const keep = this.#table.admit(request.backend, supervisedKeep);
    this.#log("info", "keep created", { keep: keep.id, backend: keep.backend });
    const frame = await this.#supervisor.attest(keep, request.nonce);
    return {
      v: 1,
      keep: keep.id,
      backend: keep.backend,
      evidence: frame.evidence,
      sealing_key: frame.sealing_key,
      suite: HPKE_SUITE,
    };
  }

  /**
   * Relays the sealed key to keep `id`, waits until the keep listens, and
   * opens a TCP forward to it. Throws KeepError: `not-found` (404),
   * `wrong-state` (409), `timeout` (504), `keep-failed` (502).
   */
  async deliverKey(
    id: string,
    request: DeliverKeyRequest,
    options: { connectHost: string },
  ): Promise<DeliverKeyResponse> {
    const port = await this.#supervisor.deliverKey(this.#table.get(id), request);
    return { v: 1, connect: { host: options.connectHost, port } };
  }

  /** Summaries of every keep known, oldest first. */
  list(): KeepSummary[] {
    return this.#table.entries().map(summarize);
  }

  /** The summary of keep `id`; KeepError `not-found` (404) if unknown. */
  show(id: string): KeepSummary {
    return summarize(this.#table.get(id));
  }

  /**
   * The output a detached workload of keep `id` wrote from offset `from` on
   * (what is kept of its last 256 KiB). KeepError `not-found` (404) if unknown.
   */
  logs(id: string, from = 0): KeepLogsResponse {
    const keep = this.#table.get(id);
    return {
      v: 1,
      state: keep.state,
      end: keep.output?.end ?? 0,
      chunks: keep.output?.since(from) ?? [],
    };
  }

  /**
   * Stops keep `id` if it is alive (it becomes `failed`, reason "deleted"),
   * waits until its resources are freed, forgets it and returns its last
   * summary. KeepError `not-found` (404) if unknown.
   */
  async delete(id: string): Promise<KeepSummary> {
    const keep = this.#table.get(id);
    this.#supervisor.fail(keep, "deleted");
    await keep.freed;
    this.#table.forget(id);
    this.#log("info", "keep deleted", { keep: id });
    return summarize(keep);
  }

  /**
   * Refuses new keeps, stops every keep, waits until all are freed, and
   * releases the state directory.
   */
  async close(): Promise<void> {
    this.#table.refuseNew();
    const frees: Promise<void>[] = [];
    for (const keep of this.#table.entries()) {
      this.#supervisor.fail(keep, "keepmgr shutting down");
      if (keep.freed) frees.push(keep.freed);
    }
    await Promise.all(frees);
    await this.#host?.close();
    this.#lock?.release();
    this.#lock = undefined;
  }

  /** Same as {@link close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
