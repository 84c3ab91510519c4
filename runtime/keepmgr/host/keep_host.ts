/**
 * keepmgr's keep launcher when it hosts keepldr's part itself
 * (hosted_keep.ts), with a warm pool: per backend, a few keeps launched
 * ahead of any request and waiting for their hello. A deploy claims one, and
 * the keep then does everything that binds it to that deploy — its sealing
 * key pair and its evidence over the client's nonce — after the claim, as a
 * keep launched on demand would. A pooled keep serves one deploy, never
 * more: it is a process that has run nothing, and once claimed it is the
 * claimer's until it ends. The pool is refilled after each claim.
 *
 * Pooled keeps are not in the keep table: they count against neither
 * `--max-keeps` nor the memory reservations, and a keepmgr that crashes
 * leaves none behind (each ends when its hello pipe closes). A backend
 * whose pooled keeps keep dying is refilled ever more slowly (up to once a
 * minute), so a broken installation does not spin.
 *
 * @module
 */
import { backendByName, type KeepHandle } from "../../backends/mod.ts";
import type { KeepProcess } from "../keepldr.ts";
import { type DeferredLog, deferredLog, hostKeep, signalKeep } from "./hosted_keep.ts";

/** A structured log function: level, message, fields (keep_supervisor.ts's KeepLog). */
type Log = (
  level: "debug" | "info" | "warn" | "error",
  msg: string,
  fields?: Record<string, unknown>,
) => void;

/** Options of {@link KeepHost}. */
export interface KeepHostOptions {
  /** Where the pooled keeps' work directories go (keepmgr's work root). */
  workRoot: string;
  /** Keeps kept warm per backend (default none). */
  warmKeeps?: Record<string, number>;
  /** Command that runs wasmldr instead of `enarx wasmldr` (tests). */
  wasmldrCommand?: string[];
  /** The simulated SNP platform's state directory (default `$ENARX_SNP_SIM_DIR`). */
  simDir?: string;
  /** Milliseconds between SIGTERM and SIGKILL when stopping a keep. */
  killGraceMs?: number;
  /** Structured log. */
  log: Log;
}

/** A keep launched ahead of its deploy. */
interface WarmKeep {
  backend: string;
  workDir: string;
  keep: Promise<KeepHandle>;
  launchLog: DeferredLog;
}

/** What {@link KeepHost.launch} returns: the keep, and the work directory it uses. */
export type HostedKeepProcess = KeepProcess & { workDir: string };

/** Launches keeps in their own process groups and relays them from keepmgr; keeps a warm pool. */
export class KeepHost {
  #options: KeepHostOptions;
  #pool = new Map<string, WarmKeep[]>();
  /** Consecutive pooled keeps per backend that died or failed to launch before a claim. */
  #failures = new Map<string, number>();
  #refills = new Set<ReturnType<typeof setTimeout>>();
  #closed = false;

  /** A host for keeps; call {@link fill} to start the warm pool. */
  constructor(options: KeepHostOptions) {
    this.#options = options;
  }

  /** Warm keeps per backend now (launched or launching, not yet claimed). */
  get warm(): Record<string, number> {
    return Object.fromEntries([...this.#pool].map(([b, keeps]) => [b, keeps.length]));
  }

  /** Launches keeps until each backend's pool holds its configured number. */
  fill(): void {
    for (const [backend, want] of Object.entries(this.#options.warmKeeps ?? {})) {
      const pool = this.#poolOf(backend);
      while (!this.#closed && pool.length < want) pool.push(this.#launchWarm(backend));
    }
  }

  /**
   * The keep for keep `keepId` on `backend`: a warm one when the pool has
   * one (its work directory is then the pool's), else one launched now in
   * `workDir`. Never throws: a failed launch is reported by the returned
   * process as an error frame.
   */
  async launch(
    keepId: string,
    options: { workDir: string; backend: string },
  ): Promise<HostedKeepProcess> {
    const warm = this.#take(options.backend);
    const chosen = warm ?? this.#launchKeep(options.backend, options.workDir);
    const proc = await hostKeep({
      keepId,
      backend: options.backend,
      keep: chosen.keep,
      launchLog: chosen.launchLog,
      workDir: chosen.workDir,
      simDir: this.#options.simDir,
      killGraceMs: this.#options.killGraceMs,
    });
    if (warm !== undefined) {
      this.#options.log("debug", "keep claimed from the warm pool", { keep: keepId });
      // Only a keep that ran its course shows the backend works (a claim does not).
      proc.status.then((s) => {
        if (s.code === 0) this.#failures.set(options.backend, 0);
      });
    }
    return { ...proc, workDir: chosen.workDir };
  }

  /** Stops the warm keeps and launches no more. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const id of this.#refills) clearTimeout(id);
    this.#refills.clear();
    const pooled = [...this.#pool.values()].flat();
    this.#pool.clear();
    await Promise.all(pooled.map(async (warm) => {
      const keep = await warm.keep.catch(() => undefined);
      if (keep !== undefined) {
        await keep.stdin.close().catch(() => {});
        signalKeep(keep, "SIGKILL");
        await keep.status;
      }
      await Deno.remove(warm.workDir, { recursive: true }).catch(() => {});
    }));
  }

  #poolOf(backend: string): WarmKeep[] {
    let pool = this.#pool.get(backend);
    if (pool === undefined) this.#pool.set(backend, pool = []);
    return pool;
  }

  #take(backend: string): WarmKeep | undefined {
    const warm = this.#pool.get(backend)?.shift();
    if (warm === undefined) return undefined;
    this.#refill(0);
    return warm;
  }

  #refill(delayMs: number): void {
    if (this.#closed) return;
    const id = setTimeout(() => {
      this.#refills.delete(id);
      this.fill();
    }, delayMs);
    this.#refills.add(id);
  }

  #launchKeep(backend: string, workDir: string): WarmKeep {
    const launchLog = deferredLog();
    const keep = Deno.mkdir(workDir, { recursive: true, mode: 0o700 }).then(() =>
      backendByName(backend)!.launch({
        workDir,
        wasmldrCommand: this.#options.wasmldrCommand,
        log: launchLog.line,
        detached: true,
        pipeStderr: true,
      })
    );
    keep.catch(() => {}); // reported to whoever claims it
    return { backend, workDir, keep, launchLog };
  }

  /** Launches a pooled keep; one that ends before its claim leaves the pool and is replaced. */
  #launchWarm(backend: string): WarmKeep {
    const name = `pool-${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
    const warm = this.#launchKeep(backend, `${this.#options.workRoot}/${name}`);
    const dropped = (reason: string) => {
      const pool = this.#pool.get(backend);
      const at = pool?.indexOf(warm) ?? -1;
      if (at < 0) return; // claimed, or the pool was closed
      pool!.splice(at, 1);
      Deno.remove(warm.workDir, { recursive: true }).catch(() => {});
      const failures = (this.#failures.get(backend) ?? 0) + 1;
      this.#failures.set(backend, failures);
      const delayMs = Math.min(60_000, 250 * 2 ** (failures - 1));
      this.#options.log("warn", "a warm keep ended before its claim", {
        backend,
        reason,
        retry_ms: delayMs,
      });
      this.#refill(delayMs);
    };
    warm.keep.then(
      (keep) => keep.status.then((s) => dropped(`exited with status ${s.code}`)),
      (error) => dropped(error instanceof Error ? error.message : String(error)),
    );
    return warm;
  }
}
