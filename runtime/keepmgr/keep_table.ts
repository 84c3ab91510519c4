/**
 * The keep table of keepmgr: every keep it knows with its state, the limits
 * on how many may live at once, lookup and listing, and the records of
 * running keeps in the state directory (`keeps/<id>.json`, with each keep's
 * work directory under `work/<id>`), so that a keepmgr that crashed can be
 * cleaned up after by the next one. Starting and stopping the processes is
 * the supervisor's (keep_supervisor.ts).
 *
 * States: created → attesting → waiting-for-key → waiting-for-workload →
 * running → exited; any state → failed (with a reason).
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import type { Endpoint, KeepState, KeepSummary } from "../protocol/messages.ts";

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

/** What a state-directory record (`keeps/<id>.json`) says about a running keep. */
export interface KeepRecord {
  /** The keep's id. */
  keep: string;
  /**
   * The process id of the keep's process (its keepldr's, or, when keepmgr
   * hosts the keep, the keep's own); none when it never started.
   */
  pid?: number;
  /** That process's start time in clock ticks since boot (`/proc/PID/stat`), to tell a reused pid. */
  started?: number;
  /** Its work directory (a warm keep's is not named after the keep). */
  workDir?: string;
  /** Its transient systemd unit, when it runs as one. */
  unit?: string;
  /** When it was created (ISO 8601). */
  created: string;
}

/** What the table knows of one keep. */
export interface KeepEntry {
  /** The keep's id (32 hex digits). */
  id: string;
  /** The backend it runs on. */
  backend: string;
  /** Where it is in its life. */
  state: KeepState;
  /** When it was created (ISO 8601). */
  created: string;
  /** Its exit status, once it exited. */
  status?: number;
  /** Why it ended, once it did. */
  reason?: string;
  /** Its work directory. */
  workDir: string;
  /** Settles when everything it held is freed (set when it ends). */
  freed?: Promise<void>;
  /** Where its workload's `listen` sockets are reached, while it runs. */
  endpoints?: Endpoint[];
}

/** Options of {@link KeepTable}. */
export interface KeepTableOptions {
  /** Directory for records of running keeps and their work directories. */
  stateDir: string;
  /** Backends offered; `auto` picks the first. */
  backends: string[];
  /** Keeps alive at once; more are refused with `too-many-keeps`. */
  maxKeeps: number;
  /** Finished keeps remembered for list/show. */
  maxFinished: number;
  /** Memory limit of each keep in bytes (`--keep-memory`); reserved while it lives. */
  keepMemory?: number;
  /** Most memory all live keeps may reserve together (`--total-keep-memory`); needs keepMemory. */
  totalKeepMemory?: number;
}

const ACTIVE: readonly KeepState[] = [
  "created",
  "attesting",
  "waiting-for-key",
  "waiting-for-workload",
  "running",
];

/** Whether a keep in `state` is alive (not exited or failed). */
export function isActive(state: KeepState): boolean {
  return ACTIVE.includes(state);
}

/**
 * The table of keeps, of entry type `T` (the supervisor's entries carry its
 * processes too). Call {@link open} before use.
 */
export class KeepTable<T extends KeepEntry> {
  #options: KeepTableOptions;
  #keeps = new Map<string, T>();
  #closing = false;

  /** Makes an empty table; nothing is read or written until {@link open}. */
  constructor(options: KeepTableOptions) {
    this.#options = options;
  }

  /** The directory of the records of running keeps. */
  get keepsDir(): string {
    return `${this.#options.stateDir}/keeps`;
  }

  /** The directory under which each keep has its work directory. */
  get workRoot(): string {
    return `${this.#options.stateDir}/work`;
  }

  /** Backends offered. */
  get backends(): string[] {
    return [...this.#options.backends];
  }

  /** Number of keeps that are alive (not exited or failed). */
  get activeCount(): number {
    let n = 0;
    for (const keep of this.#keeps.values()) if (isActive(keep.state)) n++;
    return n;
  }

  /**
   * Creates the state directory; `reap` is called on every record left by an
   * earlier keepmgr, whose work directory and record are then removed. Then
   * the work directories of its warm keeps, and those that no record named
   * (a keepmgr killed between making one and recording its keep), are
   * removed too, unless a keepldr for that keep still runs.
   */
  async open(reap: (record: KeepRecord) => Promise<void>): Promise<void> {
    await Deno.mkdir(this.keepsDir, { recursive: true, mode: 0o700 });
    await Deno.mkdir(this.workRoot, { recursive: true, mode: 0o700 });
    for await (const entry of Deno.readDir(this.keepsDir)) {
      if (!entry.isFile) continue;
      const path = `${this.keepsDir}/${entry.name}`;
      let record: KeepRecord | undefined;
      try {
        record = JSON.parse(await Deno.readTextFile(path));
      } catch { /* unreadable: just remove it */ }
      if (record !== undefined && typeof record.keep === "string") {
        await reap(record);
        if (/^[a-z0-9-]+$/.test(record.keep)) {
          await Deno.remove(`${this.workRoot}/${record.keep}`, { recursive: true }).catch(
            () => {},
          );
        }
      }
      await Deno.remove(path).catch(() => {});
    }
    await this.#removeStrayWorkDirs();
  }

  /**
   * Removes warm keeps' `work/pool-*` folders (none runs yet), and `work/<id>`
   * folders whose keep has no keepldr running (see {@link open}).
   */
  async #removeStrayWorkDirs(): Promise<void> {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(this.workRoot));
    } catch {
      return;
    }
    for (const entry of entries) {
      if (entry.isDirectory && /^pool-[0-9a-f]+$/.test(entry.name)) {
        await Deno.remove(`${this.workRoot}/${entry.name}`, { recursive: true }).catch(() => {});
      }
    }
    const strays = entries.filter((e) => e.isDirectory && /^[0-9a-f]{32}$/.test(e.name));
    if (strays.length === 0) return;
    const running = runningKeepldrKeeps();
    for (const entry of strays) {
      if (running.has(entry.name)) continue;
      await Deno.remove(`${this.workRoot}/${entry.name}`, { recursive: true }).catch(() => {});
    }
  }

  /**
   * Admits a new keep on `requested` (a backend or `auto`) and adds it in
   * state `created`, made into a `T` by `extend`. Throws KeepError:
   * `shutting-down` (503), `backend-unavailable` (400), `too-many-keeps` (503),
   * `not-enough-memory` (503).
   */
  admit(requested: string, extend: (entry: KeepEntry) => T): T {
    if (this.#closing) {
      throw new KeepError("shutting-down", "The keepmgr is shutting down; try another host", 503);
    }
    const backend = requested === "auto" ? this.#options.backends[0] : requested;
    if (backend === undefined || !this.#options.backends.includes(backend)) {
      throw new KeepError(
        "backend-unavailable",
        `Backend "${requested}" is not offered by this keepmgr; use one of ${
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
    this.#checkMemory();
    const id = newKeepId();
    const keep = extend({
      id,
      backend,
      state: "created",
      created: new Date().toISOString(),
      workDir: `${this.workRoot}/${id}`,
    });
    this.#keeps.set(id, keep);
    this.#pruneFinished();
    return keep;
  }

  /**
   * Refuses a keep whose memory limit, added to what the live keeps reserve,
   * would pass the total: 64 keeps that may each take gigabytes must not be
   * able to exhaust the host together.
   */
  #checkMemory(): void {
    const { keepMemory, totalKeepMemory } = this.#options;
    if (keepMemory === undefined || totalKeepMemory === undefined) return;
    const reserved = this.activeCount * keepMemory;
    if (reserved + keepMemory <= totalKeepMemory) return;
    throw new KeepError(
      "not-enough-memory",
      `This keepmgr's ${this.activeCount} keeps already reserve ${mib(reserved)} of its ${
        mib(totalKeepMemory)
      } (--total-keep-memory), and a keep takes ${
        mib(keepMemory)
      } (--keep-memory); try again later`,
      503,
    );
  }

  /** Refuses every keep admitted from now on with `shutting-down`. */
  refuseNew(): void {
    this.#closing = true;
  }

  /** Keep `id`; KeepError `not-found` (404) if unknown. */
  get(id: string): T {
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

  /** Every keep known, oldest first. */
  entries(): T[] {
    return [...this.#keeps.values()];
  }

  /** Forgets keep `id`. */
  forget(id: string): void {
    this.#keeps.delete(id);
  }

  /** Writes the record of a running keep (atomically, mode 0600). */
  async writeRecord(record: KeepRecord): Promise<void> {
    const path = `${this.keepsDir}/${record.keep}.json`;
    try {
      await Deno.writeTextFile(`${path}.tmp`, JSON.stringify(record) + "\n", { mode: 0o600 });
      await Deno.rename(`${path}.tmp`, path);
    } catch (error) {
      // A full disk must not leave half a record behind.
      await Deno.remove(`${path}.tmp`).catch(() => {});
      throw error;
    }
  }

  /** Removes a keep's work directory and its record; errors are ignored. */
  async removeFiles(keep: KeepEntry): Promise<void> {
    await Deno.remove(keep.workDir, { recursive: true }).catch(() => {});
    await Deno.remove(`${this.keepsDir}/${keep.id}.json`).catch(() => {});
  }

  #pruneFinished(): void {
    const finished = this.entries().filter((k) => !isActive(k.state));
    for (
      const keep of finished.slice(0, Math.max(0, finished.length - this.#options.maxFinished))
    ) {
      this.#keeps.delete(keep.id);
    }
  }
}

/** The summary of a keep that the API answers with. */
export function summarize(keep: KeepEntry): KeepSummary {
  const summary: KeepSummary = {
    keep: keep.id,
    backend: keep.backend,
    state: keep.state,
    created: keep.created,
  };
  if (keep.status !== undefined) summary.status = keep.status;
  if (keep.reason !== undefined) summary.reason = keep.reason;
  if (keep.endpoints !== undefined) summary.endpoints = keep.endpoints.map((e) => ({ ...e }));
  return summary;
}

function mib(bytes: number): string {
  return `${Math.round(bytes / (1 << 20))} MiB`;
}

/**
 * The keep ids of the keepldrs running on this machine: processes whose
 * command line holds `keepldr` and `--keep ID` (KEEP_ID_ARG of keepldr.ts).
 */
function runningKeepldrKeeps(): Set<string> {
  const ids = new Set<string>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    let args: string[];
    try {
      args = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`).split("\0");
    } catch {
      continue; // gone, or not readable
    }
    const at = args.indexOf("--keep");
    if (at >= 0 && args.includes("keepldr") && args[at + 1] !== undefined) ids.add(args[at + 1]);
  }
  return ids;
}

function newKeepId(): string {
  return crypto.getRandomValues(new Uint8Array(16)).toHex();
}
