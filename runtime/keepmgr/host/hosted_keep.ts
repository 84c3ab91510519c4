/**
 * keepldr's part run inside keepmgr: one process per keep. keepmgr launches
 * the keep itself (a nil keep's `enarx wasmldr`, a kvm keep's QEMU) in a
 * process group of its own and runs {@link runKeepldr} on in-memory streams,
 * so the keep's only process is the keep. What the supervisor sees is the
 * same {@link KeepProcess} as for a keepldr child: frames on stdin/stdout,
 * diagnostics on stderr, a status and a kill.
 *
 * A keepldr process per keep cost a second Deno process (about 16 MiB of
 * private memory and 30 ms of CPU to start) and, before the measurement was
 * computed once per keepmgr, 300 ms of CPU hashing what the keep runs.
 *
 * @module
 */
import type { KeepHandle } from "../../backends/mod.ts";
import { type KeepProcess, type KeepProcessStatus, runKeepldr, terminate } from "../keepldr.ts";

/** Options of {@link hostKeep}. */
export interface HostKeepOptions {
  /** The keep id keepmgr assigned (the hello frame must name it). */
  keepId: string;
  /** The backend the keep was launched on. */
  backend: string;
  /** The launched keep (a rejection is reported to keepmgr as an error frame). */
  keep: Promise<KeepHandle>;
  /** What the launch logged, and logs from now on, for the keep's diagnostics. */
  launchLog?: DeferredLog;
  /** The keep's work directory. */
  workDir: string;
  /** The simulated SNP platform's state directory (default `$ENARX_SNP_SIM_DIR`). */
  simDir?: string;
  /** Milliseconds between SIGTERM and SIGKILL when stopping (default 2000). */
  killGraceMs?: number;
}

/**
 * Relays frames between keepmgr and a keep launched in its own process
 * group, with keepldr's checks and the simulated platform's reports;
 * resolves once the keep has been launched (or failed to launch: the
 * returned process then reports why as an error frame and ends).
 */
export async function hostKeep(options: HostKeepOptions): Promise<KeepProcess> {
  const handle = await options.keep.catch(() => undefined);
  const toKeep = new TransformStream<Uint8Array, Uint8Array>();
  const fromKeep = new TransformStream<Uint8Array, Uint8Array>();
  const diagnostics = mergedLines(handle?.stderr);
  options.launchLog?.attach((line) => diagnostics.line(`keepldr: ${line}`));
  // keepmgr stops reading a keep it is stopping: from then on the relay's
  // frames are dropped, so that it cannot wait on a reader that is gone (a
  // keepldr process's writes went to a pipe that died with it).
  const stopping = Promise.withResolvers<void>();
  const toMgr = fromKeep.writable.getWriter();
  const output = new WritableStream<Uint8Array>({
    write: (chunk) => Promise.race([toMgr.write(chunk), stopping.promise]),
    close: () => Promise.race([toMgr.close(), stopping.promise]).catch(() => {}),
    abort: (reason) => toMgr.abort(reason).catch(() => {}),
  });
  const relay = runKeepldr({
    keepId: options.keepId,
    input: toKeep.readable,
    output,
    workDir: options.workDir,
    simDir: options.simDir,
    log: (line) => diagnostics.line(`keepldr: ${line}`),
    launched: { backend: options.backend, keep: options.keep },
  });
  const status: Promise<KeepProcessStatus> = relay.then(async (code) => {
    // The relay ends with the keep, but not when keepmgr went away before
    // hello: then the keep launched for it must go too.
    if (handle !== undefined) {
      signalKeep(handle, "SIGKILL");
      await handle.status;
    }
    diagnostics.close();
    return { code, signal: null };
  });
  const graceMs = options.killGraceMs ?? 2000;
  async function kill(): Promise<void> {
    stopping.resolve();
    await toKeep.writable.close().catch(() => {});
    if (handle === undefined) await status;
    else await terminate((signal) => signalKeep(handle, signal), status, graceMs);
  }
  return {
    pid: handle?.pid,
    stdin: toKeep.writable,
    stdout: fromKeep.readable,
    stderr: diagnostics.readable,
    status,
    kill,
  };
}

/** A log whose lines are held until someone attaches to read them. */
export interface DeferredLog {
  /** Logs one line. */
  line(text: string): void;
  /** Passes the held lines, then every later one, to `sink`. */
  attach(sink: (text: string) => void): void;
}

/** A {@link DeferredLog} holding up to 200 lines until attached. */
export function deferredLog(): DeferredLog {
  let held: string[] | undefined = [];
  let sink: ((text: string) => void) | undefined;
  return {
    line(text) {
      if (sink !== undefined) sink(text);
      else if (held!.length < 200) held!.push(text);
    },
    attach(to) {
      sink = to;
      for (const text of held ?? []) to(text);
      held = undefined;
    },
  };
}

/**
 * Signals the keep's process group (it was launched detached), else its
 * process: a nil keep started through setsid(1) (runtime/backends/nil.ts)
 * makes its group a moment after the spawn returns. `keep.kill` is the
 * child's own handle, which never signals a pid reused after it ended.
 */
export function signalKeep(keep: KeepHandle, signal: Deno.Signal): void {
  if (keep.pid !== undefined) {
    try {
      Deno.kill(-keep.pid, signal);
      return;
    } catch { /* no such group (yet, or any more) */ }
  }
  try {
    keep.kill(signal);
  } catch { /* already gone */ }
}

/** The keep's standard error with keepldr's own lines between its chunks. */
function mergedLines(source: ReadableStream<Uint8Array> | undefined) {
  const encoder = new TextEncoder();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let closed = false;
  const readable = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
  });
  const sourceDone = (async () => {
    if (source === undefined) return;
    try {
      for await (const chunk of source) if (!closed) controller.enqueue(chunk);
    } catch { /* the keep is gone */ }
  })();
  return {
    readable,
    line(text: string): void {
      if (!closed) controller.enqueue(encoder.encode(`${text}\n`));
    },
    close(): void {
      sourceDone.then(() => {
        if (closed) return;
        closed = true;
        controller.close();
      });
    },
  };
}

/**
 * The start time of process `pid` in clock ticks since boot (field 22 of
 * `/proc/PID/stat`), or undefined when it is gone: with the pid it names one
 * process for good, as a pid alone does not once the pid is reused.
 */
export function processStartTime(pid: number): number | undefined {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: count from its end.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[19]);
  return Number.isSafeInteger(ticks) ? ticks : undefined;
}
