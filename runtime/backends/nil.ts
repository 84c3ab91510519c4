/**
 * The `nil` backend for `enarx run`: no TEE and no isolation beyond
 * wasmtime's own. keepldr's part is empty and wasmldr's part
 * (runtime/wasm/workload.ts) runs in this process. Keeps that keepmgr starts are
 * separate processes (another backend module).
 *
 * @module
 */
import type { Backend, Keep } from "./backend.ts";
import {
  type RunOptions,
  runWorkload,
  type Workload,
  type WorkloadResult,
} from "../wasm/workload.ts";
import { EnarxError } from "../errors.ts";

class InProcessKeep implements Keep {
  readonly backend = "nil";
  #used = false;
  #closed = false;

  async run(workload: Workload, options: RunOptions): Promise<WorkloadResult> {
    if (this.#closed) {
      throw new EnarxError("keep-closed", "The keep is closed", { exit: "internal" });
    }
    if (this.#used) {
      throw new EnarxError("keep-used", "A keep runs one workload only", { exit: "internal" });
    }
    this.#used = true;
    return await runWorkload(workload, options);
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The nil backend: an in-process keep. */
export const nilBackend: Backend = {
  name: "nil",
  launch: () => Promise.resolve(new InProcessKeep()),
};
