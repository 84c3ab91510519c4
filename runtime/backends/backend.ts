/**
 * The keep boundary. A backend launches keeps; a keep runs one workload
 * (wasmldr's job) and is closed. `enarx run` drives this interface exactly as
 * keepmgr/keepldr do, so the same code path runs a workload locally and in a
 * deployed keep. Adding a backend touches no other backend.
 *
 * @module
 */
import type { RunOptions, Workload, WorkloadResult } from "../wasm/workload.ts";

/** A launched keep: it runs a workload, then is closed. */
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

/** A kind of keep. */
export interface Backend {
  /** The name given to `--backend`. */
  readonly name: string;
  /** Launches a keep (keepldr's part). */
  launch(): Promise<Keep>;
}
