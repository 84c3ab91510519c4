/**
 * The supervisor of keepmgr: starts one keepldr per keep (a supervised child
 * process or a transient systemd unit), relays the deploy protocol's frames
 * to and from it, moves the keep through its states as the frames arrive,
 * enforces the step, client and lifetime timeouts, watches the process end,
 * and frees everything a keep held: timers, forward, process, pipes, files.
 * It also stops keeps left running by a keepmgr that crashed. Which keeps
 * exist is the table's (keep_table.ts).
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import { FrameReader, FrameWriter } from "../protocol/frames.ts";
import {
  type DeliverKeyRequest,
  type EvidenceFrame,
  type KeepState,
  type ListeningFrame,
  parseUpstreamFrame,
  type ServicesFrame,
} from "../protocol/messages.ts";
import { TcpForward } from "./forward.ts";
import { KEEP_ID_ARG, type KeepProcess, killGroup } from "./keepldr.ts";
import {
  isActive,
  type KeepEntry,
  KeepError,
  type KeepRecord,
  type KeepTable,
} from "./keep_table.ts";
import { stopUnit } from "./systemd.ts";
import { processStartTime } from "./host/hosted_keep.ts";
import { KeepServices, OutputLog, type ServicePorts } from "./services/mod.ts";
import { SOCKET_BACKENDS } from "../keep/deployed_sockets.ts";

/** How long a forward may stay idle, relaying a keep's last answer, after the keep failed. */
const KEEP_ERROR_DRAIN_MS = 2_000;

/** A structured log function: level, message, fields. */
export type KeepLog = (
  level: "debug" | "info" | "warn" | "error",
  msg: string,
  fields?: Record<string, unknown>,
) => void;

/**
 * Starts a keep: keepmgr hosting it (host/keep_host.ts), `launchKeepldr`, or
 * what a test substitutes. The launcher makes the work directory it uses
 * (mode 0700); one that chose another (a warm keep's) says so in `workDir`.
 */
export type KeepLauncher = (
  keepId: string,
  options: { workDir: string; backend: string },
) => KeepProcess | Promise<KeepProcess & { workDir?: string }>;

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
}

/** A keep of the table with what the supervisor holds for it. */
export interface SupervisedKeep extends KeepEntry {
  /** Its keepldr. */
  proc?: KeepProcess;
  /** Frames to keepldr. */
  writer?: FrameWriter;
  /** Frames from keepldr. */
  reader?: FrameReader;
  /** The TCP forward clients connect through. */
  forward?: TcpForward;
  /** Whether the sealed key was relayed (only once). */
  keyDelivered: boolean;
  /** Who waits for the evidence frame. */
  evidence?: Waiter<EvidenceFrame>;
  /** Who waits for the listening frame. */
  listening?: Waiter<ListeningFrame>;
  /** Timers to clear when the keep ends. */
  timers: Set<ReturnType<typeof setTimeout>>;
  /** Settles when its launch has finished (successfully or not). */
  launched?: Promise<void>;
  /** The forwards to its workload's `listen` sockets. */
  services?: KeepServices;
  /** A detached workload's last output. */
  output?: OutputLog;
}

/** A table entry made ready for the supervisor. */
export function supervisedKeep(entry: KeepEntry): SupervisedKeep {
  return { ...entry, keyDelivered: false, timers: new Set() };
}

/** Options of {@link KeepSupervisor}. */
export interface KeepSupervisorOptions {
  /** Starts a keepldr. */
  launcher: KeepLauncher;
  /** Per-keep memory limit in bytes, sent in hello.limits. */
  keepMemory?: number;
  /** Per-keep lifetime in milliseconds, sent in hello.limits. */
  keepTimeoutMs: number;
  /** Time for the keep to answer one step (evidence, listening). */
  stepTimeoutMs: number;
  /** Time the keep waits for the client (key, workload). */
  clientTimeoutMs: number;
  /** Address the forwards listen on (default 127.0.0.1). */
  forwardHostname?: string;
  /** The host ports for keeps' services (`--service-ports`); none: services are refused. */
  servicePorts?: ServicePorts;
  /** Structured log. */
  log: KeepLog;
}

/** Runs the keeps of one {@link KeepTable}. */
export class KeepSupervisor {
  #table: KeepTable<SupervisedKeep>;
  #options: KeepSupervisorOptions;
  #log: KeepLog;

  /** Supervises the keeps of `table`. */
  constructor(table: KeepTable<SupervisedKeep>, options: KeepSupervisorOptions) {
    this.#table = table;
    this.#options = options;
    this.#log = options.log;
  }

  /**
   * Starts keepldr for a newly admitted keep, sends hello with the client's
   * nonce and the limits, and waits for the evidence; the keep then waits
   * for its key. Throws KeepError `timeout` (504) or `keep-failed` (502).
   */
  async attest(keep: SupervisedKeep, nonce: Uint8Array): Promise<EvidenceFrame> {
    const evidence = new Promise<EvidenceFrame>((resolve, reject) => {
      keep.evidence = { resolve, reject };
    });
    // A DELETE or a shutdown may fail the keep while it is still being
    // launched, before anyone awaits the evidence: that rejection is handled
    // here and seen again by the wait below.
    evidence.catch(() => {});
    const launching = this.#launch(keep);
    // Freeing the keep waits for its launch, so that a process started after
    // the keep failed is still stopped and its record still removed.
    keep.launched = launching.then(() => {}, () => {});
    try {
      await launching;
      if (keep.state !== "created") throw new Error(keep.reason ?? "the keep ended");
      keep.state = "attesting";
      const limits: { memory?: number; timeout_ms: number } = {
        timeout_ms: this.#options.keepTimeoutMs,
      };
      if (this.#options.keepMemory !== undefined) limits.memory = this.#options.keepMemory;
      await keep.writer!.write({
        t: "hello",
        v: 1,
        keep: keep.id,
        backend: keep.backend,
        nonce,
        limits,
      });
    } catch (error) {
      this.fail(keep, `cannot start keepldr: ${error instanceof Error ? error.message : error}`);
    }
    const frame = await this.#withTimeout(keep, evidence, "evidence");
    keep.state = "waiting-for-key";
    this.#log("info", "keep attested", { keep: keep.id });
    this.#timer(keep, this.#options.clientTimeoutMs, () => {
      if (keep.state === "waiting-for-key" && !keep.keyDelivered) {
        this.fail(keep, `no key delivered within ${this.#options.clientTimeoutMs} ms`);
      }
    });
    return frame;
  }

  /**
   * Relays the sealed key, waits until the keep listens, and opens a TCP
   * forward to it; returns the forward's port. Throws KeepError:
   * `wrong-state` (409), `timeout` (504), `keep-failed` (502).
   */
  async deliverKey(keep: SupervisedKeep, request: DeliverKeyRequest): Promise<number> {
    if (keep.state !== "waiting-for-key" || keep.keyDelivered) {
      throw new KeepError(
        "wrong-state",
        `Keep "${keep.id}" is ${
          keep.keyDelivered ? "already given its key" : `in state "${keep.state}"`
        }, not waiting for a key; create a new keep`,
        409,
      );
    }
    keep.keyDelivered = true;
    const listening = new Promise<ListeningFrame>((resolve, reject) => {
      keep.listening = { resolve, reject };
    });
    keep.writer!.write({ t: "sealed-key", enc: request.enc, ct: request.ct }).catch((error) =>
      this.fail(keep, `cannot send the sealed key: ${error.message}`)
    );
    const frame = await this.#withTimeout(keep, listening, "listening");
    let forward: TcpForward;
    try {
      forward = keep.forward = TcpForward.open({
        hostname: this.#options.forwardHostname ?? "127.0.0.1",
        targetPort: frame.port,
      });
    } catch (error) {
      this.fail(
        keep,
        `cannot open the forward: ${error instanceof Error ? error.message : error}`,
      );
      throw new KeepError("keep-failed", `Keep "${keep.id}" failed: cannot open its forward`, 502);
    }
    keep.state = "waiting-for-workload";
    this.#log("info", "keep listening", { keep: keep.id, port: forward.port });
    this.#timer(keep, this.#options.clientTimeoutMs, () => {
      if (keep.state === "waiting-for-workload") {
        this.fail(keep, `no workload arrived within ${this.#options.clientTimeoutMs} ms`);
      }
    });
    return forward.port;
  }

  /** Ends keep `keep` as `failed` with `reason` (nothing if it already ended) and frees it. */
  fail(keep: SupervisedKeep, reason: string): void {
    this.#finish(keep, "failed", reason);
  }

  /**
   * Stops what a record left by an earlier keepmgr names: its systemd unit,
   * and its keepldr's process group if that process is still that keep's
   * keepldr (a reused pid is never killed).
   */
  async reap(record: KeepRecord): Promise<void> {
    if (typeof record.unit === "string") await stopUnit(record.unit);
    if (typeof record.pid === "number" && isOurKeep(record)) {
      killGroup(record.pid, "SIGKILL");
      try {
        Deno.kill(record.pid, "SIGKILL");
      } catch { /* gone */ }
      this.#log("warn", "stopped a keep left by an earlier keepmgr", {
        keep: record.keep,
        pid: record.pid,
      });
    } else {
      this.#log("info", "forgot a keep left by an earlier keepmgr", { keep: record.keep });
    }
  }

  /** Starts the keepldr, records it, and starts reading its frames, output and exit. */
  async #launch(keep: SupervisedKeep): Promise<void> {
    if (!isActive(keep.state)) return; // deleted meanwhile: start nothing
    const proc = await this.#options.launcher(keep.id, {
      workDir: keep.workDir,
      backend: keep.backend,
    });
    keep.proc = proc;
    if ("workDir" in proc && proc.workDir !== undefined) keep.workDir = proc.workDir;
    await this.#table.writeRecord({
      keep: keep.id,
      pid: proc.pid,
      started: proc.pid === undefined ? undefined : processStartTime(proc.pid),
      unit: proc.unit,
      workDir: keep.workDir,
      created: keep.created,
    });
    keep.writer = new FrameWriter(proc.stdin);
    keep.reader = new FrameReader(proc.stdout, { peer: "keepldr" });
    const pumping = this.#pumpFrames(keep);
    this.#pumpStderr(keep, proc.stderr);
    proc.status.then(async (s) => {
      // Its last frames ("exited") may still be in the pipe: read them first.
      await Promise.race([pumping, delay(1_000)]);
      const how = s.signal !== null ? `was killed by ${s.signal}` : `exited with status ${s.code}`;
      this.fail(keep, `keepldr ${how}`);
    });
    this.#timer(
      keep,
      this.#options.keepTimeoutMs + 5_000,
      () => this.fail(keep, `keep ran past its time limit of ${this.#options.keepTimeoutMs} ms`),
    );
  }

  #timer(keep: SupervisedKeep, ms: number, fn: () => void): void {
    const id = setTimeout(() => {
      keep.timers.delete(id);
      fn();
    }, ms);
    keep.timers.add(id);
  }

  async #withTimeout<T>(keep: SupervisedKeep, promise: Promise<T>, what: string): Promise<T> {
    let id: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      id = setTimeout(() => {
        const message =
          `Keep "${keep.id}" sent no ${what} within ${this.#options.stepTimeoutMs} ms`;
        reject(new KeepError("timeout", message, 504)); // before fail() rejects `promise`
        this.fail(keep, `timeout waiting for ${what}`);
      }, this.#options.stepTimeoutMs);
    });
    try {
      return await Promise.race([promise, timeout]);
    } finally {
      clearTimeout(id);
    }
  }

  async #pumpFrames(keep: SupervisedKeep): Promise<void> {
    try {
      while (true) {
        const value = await keep.reader!.read();
        if (value === null) break;
        const frame = parseUpstreamFrame(value);
        switch (frame.t) {
          case "evidence":
            if (keep.state !== "attesting") throw unexpected(frame.t, keep.state);
            keep.evidence?.resolve(frame);
            break;
          case "listening":
            if (keep.state !== "waiting-for-key" || !keep.keyDelivered) {
              throw unexpected(frame.t, keep.state);
            }
            keep.listening?.resolve(frame);
            break;
          case "running":
            if (keep.state !== "waiting-for-workload") throw unexpected(frame.t, keep.state);
            keep.state = "running";
            // The keep has its one workload: nobody else needs its port.
            keep.forward?.stopAccepting();
            this.#log("info", "keep running", { keep: keep.id });
            break;
          case "services":
            if (keep.state !== "running" || keep.services !== undefined) {
              throw unexpected(frame.t, keep.state);
            }
            if (!this.#openServices(keep, frame)) return;
            break;
          case "output":
            if (keep.state !== "running") throw unexpected(frame.t, keep.state);
            (keep.output ??= new OutputLog()).append(frame.stream, frame.data);
            break;
          case "exited":
            this.#finish(keep, "exited", frame.reason, frame.status);
            return;
          case "error":
            // The keep may have just answered its client (a refused upload,
            // 413): let that answer through the forward before closing it.
            this.#finish(keep, "failed", `${frame.code}: ${frame.message}`, undefined, {
              drainIdleMs: KEEP_ERROR_DRAIN_MS,
            });
            return;
        }
      }
    } catch (error) {
      this.fail(keep, `protocol error: ${error instanceof Error ? error.message : error}`);
    }
  }

  /** Forwards host ports to the keep's services; false (the keep failed) when it cannot. */
  #openServices(keep: SupervisedKeep, frame: ServicesFrame): boolean {
    const ports = this.#options.servicePorts;
    const services = new KeepServices(
      ports!,
      this.#options.forwardHostname ?? "127.0.0.1",
    );
    try {
      if (ports === undefined) {
        throw new KeepError("no-free-port", "This keepmgr forwards no service ports", 503);
      }
      // The keep refuses this itself; a keep that does not is not trusted to.
      if (!SOCKET_BACKENDS.includes(keep.backend)) {
        throw new KeepError(
          "sockets-unsupported-backend",
          `A ${keep.backend} keep reported services; only ${
            SOCKET_BACKENDS.join(", ")
          } keeps' are forwarded`,
          400,
        );
      }
      keep.endpoints = services.open(frame, keep.id);
    } catch (error) {
      const e = error instanceof EnarxError
        ? error
        : new KeepError("service-failed", String(error), 502);
      this.#finish(keep, "failed", `${e.code}: ${e.message}`);
      return false;
    }
    keep.services = services;
    this.#log("info", "keep services", { keep: keep.id, endpoints: keep.endpoints });
    return true;
  }

  async #pumpStderr(keep: SupervisedKeep, stream: ReadableStream<Uint8Array>): Promise<void> {
    let pending = "";
    try {
      const decoder = new TextDecoder();
      for await (const chunk of stream) {
        pending += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          if (line.length > 0) this.#log("info", "keep output", { keep: keep.id, line });
        }
        if (pending.length > 4096) {
          this.#log("info", "keep output", { keep: keep.id, line: pending });
          pending = "";
        }
      }
    } catch { /* stream closed */ }
    if (pending.length > 0) this.#log("info", "keep output", { keep: keep.id, line: pending });
  }

  #finish(
    keep: SupervisedKeep,
    state: "exited" | "failed",
    reason: string,
    status?: number,
    options: { drainIdleMs?: number } = {},
  ): void {
    if (!isActive(keep.state)) return;
    keep.state = state;
    keep.reason = reason;
    keep.endpoints = undefined; // its ports are given back as it is freed
    if (status !== undefined) keep.status = status;
    this.#log(state === "failed" ? "warn" : "info", `keep ${state}`, {
      keep: keep.id,
      reason,
      status,
    });
    const error = new KeepError("keep-failed", `Keep "${keep.id}" ${state}: ${reason}`, 502);
    keep.evidence?.reject(error);
    keep.listening?.reject(error);
    // Nobody may be waiting on these; a rejection must not go unhandled.
    keep.evidence = undefined;
    keep.listening = undefined;
    keep.freed = this.#free(keep, state === "exited", options.drainIdleMs);
  }

  async #free(keep: SupervisedKeep, graceful: boolean, drainIdleMs?: number): Promise<void> {
    await keep.launched;
    for (const id of keep.timers) clearTimeout(id);
    keep.timers.clear();
    // A keep that exited may have written its last output just now, and its
    // client may read slowly: let the forward relay all of it before closing,
    // for as long as the client keeps reading (it gives up after the client
    // timeout without progress).
    await keep.forward?.close({
      drain: graceful || drainIdleMs !== undefined,
      drainIdleMs: graceful ? this.#options.clientTimeoutMs : drainIdleMs,
    });
    keep.forward = undefined;
    keep.endpoints = undefined;
    await keep.services?.close();
    keep.services = undefined;
    if (keep.proc !== undefined) {
      if (graceful) {
        // The keep said it exited: give keepldr a moment to end by itself.
        await Promise.race([keep.proc.status, delay(2_000)]);
      }
      await keep.writer?.close().catch(() => {});
      await keep.proc.kill();
    }
    keep.reader?.close();
    await this.#table.removeFiles(keep);
  }
}

/**
 * Returns true when the process a record names is still that keep's: the
 * same pid started at the recorded time, or, for a record without a start
 * time, {@link isOurKeepldr}.
 */
export function isOurKeep(record: KeepRecord): boolean {
  if (typeof record.started === "number") {
    return processStartTime(record.pid!) === record.started;
  }
  return isOurKeepldr(record.pid!, record.keep);
}

/**
 * Returns true when process `pid` is the keepldr of keep `keepId`: its
 * command line holds `keepldr` and `--keep <id>` (so a reused pid is never
 * killed by mistake).
 */
export function isOurKeepldr(pid: number, keepId: string): boolean {
  let cmdline: string;
  try {
    cmdline = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
  } catch {
    return false;
  }
  const args = cmdline.split("\0");
  const at = args.indexOf(KEEP_ID_ARG);
  return args.includes("keepldr") && at >= 0 && args[at + 1] === keepId;
}

function unexpected(t: string, state: KeepState): EnarxError {
  return new EnarxError("protocol", `Unexpected "${t}" frame in state "${state}"`, {
    exit: "protocol",
  });
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => {
    setTimeout(resolve, ms);
  });
}
