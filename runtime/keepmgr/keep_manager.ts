/**
 * The keep table of keepmgr: creates keeps (one keepldr each), relays the
 * deploy protocol's frames, tracks every keep's state, enforces limits,
 * supervises the processes, and frees what a keep held when it ends. The
 * HTTP layer (keepmgr_http.ts) is a thin shell over {@link KeepManager}.
 *
 * States: created → attesting → waiting-for-key → waiting-for-workload →
 * running → exited; any state → failed (with a reason).
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import { FrameReader, FrameWriter } from "../protocol/frames.ts";
import {
  type CreateKeepRequest,
  type CreateKeepResponse,
  type DeliverKeyRequest,
  type DeliverKeyResponse,
  type EvidenceFrame,
  HPKE_SUITE,
  type KeepState,
  type KeepSummary,
  type ListeningFrame,
  parseUpstreamFrame,
} from "../protocol/messages.ts";
import { TcpForward } from "./forward.ts";
import { KEEP_ID_ARG, type KeepProcess, killGroup, launchKeepldr } from "./keepldr.ts";
import { stopUnit } from "./systemd.ts";

/** A failure of a keep operation, with the HTTP status the API answers with. */
export class KeepError extends EnarxError {
  /** HTTP status for this error. */
  readonly httpStatus: number;

  /** Makes an error; `code` is stable (see spec/protocol.md, "Error codes"). */
  constructor(code: string, message: string, httpStatus: number) {
    super(code, message, { exit: httpStatus === 504 ? "timeout" : "protocol" });
    this.name = "KeepError";
    this.httpStatus = httpStatus;
  }
}

/** A structured log function: level, message, fields. */
export type KeepLog = (
  level: "debug" | "info" | "warn" | "error",
  msg: string,
  fields?: Record<string, unknown>,
) => void;

/** Starts a keepldr; {@link launchKeepldr} unless a test substitutes one. */
export type KeepLauncher = (keepId: string, options: { workDir: string }) => KeepProcess;

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
  /** Per-keep lifetime in milliseconds (default 10 minutes), sent in hello.limits. */
  keepTimeoutMs?: number;
  /** Time for the keep to answer one step (evidence, listening); default 30 s. */
  stepTimeoutMs?: number;
  /** Time the keep waits for the client (key, workload); default 120 s. */
  clientTimeoutMs?: number;
  /** Address the forwards listen on (default 127.0.0.1). */
  forwardHostname?: string;
  /** Run keeps as transient systemd units. */
  systemd?: boolean;
  /** Command that runs wasmldr in place of `enarx wasmldr` (tests). */
  wasmldrCommand?: string[];
  /** Command that runs keepldr in place of `enarx keepldr` (tests). */
  keepldrCommand?: string[];
  /** Finished keeps remembered for list/show (default 256). */
  maxFinished?: number;
  /** Structured log (default: none). */
  log?: KeepLog;
}

/** What a state-directory record says about a running keep. */
interface KeepRecord {
  keep: string;
  pid: number;
  unit?: string;
  created: string;
}

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
}

interface Keep {
  id: string;
  backend: string;
  state: KeepState;
  created: string;
  status?: number;
  reason?: string;
  proc?: KeepProcess;
  writer?: FrameWriter;
  reader?: FrameReader;
  forward?: TcpForward;
  workDir: string;
  keyDelivered: boolean;
  evidence?: Waiter<EvidenceFrame>;
  listening?: Waiter<ListeningFrame>;
  timers: Set<ReturnType<typeof setTimeout>>;
  freed?: Promise<void>;
}

const ACTIVE: readonly KeepState[] = [
  "created",
  "attesting",
  "waiting-for-key",
  "waiting-for-workload",
  "running",
];

/**
 * The keep table. Use {@link KeepManager.open}, which also cleans up keeps
 * left running by a keepmgr that crashed, and {@link close} to stop every keep.
 */
export class KeepManager {
  #options:
    & Required<
      Pick<
        KeepManagerOptions,
        | "stateDir"
        | "backends"
        | "maxKeeps"
        | "keepTimeoutMs"
        | "stepTimeoutMs"
        | "clientTimeoutMs"
        | "maxFinished"
      >
    >
    & KeepManagerOptions;
  #keeps = new Map<string, Keep>();
  #closing = false;
  #log: KeepLog;
  #launcher: KeepLauncher;

  private constructor(options: KeepManagerOptions, launcher?: KeepLauncher) {
    this.#options = {
      backends: ["nil"],
      maxKeeps: 64,
      keepTimeoutMs: 10 * 60_000,
      stepTimeoutMs: 30_000,
      clientTimeoutMs: 120_000,
      maxFinished: 256,
      ...options,
    };
    this.#log = options.log ?? (() => {});
    this.#launcher = launcher ?? ((id, { workDir }) =>
      launchKeepldr(id, {
        workDir,
        systemd: options.systemd,
        memoryMax: options.keepMemory,
        runtimeMaxSec: this.#options.keepTimeoutMs / 1000 + 10,
        wasmldrCommand: options.wasmldrCommand,
        keepldrCommand: options.keepldrCommand,
      }));
  }

  /**
   * Opens the keep table: creates the state directory, and stops and forgets
   * keeps recorded there by an earlier keepmgr (only processes whose command
   * line shows they are that keep's keepldr are killed).
   */
  static async open(options: KeepManagerOptions, launcher?: KeepLauncher): Promise<KeepManager> {
    const manager = new KeepManager(options, launcher);
    await Deno.mkdir(manager.#keepsDir, { recursive: true, mode: 0o700 });
    await Deno.mkdir(manager.#workRoot, { recursive: true, mode: 0o700 });
    await manager.#cleanLeftovers();
    return manager;
  }

  get #keepsDir(): string {
    return `${this.#options.stateDir}/keeps`;
  }

  get #workRoot(): string {
    return `${this.#options.stateDir}/work`;
  }

  /** Backends offered. */
  get backends(): string[] {
    return [...this.#options.backends];
  }

  /** Number of keeps that are alive (not exited or failed). */
  get activeCount(): number {
    let n = 0;
    for (const keep of this.#keeps.values()) if (ACTIVE.includes(keep.state)) n++;
    return n;
  }

  /** Process ids of the keepldrs alive now (for tests and diagnostics). */
  get pids(): number[] {
    const pids: number[] = [];
    for (const keep of this.#keeps.values()) {
      if (keep.proc !== undefined && ACTIVE.includes(keep.state)) pids.push(keep.proc.pid);
    }
    return pids;
  }

  /**
   * Creates a keep: starts its keepldr, sends hello with the client's nonce
   * and the limits, and waits for the evidence. Throws KeepError:
   * `backend-unavailable` (400), `too-many-keeps` (503), `shutting-down`
   * (503), `timeout` (504), `keep-failed` (502).
   */
  async create(request: CreateKeepRequest): Promise<CreateKeepResponse> {
    if (this.#closing) {
      throw new KeepError("shutting-down", "The keepmgr is shutting down; try another host", 503);
    }
    const backend = request.backend === "auto" ? this.#options.backends[0] : request.backend;
    if (backend === undefined || !this.#options.backends.includes(backend)) {
      throw new KeepError(
        "backend-unavailable",
        `Backend "${request.backend}" is not offered by this keepmgr; use one of ${
          this.#options.backends.join(", ")
        }`,
        400,
      );
    }
    if (this.activeCount >= this.#options.maxKeeps) {
      throw new KeepError(
        "too-many-keeps",
        `This keepmgr already runs ${this.activeCount} keeps, its limit (--max-keeps ${this.#options.maxKeeps}); try again later`,
        503,
      );
    }
    const id = newKeepId();
    const keep: Keep = {
      id,
      backend,
      state: "created",
      created: new Date().toISOString(),
      workDir: `${this.#workRoot}/${id}`,
      keyDelivered: false,
      timers: new Set(),
    };
    this.#keeps.set(id, keep);
    this.#pruneFinished();
    this.#log("info", "keep created", { keep: id, backend });
    const evidence = new Promise<EvidenceFrame>((resolve, reject) => {
      keep.evidence = { resolve, reject };
    });
    try {
      await Deno.mkdir(keep.workDir, { recursive: true, mode: 0o700 });
      const proc = this.#launcher(id, { workDir: keep.workDir });
      keep.proc = proc;
      await this.#writeRecord({ keep: id, pid: proc.pid, unit: proc.unit, created: keep.created });
      keep.writer = new FrameWriter(proc.stdin);
      keep.reader = new FrameReader(proc.stdout, { peer: "keepldr" });
      const pumping = this.#pumpFrames(keep);
      this.#pumpStderr(keep, proc.stderr);
      proc.status.then(async (s) => {
        // Its last frames ("exited") may still be in the pipe: read them first.
        await Promise.race([pumping, delay(1_000)]);
        const how = s.signal !== null
          ? `was killed by ${s.signal}`
          : `exited with status ${s.code}`;
        this.#fail(keep, `keepldr ${how}`);
      });
      this.#timer(
        keep,
        this.#options.keepTimeoutMs + 5_000,
        () => this.#fail(keep, `keep ran past its time limit of ${this.#options.keepTimeoutMs} ms`),
      );
      keep.state = "attesting";
      const limits: { memory?: number; timeout_ms: number } = {
        timeout_ms: this.#options.keepTimeoutMs,
      };
      if (this.#options.keepMemory !== undefined) limits.memory = this.#options.keepMemory;
      await keep.writer.write({
        t: "hello",
        v: 1,
        keep: id,
        backend,
        nonce: request.nonce,
        limits,
      });
    } catch (error) {
      this.#fail(keep, `cannot start keepldr: ${error instanceof Error ? error.message : error}`);
    }
    const frame = await this.#withTimeout(keep, evidence, "evidence");
    keep.state = "waiting-for-key";
    this.#log("info", "keep attested", { keep: id });
    this.#timer(keep, this.#options.clientTimeoutMs, () => {
      if (keep.state === "waiting-for-key" && !keep.keyDelivered) {
        this.#fail(keep, `no key delivered within ${this.#options.clientTimeoutMs} ms`);
      }
    });
    return {
      v: 1,
      keep: id,
      backend,
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
    const keep = this.#get(id);
    if (keep.state !== "waiting-for-key" || keep.keyDelivered) {
      throw new KeepError(
        "wrong-state",
        `Keep "${id}" is ${
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
      this.#fail(keep, `cannot send the sealed key: ${error.message}`)
    );
    const frame = await this.#withTimeout(keep, listening, "listening");
    try {
      keep.forward = TcpForward.open({
        hostname: this.#options.forwardHostname ?? "127.0.0.1",
        targetPort: frame.port,
      });
    } catch (error) {
      this.#fail(
        keep,
        `cannot open the forward: ${error instanceof Error ? error.message : error}`,
      );
      throw new KeepError("keep-failed", `Keep "${id}" failed: cannot open its forward`, 502);
    }
    keep.state = "waiting-for-workload";
    this.#log("info", "keep listening", { keep: id, port: keep.forward.port });
    this.#timer(keep, this.#options.clientTimeoutMs, () => {
      if (keep.state === "waiting-for-workload") {
        this.#fail(keep, `no workload arrived within ${this.#options.clientTimeoutMs} ms`);
      }
    });
    return { v: 1, connect: { host: options.connectHost, port: keep.forward.port } };
  }

  /** Summaries of every keep known, oldest first. */
  list(): KeepSummary[] {
    return [...this.#keeps.values()].map(summarize);
  }

  /** The summary of keep `id`; KeepError `not-found` (404) if unknown. */
  show(id: string): KeepSummary {
    return summarize(this.#get(id));
  }

  /**
   * Stops keep `id` if it is alive (it becomes `failed`, reason "deleted"),
   * waits until its resources are freed, forgets it and returns its last
   * summary. KeepError `not-found` (404) if unknown.
   */
  async delete(id: string): Promise<KeepSummary> {
    const keep = this.#get(id);
    this.#fail(keep, "deleted");
    await keep.freed;
    this.#keeps.delete(id);
    this.#log("info", "keep deleted", { keep: id });
    return summarize(keep);
  }

  /** Refuses new keeps, stops every keep, waits until all are freed. */
  async close(): Promise<void> {
    this.#closing = true;
    const frees: Promise<void>[] = [];
    for (const keep of this.#keeps.values()) {
      this.#fail(keep, "keepmgr shutting down");
      if (keep.freed) frees.push(keep.freed);
    }
    await Promise.all(frees);
  }

  /** Same as {@link close}. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #get(id: string): Keep {
    const keep = this.#keeps.get(id);
    if (keep === undefined) {
      throw new KeepError(
        "not-found",
        `No keep "${id.slice(0, 80)}" on this keepmgr; list keeps with GET /v1/keeps`,
        404,
      );
    }
    return keep;
  }

  #timer(keep: Keep, ms: number, fn: () => void): void {
    const id = setTimeout(() => {
      keep.timers.delete(id);
      fn();
    }, ms);
    keep.timers.add(id);
  }

  async #withTimeout<T>(keep: Keep, promise: Promise<T>, what: string): Promise<T> {
    let id: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      id = setTimeout(() => {
        const message =
          `Keep "${keep.id}" sent no ${what} within ${this.#options.stepTimeoutMs} ms`;
        reject(new KeepError("timeout", message, 504)); // before #fail rejects `promise`
        this.#fail(keep, `timeout waiting for ${what}`);
      }, this.#options.stepTimeoutMs);
    });
    try {
      return await Promise.race([promise, timeout]);
    } finally {
      clearTimeout(id);
    }
  }

  async #pumpFrames(keep: Keep): Promise<void> {
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
            this.#log("info", "keep running", { keep: keep.id });
            break;
          case "exited":
            this.#finish(keep, "exited", frame.reason, frame.status);
            return;
          case "error":
            this.#fail(keep, `${frame.code}: ${frame.message}`);
            return;
        }
      }
    } catch (error) {
      this.#fail(keep, `protocol error: ${error instanceof Error ? error.message : error}`);
    }
  }

  async #pumpStderr(keep: Keep, stream: ReadableStream<Uint8Array>): Promise<void> {
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

  #fail(keep: Keep, reason: string): void {
    this.#finish(keep, "failed", reason);
  }

  #finish(keep: Keep, state: "exited" | "failed", reason: string, status?: number): void {
    if (!ACTIVE.includes(keep.state)) return;
    keep.state = state;
    keep.reason = reason;
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
    keep.freed = this.#free(keep, state === "exited");
  }

  async #free(keep: Keep, graceful: boolean): Promise<void> {
    for (const id of keep.timers) clearTimeout(id);
    keep.timers.clear();
    // A keep that exited may have written its last output just now: let the
    // forward relay it before closing.
    await keep.forward?.close({ drainMs: graceful ? 2_000 : 0 });
    keep.forward = undefined;
    if (keep.proc !== undefined) {
      if (graceful) {
        // The keep said it exited: give keepldr a moment to end by itself.
        await Promise.race([keep.proc.status, delay(2_000)]);
      }
      await keep.writer?.close().catch(() => {});
      await keep.proc.kill();
    }
    keep.reader?.close();
    await Deno.remove(keep.workDir, { recursive: true }).catch(() => {});
    await Deno.remove(`${this.#keepsDir}/${keep.id}.json`).catch(() => {});
  }

  #pruneFinished(): void {
    const finished = [...this.#keeps.values()].filter((k) => !ACTIVE.includes(k.state));
    for (
      const keep of finished.slice(0, Math.max(0, finished.length - this.#options.maxFinished))
    ) {
      this.#keeps.delete(keep.id);
    }
  }

  async #writeRecord(record: KeepRecord): Promise<void> {
    const path = `${this.#keepsDir}/${record.keep}.json`;
    await Deno.writeTextFile(`${path}.tmp`, JSON.stringify(record) + "\n", { mode: 0o600 });
    await Deno.rename(`${path}.tmp`, path);
  }

  async #cleanLeftovers(): Promise<void> {
    for await (const entry of Deno.readDir(this.#keepsDir)) {
      if (!entry.isFile) continue;
      const path = `${this.#keepsDir}/${entry.name}`;
      let record: KeepRecord | undefined;
      try {
        record = JSON.parse(await Deno.readTextFile(path));
      } catch { /* unreadable: just remove it */ }
      if (record !== undefined && typeof record.keep === "string") {
        if (typeof record.unit === "string") await stopUnit(record.unit);
        if (typeof record.pid === "number" && isOurKeepldr(record.pid, record.keep)) {
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
        if (/^[a-z0-9-]+$/.test(record.keep)) {
          await Deno.remove(`${this.#workRoot}/${record.keep}`, { recursive: true }).catch(
            () => {},
          );
        }
      }
      await Deno.remove(path).catch(() => {});
    }
  }
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

function summarize(keep: Keep): KeepSummary {
  const summary: KeepSummary = {
    keep: keep.id,
    backend: keep.backend,
    state: keep.state,
    created: keep.created,
  };
  if (keep.status !== undefined) summary.status = keep.status;
  if (keep.reason !== undefined) summary.reason = keep.reason;
  return summary;
}

function newKeepId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => {
    setTimeout(resolve, ms);
  });
}
