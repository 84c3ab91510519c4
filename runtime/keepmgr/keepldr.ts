/**
 * keepldr, the untrusted host-side loader of one keep. keepmgr starts it
 * ({@link launchKeepldr}) with frames on its stdin/stdout; it launches the
 * keep for the backend named in the hello frame and relays frames between
 * keepmgr and the wasmldr inside the keep ({@link runKeepldr}). It never
 * sees a plaintext key or workload: the sealed key passes through as
 * ciphertext and the workload travels over TLS that ends inside the keep.
 *
 * The keep comes from the backend registry (runtime/backends/mod.ts): a nil
 * keep is a separate `enarx wasmldr` process, a kvm keep a QEMU micro-VM
 * whose wasmldr speaks frames on the guest's second serial port. Where the
 * keep's network is not the host's (kvm, sev), keepldr rewrites the port of the
 * `listening` frame to the host port that reaches it, and the ports of the
 * `services` frame to host ports it has QEMU forward to them
 * (runtime/backends/vm/user_net.ts): the only fields it changes; TLS still
 * ends inside the keep.
 *
 * keepldr is also where the simulated SNP platform sits for nil and kvm
 * keeps (host_simulator.ts): it answers the keep's `report-request` frames
 * itself, with a report over the measurement of what it launched; they
 * never reach keepmgr.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import { backendByName, type KeepHandle, launchingBackends } from "../backends/mod.ts";
import { FrameReader, FrameWriter } from "../protocol/frames.ts";
import { decodeCbor, encodeCbor } from "../protocol/cbor.ts";
import {
  type HelloFrame,
  MessageError,
  parseDownstreamFrame,
  parseHelloFrame,
  parseKeepFrame,
} from "../protocol/messages.ts";
import { forwardVmServices } from "../backends/vm/user_net.ts";
import { type HostReportSigner, hostReportSigner, SNP_SIM_DIR_ENV } from "./host_simulator.ts";
import { keepUnitName, systemdRunArgs } from "./systemd.ts";
import { selfCommand } from "./self_command.ts";

/** Backends that keepldr can launch on this build (the registry's launching backends). */
export const KEEPLDR_BACKENDS: readonly string[] = launchingBackends().map((b) => b.name);

/** Argument of `enarx keepldr` that names the keep (also used to recognise leftovers). */
export const KEEP_ID_ARG = "--keep";

export {
  isCompiledBinary,
  selfCommand,
  type SelfCommandOptions,
  wasmldrPermissions,
} from "./self_command.ts";

/** Memory a keep's loaders (keepldr and wasmldr, two Deno processes) take besides the workload. */
export const KEEP_LOADER_MEMORY = 256 * 1024 * 1024;

/** How a keepldr process ended. */
export interface KeepProcessStatus {
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  /** The signal that killed it, or null. */
  signal: string | null;
}

/** A running keepldr as keepmgr sees it. */
export interface KeepProcess {
  /**
   * Its process id (with systemd: the `systemd-run` client's; hosted by
   * keepmgr: the keep's own), none when the keep never started.
   */
  pid?: number;
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
  /**
   * Memory limit of the keep's workload in bytes; the systemd unit's
   * MemoryMax= is this plus {@link KEEP_LOADER_MEMORY}, so that the workload
   * meets its own limit (status 126) before the kernel kills the keep.
   */
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
  const simDir = Deno.env.get(SNP_SIM_DIR_ENV);
  if (simDir !== undefined && simDir !== "") args.push("--snp-sim-dir", simDir);
  let command = options.keepldrCommand !== undefined
    ? [...options.keepldrCommand, ...args]
    : selfCommand("keepldr", args);
  const unit = options.systemd ? keepUnitName(keepId) : undefined;
  if (unit !== undefined) {
    const memoryMax = options.memoryMax === undefined
      ? undefined
      : options.memoryMax + KEEP_LOADER_MEMORY;
    command = [
      "systemd-run",
      ...systemdRunArgs(unit, command, { ...options, memoryMax, env: cacheEnv() }),
    ];
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
  const status = child.status.then((s) => ({
    code: s.signal === null ? s.code : null,
    signal: s.signal,
  }));
  async function kill(): Promise<void> {
    if (unit !== undefined) {
      const { stopUnit } = await import("./systemd.ts");
      await stopUnit(unit);
    }
    // The group may outlive its leader (wasmldr): always finish it off.
    await terminate((signal) => killGroup(pid, signal), status, graceMs);
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

/** keepmgr's `XDG_CACHE_HOME` and `HOME`, where set: what a keepldr unit needs to find the caches. */
function cacheEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of ["XDG_CACHE_HOME", "HOME"]) {
    const value = Deno.env.get(name);
    if (value !== undefined && value !== "") env[name] = value;
  }
  return env;
}

/**
 * Sends SIGTERM through `signal`, waits up to `graceMs` for `status`, then
 * sends SIGKILL (whatever is left of a process group) and waits for the end.
 */
export async function terminate(
  signal: (signal: Deno.Signal) => void,
  status: Promise<unknown>,
  graceMs: number,
): Promise<void> {
  signal("SIGTERM");
  const timer = new Promise<void>((resolve) => {
    const id = setTimeout(resolve, graceMs);
    status.finally(() => clearTimeout(id));
  });
  await Promise.race([status, timer]);
  signal("SIGKILL");
  await status;
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
  /** The simulated SNP platform's state (default `$ENARX_SNP_SIM_DIR`). */
  simDir?: string;
  /** Writes a diagnostic line (default: standard error). */
  log?: (line: string) => void;
  /**
   * A keep launched before its hello arrived (keepmgr hosting keepldr's
   * part itself, from its warm pool or at once): relayed instead of
   * launching one. The hello must name its backend.
   */
  launched?: { backend: string; keep: Promise<KeepHandle> };
}

/** The keepldr's side of its channel to keepmgr. */
interface MgrChannel {
  fromMgr: FrameReader;
  toMgr: FrameWriter;
  /** Sends an error frame, ignoring a channel that is gone. */
  sendError(code: string, message: string): Promise<void>;
}

/** Ends the channel with an error frame and returns `status`. */
async function fail(mgr: MgrChannel, status: number, code: string, message: string) {
  await mgr.sendError(code, message);
  await mgr.toMgr.close();
  return status;
}

/**
 * Reads the hello frame and checks it names this keep and a backend keepldr
 * launches. Returns it with its payload, or the exit status to end with.
 */
async function readHello(
  mgr: MgrChannel,
  keepId: string,
): Promise<{ hello: HelloFrame; payload: Uint8Array } | number> {
  let hello: HelloFrame;
  let payload: Uint8Array | null;
  try {
    payload = await mgr.fromMgr.readPayload();
    if (payload === null) return 0; // keepmgr went away before saying hello
    hello = parseHelloFrame(decodeCbor(payload, { what: "hello frame" }));
  } catch (error) {
    const code = error instanceof EnarxError ? error.code : "internal";
    return await fail(
      mgr,
      error instanceof EnarxError ? error.exitStatus : 70,
      code,
      error instanceof Error ? error.message : String(error),
    );
  }
  if (hello.keep !== keepId) {
    return await fail(
      mgr,
      76,
      "message-invalid",
      `The hello frame names keep "${hello.keep}" but this keepldr runs keep "${keepId}"`,
    );
  }
  if (!KEEPLDR_BACKENDS.includes(hello.backend)) {
    return await fail(
      mgr,
      69,
      "backend-unavailable",
      `Backend "${hello.backend}" cannot be launched by this keepldr; use one of ${
        KEEPLDR_BACKENDS.join(", ")
      }`,
    );
  }
  return { hello, payload };
}

/** State shared by the two relays of one keep. */
interface Relay {
  keep: KeepHandle;
  mgr: MgrChannel;
  /** Frames to the keep. */
  toKeep: FrameWriter;
  /** Answers the keep's report requests. */
  reports: HostReportSigner;
  /** The keep sent the frame that ends it (exited or error). */
  finalSeen: boolean;
  /** keepldr is ending: the downstream relay stops quietly. */
  ending: boolean;
}

/** keep -> keepmgr: relays frames unchanged but for the listening port; notes the final one. */
async function relayUpstream(relay: Relay): Promise<void> {
  const { keep, mgr } = relay;
  const fromKeep = new FrameReader(keep.stdout, { peer: "wasmldr" });
  try {
    while (true) {
      const payload = await fromKeep.readPayload();
      if (payload === null) return;
      const frame = parseKeepFrame(decodeCbor(payload, { what: "frame from the wasmldr" }));
      if (frame.t === "report-request") {
        await relay.toKeep.write(await relay.reports.answer(frame));
        continue;
      }
      if (frame.t === "exited" || frame.t === "error") relay.finalSeen = true;
      if (frame.t === "listening" && keep.hostPort !== undefined) {
        // kvm: the keep's port is inside the VM; keepmgr reaches it through QEMU's forward.
        await mgr.toMgr.writePayload(encodeCbor({ ...frame, port: keep.hostPort }));
        continue;
      }
      if (frame.t === "services" && keep.forwardGuestPorts !== undefined) {
        // kvm, sev: the services listen inside the VM; QEMU forwards host ports to them.
        const onHost = await forwardVmServices(frame, keep.forwardGuestPorts);
        await mgr.toMgr.writePayload(encodeCbor(onHost));
        continue;
      }
      await mgr.toMgr.writePayload(payload);
    }
  } catch (error) {
    relay.finalSeen = true;
    const code = error instanceof MessageError
      ? "protocol"
      : (error as EnarxError).code ?? "protocol";
    const message = error instanceof Error ? error.message : String(error);
    await mgr.sendError(
      code,
      code === "service-forward" ? message : `The keep broke the protocol: ${message}`,
    );
    killProcess(keep, "SIGKILL");
  }
}

/** keepmgr -> keep: hello first, then whatever keepmgr sends; EOF ends the keep. */
async function relayDownstream(
  relay: Relay,
  hello: { keep: string; payload: Uint8Array },
  log: (line: string) => void,
): Promise<void> {
  const { keep, mgr, toKeep } = relay;
  try {
    await toKeep.writePayload(hello.payload);
    while (true) {
      const payload = await mgr.fromMgr.readPayload();
      if (payload === null || relay.ending) break;
      parseDownstreamFrame(decodeCbor(payload, { what: "frame from keepmgr" }));
      await toKeep.writePayload(payload);
    }
    if (relay.ending) return;
    log(`keepmgr closed the channel; stopping keep ${hello.keep}`);
    killProcess(keep, "SIGTERM");
  } catch (error) {
    if (relay.ending) return;
    log(`stopping keep ${hello.keep}: ${error instanceof Error ? error.message : error}`);
    killProcess(keep, "SIGKILL");
  }
}

/**
 * The keepldr process: reads hello, launches the keep, relays frames both
 * ways until the keep ends, and reports a keep that dies without saying why
 * as an error frame `keep-died`. Ends the keep when keepmgr goes away
 * (its standard input closes). Returns the process exit status.
 */
export async function runKeepldr(options: RunKeepldrOptions): Promise<number> {
  const log = options.log ?? ((line: string) => console.error(`keepldr: ${line}`));
  const toMgr = new FrameWriter(options.output ?? Deno.stdout.writable);
  const mgr: MgrChannel = {
    fromMgr: new FrameReader(options.input ?? Deno.stdin.readable, { peer: "keepmgr" }),
    toMgr,
    sendError: (code, message) => toMgr.write({ t: "error", code, message }).catch(() => {}),
  };
  const opened = await readHello(mgr, options.keepId);
  if (typeof opened === "number") return opened;
  const { hello, payload } = opened;

  let keep: KeepHandle;
  try {
    keep = await launchFor(hello.backend, options, log);
  } catch (error) {
    const code = error instanceof EnarxError ? error.code : "keep-launch";
    return await fail(mgr, 69, code, error instanceof Error ? error.message : String(error));
  }
  const backend = backendByName(hello.backend)!;
  const relay: Relay = {
    keep,
    mgr,
    toKeep: new FrameWriter(keep.stdin),
    reports: hostReportSigner(backend, keep, { simDir: options.simDir }),
    finalSeen: false,
    ending: false,
  };
  const upstream = relayUpstream(relay);
  const downstream = relayDownstream(relay, { keep: hello.keep, payload }, log);

  const status = await keep.status;
  await upstream;
  if (!relay.finalSeen) {
    const how = status.signal !== null
      ? `was killed by ${status.signal}`
      : `exited with status ${status.code}`;
    await mgr.sendError("keep-died", `The keep's ${keep.what} ${how} before reporting an exit`);
  }
  relay.ending = true;
  await toMgr.close();
  mgr.fromMgr.close();
  void downstream;
  return relay.finalSeen ? 0 : 70;
}

/** The keep of `backend`: the one launched ahead ({@link RunKeepldrOptions.launched}), or a new one. */
function launchFor(
  backend: string,
  options: RunKeepldrOptions,
  log: (line: string) => void,
): Promise<KeepHandle> {
  if (options.launched === undefined) {
    return backendByName(backend)!.launch({
      workDir: options.workDir,
      wasmldrCommand: options.wasmldrCommand,
      log,
    });
  }
  if (options.launched.backend !== backend) {
    return Promise.reject(
      new EnarxError(
        "backend-mismatch",
        `The hello frame asks for a ${backend} keep, but this is a ${options.launched.backend} keep`,
        { exit: "protocol" },
      ),
    );
  }
  return options.launched.keep;
}

function killProcess(keep: KeepHandle, signal: Deno.Signal): void {
  try {
    keep.kill(signal);
  } catch { /* already gone */ }
}
