/**
 * The lock of a keepmgr state directory: one keepmgr at a time may use a
 * state directory, since a keepmgr treats every keep recorded there as left
 * by a crashed predecessor and stops it. The lock is an exclusive `flock` on
 * `<state-dir>/keepmgr.lock` (released by the kernel when the process ends,
 * however it ends); the file holds the pid of its holder, for the message
 * that a second keepmgr prints.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";

/** Name of the lock file inside the state directory. */
export const STATE_LOCK_FILE = "keepmgr.lock";

/** A held state-directory lock; {@link release} (or disposal) lets it go. */
export class StateDirLock {
  #file: Deno.FsFile | undefined;

  private constructor(file: Deno.FsFile) {
    this.#file = file;
  }

  /**
   * Takes the lock of `stateDir` (which must exist) without waiting. Throws
   * EnarxError `state-dir-locked` (exit 69) naming the holder's pid when
   * another process holds it.
   */
  static async acquire(stateDir: string): Promise<StateDirLock> {
    const path = `${stateDir}/${STATE_LOCK_FILE}`;
    const file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
    let locked: boolean;
    try {
      locked = await file.tryLock(true);
    } catch (error) {
      file.close();
      throw error;
    }
    if (!locked) {
      file.close();
      const holder = await readHolder(path);
      throw new EnarxError(
        "state-dir-locked",
        `The state directory "${stateDir}" is in use by another keepmgr${
          holder === undefined ? "" : ` (pid ${holder})`
        }; stop it or give this one another --state-dir`,
        { exit: "unavailable" },
      );
    }
    try {
      await file.truncate(0);
      await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
    } catch { /* the pid is only a hint for the message */ }
    return new StateDirLock(file);
  }

  /** Releases the lock (safe to call twice). */
  release(): void {
    const file = this.#file;
    this.#file = undefined;
    try {
      file?.close(); // closing the last descriptor releases the flock
    } catch { /* already closed */ }
  }

  /** Same as {@link release}. */
  [Symbol.dispose](): void {
    this.release();
  }
}

async function readHolder(path: string): Promise<number | undefined> {
  try {
    const text = (await Deno.readTextFile(path)).trim();
    return /^\d+$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}
