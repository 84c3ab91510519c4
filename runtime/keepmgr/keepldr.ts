/**
 * keepldr, the untrusted host-side loader of one keep. keepmgr starts it
 * ({@link launchKeepldr}) with frames on its stdin/stdout; it launches the
 * keep for the backend named in the hello frame and relays frames between
 * keepmgr and the wasmldr inside the keep ({@link runKeepldr}). It never
 * sees a plaintext key or workload: the sealed key passes through as
 * ciphertext and the workload travels over TLS that ends inside the keep.
 *
 * Backends: `nil` runs wasmldr as a separate OS process (`enarx wasmldr`,
 * re-executing this same program with fewer Deno permissions where the
 * runtime allows it). `kvm` boots a QEMU micro-VM whose initrd holds
 * wasmldr (runtime/backends/kvm.ts); frames travel on the guest's second
 * serial port, and keepldr rewrites the port of the `listening` frame to
 * the host port QEMU forwards to the guest (the only field it changes; the
 * TLS still ends inside the keep).
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import type * as KvmBackend from "../backends/kvm.ts";
import { FrameReader, FrameWriter } from "../protocol/frames.ts";
import { decodeCbor, encodeCbor } from "../protocol/cbor.ts";
import {
  type HelloFrame,
  MessageError,
  parseDownstreamFrame,
  parseHelloFrame,
  parseUpstreamFrame,
} from "../protocol/messages.ts";
import { keepUnitName, systemdRunArgs } from "./systemd.ts";

/** Backends that keepldr can launch on this build. */
export const KEEPLDR_BACKENDS = ["nil", "kvm"] as const;

/** Argument of `enarx keepldr` that names the keep (also used to recognise leftovers). */
export const KEEP_ID_ARG = "--keep";

/**
 * Deno permissions of a nil keep's wasmldr when run from source: read files
 * (its code, libwasmtime), environment, FFI (libwasmtime), loopback network
 * and system info; no subprocesses and no writes outside its work directory.
 */
export function wasmldrPermissions(workDir?: string): string[] {
  const perms = [
    "--allow-read",
    "--allow-env",
    "--allow-ffi",
    "--allow-sys",
    "--allow-net=127.0.0.1",
  ];
  if (workDir !== undefined) perms.push(`--allow-write=${workDir}`);
  return perms;
}

/** Returns true when this program is a `deno compile` binary rather than Deno running source. */
export function isCompiledBinary(): boolean {
  const exe = Deno.execPath().split("/").pop() ?? "";
  return !(exe === "deno" || exe.startsWith("deno-") || exe === "deno.exe");
}

/** Options of {@link selfCommand}. */
export interface SelfCommandOptions {
  /** Deno permission flags when running from source (default `--allow-all`). */
  permissions?: string[];
}

/**
 * Returns the command line that runs `enarx <subcommand> ...args` with this
 * same program: the compiled binary itself, or this Deno with cli/main.ts.
 */
export function selfCommand(subcommand: string, args: string[], options: SelfCommandOptions = {}) {
  if (isCompiledBinary()) return [Deno.execPath(), subcommand, ...args];
  const main = new URL("../../cli/main.ts", import.meta.url);
  const config = new URL("../../deno.json", import.meta.url);
  return [
    Deno.execPath(),
    "run",
    "--quiet",
    "--no-prompt",
    ...(options.permissions ?? ["--allow-all"]),
    "--config",
    config.pathname,
    main.pathname,
    subcommand,
    ...args,
  ];
}

/** How a keepldr process ended. */
export interface KeepProcessStatus {
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  /** The signal that killed it, or null. */
  signal: string | null;
}

/** A running keepldr as keepmgr sees it. */
export interface KeepProcess {
  /** Its process id (with systemd: the `systemd-run` client's). */
  pid: number;
  /** The systemd unit, when launched through systemd. */
  unit?: string;
  /** Frames to the keep. */
  stdin: WritableStream<Uint8Array>;
  /** Frames from the keep. */
  stdout: ReadableStream<Uint8Array>;
  /** Diagnostics (text lines). */
  stderr: ReadableStream<Uint8Array>;
  /** Resolves when the process has ended. */
  status: Promise<KeepProcessStatus>;
  /** Stops the keep and every process it started; resolves when it has ended. */
  kill(): Promise<void>;
}

/** Options of {@link launchKeepldr}. */
export interface LaunchKeepldrOptions {
  /** Run as a transient systemd unit (systemd must be PID 1). */
  systemd?: boolean;
  /** Memory limit of the whole keep in bytes (systemd MemoryMax). */
  memoryMax?: number;
  /** Run-time limit of the whole keep in seconds (systemd RuntimeMaxSec). */
  runtimeMaxSec?: number;
  /** A work directory for the keep (its temporary files). */
  workDir?: string;
  /** Command that runs wasmldr instead of `enarx wasmldr` (tests use a fake one). */
  wasmldrCommand?: string[];
  /** Command that runs keepldr instead of `enarx keepldr` (tests). */
  keepldrCommand?: string[];
  /** Milliseconds between SIGTERM and SIGKILL when stopping (default 2000). */
  killGraceMs?: number;
}

/**
 * Starts `enarx keepldr --keep ID` for one keep, in a new process group (so
 * that stopping it stops wasmldr too), or as the systemd unit
 * `enarx-keep-<id>`.
 */
export function launchKeepldr(keepId: string, options: LaunchKeepldrOptions = {}): KeepProcess {
  const args = [KEEP_ID_ARG, keepId];
  if (options.workDir !== undefined) args.push("--work-dir", options.workDir);
  if (options.wasmldrCommand !== undefined) {
    args.push("--wasmldr-command", JSON.stringify(options.wasmldrCommand));
  }
  let command = options.keepldrCommand !== undefined
    ? [...options.keepldrCommand, ...args]
    : selfCommand("keepldr", args);
  const unit = options.systemd ? keepUnitName(keepId) : undefined;
  if (unit !== undefined) {
    command = ["systemd-run", ...systemdRunArgs(unit, command, options)];
  }
  const child = new Deno.Command(command[0], {
    args: command.slice(1),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    detached: true, // its own process group: killing -pid stops the keep too
  }).spawn();
  const pid = child.pid;
  const graceMs = options.killGraceMs ?? 2000;
  let ended = false;
  const status = child.status.then((s) => {
    ended = true;
    return { code: s.signal === null ? s.code : null, signal: s.signal };
  });
  async function kill(): Promise<void> {
    if (unit !== undefined) {
      const { stopUnit } = await import("./systemd.ts");
      await stopUnit(unit);
    }
    killGroup(pid, "SIGTERM");
    const timer = new Promise<void>((resolve) => {
      const id = setTimeout(resolve, graceMs);
      status.finally(() => clearTimeout(id));
    });
    await Promise.race([status, timer]);
    // The group may outlive its leader (wasmldr): always finish it off.
    killGroup(pid, "SIGKILL");
    if (!ended) await status;
  }
  return {
    pid,
    unit,
    stdin: child.stdin,
    stdout: child.stdout,
    stderr: child.stderr,
    status,
    kill,
  };
}

/** Sends a signal to a process group, ignoring a group that is gone. */
export function killGroup(pgid: number, signal: Deno.Signal): void {
  try {
    Deno.kill(-pgid, signal);
  } catch { /* no such group */ }
}

/** Options of {@link runKeepldr}. */
export interface RunKeepldrOptions {
  /** The keep id keepmgr assigned (checked against the hello frame). */
  keepId: string;
  /** Frames from keepmgr (default: standard input). */
  input?: ReadableStream<Uint8Array>;
  /** Frames to keepmgr (default: standard output). */
  output?: WritableStream<Uint8Array>;
  /** Work directory for the keep. */
  workDir?: string;
  /** Command that runs wasmldr instead of `enarx wasmldr`. */
  wasmldrCommand?: string[];
  /** Writes a diagnostic line (default: standard error). */
  log?: (line: string) => void;
}

/**
 * The keepldr process: reads hello, launches the keep, relays frames both
 * ways until the keep ends, and reports a keep that dies without saying why
 * as an error frame `keep-died`. Ends the keep when keepmgr goes away
 * (its standard input closes). Returns the process exit status.
 */
export async function runKeepldr(options: RunKeepldrOptions): Promise<number> {
  const log = options.log ?? ((line: string) => console.error(`keepldr: ${line}`));
  const fromMgr = new FrameReader(options.input ?? Deno.stdin.readable, { peer: "keepmgr" });
  const toMgr = new FrameWriter(options.output ?? Deno.stdout.writable);
  const sendError = (code: string, message: string) =>
    toMgr.write({ t: "error", code, message }).catch(() => {});

  let hello: HelloFrame;
  let helloPayload: Uint8Array;
  try {
    const payload = await fromMgr.readPayload();
    if (payload === null) return 0; // keepmgr went away before saying hello
    helloPayload = payload;
    hello = parseHelloFrame(decodeCbor(payload, { what: "hello frame" }));
  } catch (error) {
    const code = error instanceof EnarxError ? error.code : "internal";
    await sendError(code, error instanceof Error ? error.message : String(error));
    await toMgr.close();
    return error instanceof EnarxError ? error.exitStatus : 70;
  }
  if (hello.keep !== options.keepId) {
    await sendError(
      "message-invalid",
      `The hello frame names keep "${hello.keep}" but this keepldr runs keep "${options.keepId}"`,
    );
    await toMgr.close();
    return 76;
  }
  if (!(KEEPLDR_BACKENDS as readonly string[]).includes(hello.backend)) {
    await sendError(
      "backend-unavailable",
      `Backend "${hello.backend}" cannot be launched by this keepldr; use one of ${
        KEEPLDR_BACKENDS.join(", ")
      }`,
    );
    await toMgr.close();
    return 69;
  }

  const command = options.wasmldrCommand ??
    selfCommand("wasmldr", [], { permissions: wasmldrPermissions(options.workDir) });
  const env: Record<string, string> = {};
  if (options.workDir !== undefined) env.TMPDIR = options.workDir;
  let keep: KeepChild;
  let hostPort: number | undefined;
  if (hello.backend === "kvm") {
    try {
      // A computed specifier: `deno run` would otherwise load the kvm image
      // builder's module graph into every nil keepldr too (compile.sh
      // --includes it).
      const { launchKvmKeep }: typeof KvmBackend = await import(
        new URL("../backends/kvm.ts", import.meta.url).href
      );
      const vm = await launchKvmKeep({ workDir: options.workDir ?? Deno.makeTempDirSync(), log });
      keep = vm;
      hostPort = vm.hostPort;
    } catch (error) {
      const code = error instanceof EnarxError ? error.code : "keep-launch";
      await sendError(
        code,
        `Cannot start the kvm keep: ${error instanceof Error ? error.message : error}`,
      );
      await toMgr.close();
      return 69;
    }
  } else {
    try {
      keep = new Deno.Command(command[0], {
        args: command.slice(1),
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
        env,
      }).spawn();
    } catch (error) {
      await sendError("keep-launch", `Cannot start the keep's wasmldr "${command[0]}": ${error}`);
      await toMgr.close();
      return 69;
    }
  }
  const toKeep = new FrameWriter(keep.stdin);
  const fromKeep = new FrameReader(keep.stdout, { peer: "wasmldr" });
  let finalSeen = false;
  let ending = false;

  // keep -> keepmgr: relay unchanged, note the frame that ends the keep.
  const upstream = (async () => {
    while (true) {
      const payload = await fromKeep.readPayload();
      if (payload === null) return;
      const frame = parseUpstreamFrame(decodeCbor(payload, { what: "frame from the wasmldr" }));
      if (frame.t === "exited" || frame.t === "error") finalSeen = true;
      if (frame.t === "listening" && hostPort !== undefined) {
        // kvm: the keep's port is inside the VM; keepmgr reaches it through QEMU's forward.
        await toMgr.writePayload(encodeCbor({ ...frame, port: hostPort }));
        continue;
      }
      await toMgr.writePayload(payload);
    }
  })().catch(async (error) => {
    finalSeen = true;
    await sendError(
      error instanceof MessageError ? "protocol" : (error as EnarxError).code ?? "protocol",
      `The keep broke the protocol: ${error instanceof Error ? error.message : error}`,
    );
    killProcess(keep, "SIGKILL");
  });

  // keepmgr -> keep: hello first, then whatever keepmgr sends; EOF ends the keep.
  const downstream = (async () => {
    await toKeep.writePayload(helloPayload);
    while (true) {
      const payload = await fromMgr.readPayload();
      if (payload === null || ending) break;
      parseDownstreamFrame(decodeCbor(payload, { what: "frame from keepmgr" }));
      await toKeep.writePayload(payload);
    }
    if (ending) return;
    log(`keepmgr closed the channel; stopping keep ${hello.keep}`);
    killProcess(keep, "SIGTERM");
  })().catch((error) => {
    if (ending) return;
    log(`stopping keep ${hello.keep}: ${error instanceof Error ? error.message : error}`);
    killProcess(keep, "SIGKILL");
  });

  const status = await keep.status;
  await upstream;
  if (!finalSeen) {
    const how = status.signal !== null
      ? `was killed by ${status.signal}`
      : `exited with status ${status.code}`;
    const what = hostPort !== undefined ? "VM (QEMU)" : "wasmldr";
    await sendError("keep-died", `The keep's ${what} ${how} before reporting an exit`);
  }
  ending = true;
  await toMgr.close();
  fromMgr.close();
  void downstream;
  return finalSeen ? 0 : 70;
}

/** What runKeepldr needs of a running keep: a nil wasmldr process or a kvm VM. */
interface KeepChild {
  stdin: WritableStream<Uint8Array>;
  stdout: ReadableStream<Uint8Array>;
  status: Promise<Deno.CommandStatus>;
  kill(signal?: Deno.Signal): void;
}

function killProcess(child: KeepChild, signal: Deno.Signal): void {
  try {
    child.kill(signal);
  } catch { /* already gone */ }
}
