/**
 * A kvm keep's VM: one QEMU micro-VM that boots the image of
 * runtime/backends/kvm_image.ts, with the base disk that every keep shares
 * attached read-only. Frames travel on the guest's second serial
 * port (QEMU chardev on a unix socket in the keep's work directory, which
 * keepldr connects to); the guest's console (first serial port) goes to
 * `console.log` there. The workload's HTTPS reaches wasmldr, which listens
 * on 0.0.0.0:8443 in the guest, through QEMU's user-mode network with a
 * forward from a free loopback port of the host; TLS ends inside the VM.
 * The workload's `listen` sockets get their forwards while the keep runs,
 * through QEMU's QMP socket (vm/user_net.ts).
 *
 * Acceleration is TCG (emulation) unless `ENARX_KVM_ACCEL` says `kvm`:
 * nested KVM on this kind of host is slower than emulation. Evidence is the
 * simulated SNP platform's, signed by keepldr on the host over
 * {@link KvmKeep.measurement}: the kernel, initrd and command line QEMU was
 * given. Loaded only when a kvm keep is launched (runtime/backends/kvm.ts).
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import {
  buildKvmImage,
  GUEST_PORT,
  INIT_ERROR_PREFIX,
  type KvmImage,
  READY_MARKER,
} from "./kvm_image.ts";
import { baseDiskArgs } from "./vm/base_disk.ts";
import { findQemu, QEMU } from "./kvm.ts";
import { freeLoopbackPort, QMP_SOCKET_NAME, qmpForwarder, vmNetworkArgs } from "./vm/user_net.ts";

/** A running kvm keep, shaped like the child process of a nil keep. */
export interface KvmKeep {
  /** Frames to wasmldr. */
  stdin: WritableStream<Uint8Array>;
  /** Frames from wasmldr (after the guest's ready line). */
  stdout: ReadableStream<Uint8Array>;
  /** Resolves when QEMU has ended. */
  status: Promise<Deno.CommandStatus>;
  /** Signals QEMU. */
  kill(signal?: Deno.Signal): void;
  /** QEMU's process id. */
  pid: number;
  /** The host loopback port forwarded to wasmldr's port in the guest. */
  hostPort: number;
  /** The port wasmldr listens on in the guest. */
  guestPort: number;
  /** The measurement of the kernel, initrd and command line QEMU boots (as `enarx measure`). */
  measurement: () => Promise<Uint8Array>;
  /** Forwards free host loopback ports to guest ports (the workload's services). */
  forwardGuestPorts: (guestPorts: number[]) => Promise<number[]>;
}

/** Options of {@link launchKvmKeep}. */
export interface LaunchKvmKeepOptions {
  /** The keep's work directory (socket, console log). */
  workDir: string;
  /** Folder of cached images (default `$ENARX_KVM_CACHE_DIR`, else `<workDir>/../../kvm-cache`). */
  cacheDir?: string;
  /** Guest memory in MiB (default 1024). */
  memoryMiB?: number;
  /** Writes a diagnostic line. */
  log?: (line: string) => void;
  /** Start QEMU in a process group of its own (LaunchOptions.detached). */
  detached?: boolean;
}

/** Where QEMU and the guest's image are, or a clear error saying what is missing. */
async function prepare(options: LaunchKvmKeepOptions, log: (line: string) => void) {
  const qemu = findQemu();
  if (qemu === undefined) {
    throw new EnarxError(
      "backend-unavailable",
      `Cannot launch a kvm keep: "${QEMU}" is not on PATH; install qemu-system-x86 ` +
        `(apt-get install qemu-system-x86)`,
      { exit: "unavailable" },
    );
  }
  const cacheDir = options.cacheDir ?? Deno.env.get("ENARX_KVM_CACHE_DIR") ??
    `${options.workDir}/../../kvm-cache`;
  const started = performance.now();
  const image = await buildKvmImage({ cacheDir });
  log(
    `kvm image ${image.built ? "built" : "reused"} in ${
      (performance.now() - started).toFixed(0)
    } ms: ${image.initrd}, base disk ${image.base.path}`,
  );
  const socket = `${options.workDir}/frames.sock`;
  if (new TextEncoder().encode(socket).length > 107) {
    throw new EnarxError(
      "keep-launch",
      `The frames socket path "${socket}" is longer than a unix socket allows (107 bytes); ` +
        `use a shorter keepmgr --state-dir`,
      { exit: "unavailable" },
    );
  }
  return { qemu, image, socket, started };
}

/**
 * The size of TCG's translated-code buffer, in MiB. QEMU's default (1 GiB)
 * let a keep's QEMU touch some 150 MiB of it by the time wasmldr waited for
 * its hello; 64 MiB saved about 100 MiB per keep with no measurable change in
 * the CPU time of a boot (bench/kvm_keep_memory_bench.ts, BENCHMARKS.md).
 * QEMU retranslates what it drops when the buffer fills. KVM keeps have none.
 */
const TCG_TB_MIB = 64;

/** QEMU's command-line arguments for a keep. */
function qemuArgs(
  image: KvmImage,
  options: LaunchKvmKeepOptions,
  vm: { socket: string; hostPort: number; qmpSocket: string },
): string[] {
  const accel = Deno.env.get("ENARX_KVM_ACCEL") === "kvm" ? "kvm" : "tcg";
  return [
    "-machine",
    "q35",
    "-accel",
    accel === "tcg" ? `tcg,tb-size=${TCG_TB_MIB}` : accel,
    "-cpu",
    accel === "kvm" ? "host" : "max",
    "-m",
    String(options.memoryMiB ?? 1024),
    "-smp",
    "1",
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-no-reboot",
    "-serial",
    `file:${options.workDir}/console.log`,
    "-chardev",
    `socket,id=frames,path=${vm.socket},server=on,wait=off`,
    "-serial",
    "chardev:frames",
    ...vmNetworkArgs({ hostPort: vm.hostPort, guestPort: GUEST_PORT }, vm.qmpSocket),
    "-kernel",
    image.kernel,
    "-initrd",
    image.initrd,
    "-append",
    image.append,
    ...baseDiskArgs(image.base.path),
  ];
}

/** Connects to QEMU's frames socket, waiting up to 10 s for QEMU to open it. */
async function connectFrames(
  socket: string,
  exited: () => boolean,
  kill: (signal: Deno.Signal) => void,
): Promise<Deno.UnixConn> {
  const deadline = Date.now() + 10_000;
  while (true) {
    try {
      return await Deno.connect({ transport: "unix", path: socket });
    } catch (error) {
      if (exited() || Date.now() > deadline) {
        kill("SIGKILL");
        throw new EnarxError(
          "keep-launch",
          `QEMU did not open the frames socket "${socket}": ${
            exited() ? "it exited" : error instanceof Error ? error.message : error
          }`,
          { exit: "unavailable" },
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** A writable stream to the guest that holds writes until `ready` resolves. */
function heldWriter(
  conn: Deno.UnixConn,
  ready: Promise<void>,
): WritableStream<Uint8Array> {
  const writer = conn.writable.getWriter();
  return new WritableStream<Uint8Array>({
    async write(chunk) {
      await ready;
      await writer.write(chunk);
    },
    async close() {
      await writer.close().catch(() => {});
    },
    async abort() {
      await writer.abort().catch(() => {});
    },
  });
}

/**
 * Builds (or reuses) the image, starts QEMU and connects to its frames
 * socket. The returned streams carry frames only: the guest's ready line
 * is consumed here.
 */
export async function launchKvmKeep(options: LaunchKvmKeepOptions): Promise<KvmKeep> {
  const log = options.log ?? (() => {});
  const { qemu, image, socket, started } = await prepare(options, log);
  const hostPort = freeLoopbackPort();
  const qmpSocket = `${options.workDir}/${QMP_SOCKET_NAME}`;
  const child = new Deno.Command(qemu, {
    args: qemuArgs(image, options, { socket, hostPort, qmpSocket }),
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
    detached: options.detached,
  }).spawn();
  const kill = (signal: Deno.Signal = "SIGTERM") => {
    try {
      child.kill(signal);
    } catch { /* already gone */ }
  };
  let exited = false;
  let failure: string | undefined;
  const status = child.status.then(async (s) => {
    exited = true;
    // The guest's console explains a VM that ended early: pass on its last lines.
    const text = await Deno.readTextFile(`${options.workDir}/console.log`).catch(() => "");
    for (const line of text.trimEnd().split("\n").slice(-20)) log(`guest: ${line.trimEnd()}`);
    failure = guestFailure(text, image);
    if (failure !== undefined) log(failure);
    return s;
  });
  const conn = await connectFrames(socket, () => exited, kill);
  log(`qemu started (pid ${child.pid}, host port ${hostPort})`);
  // Nothing goes to the guest before its port is raw (no echo): hold writes until ready.
  const ready = Promise.withResolvers<void>();
  const failed = (why: string) => new EnarxError("keep-launch", why, { exit: "unavailable" });
  status.then(() =>
    ready.reject(
      failed(
        failure ?? "QEMU exited before the guest was ready; see the guest's console lines above",
      ),
    )
  );
  ready.promise.catch(() => {});
  const frames = afterMarker(conn.readable, () => {
    log(`guest ready in ${(performance.now() - started).toFixed(0)} ms`);
    ready.resolve();
  });
  return {
    stdin: heldWriter(conn, ready.promise),
    // A block of the base disk can fail verification whenever the guest reads it: the
    // frames then end with the reason rather than quietly.
    stdout: frames.pipeThrough(endsWithFailure(status.then(() => failure), failed)),
    status,
    kill,
    pid: child.pid,
    hostPort,
    guestPort: GUEST_PORT,
    measurement: () => measureImage(image),
    forwardGuestPorts: qmpForwarder(qmpSocket),
  };
}

/**
 * Why the guest stopped, from its console: its base disk failed dm-verity
 * (the kernel names the block; kvm_image.ts's init panics on it), or its
 * init printed an error. Undefined when the console says neither.
 */
export function guestFailure(console: string, image: Pick<KvmImage, "base">): string | undefined {
  const lines = console.split("\n").map((l) => l.trim());
  const verity = lines.find((l) =>
    /verity: .*(corrupted|error)|dm-verity device corrupted/.test(l)
  );
  if (verity !== undefined) {
    return `The keep's base disk "${image.base.path}" failed verification (dm-verity: ` +
      `"${verity.replace(/^\[[ .0-9]*\] /, "")}"): it is not the disk whose root hash the ` +
      `keep's measured command line names; delete it and its .verity.json to have it rebuilt`;
  }
  const init = lines.find((l) => l.startsWith(INIT_ERROR_PREFIX));
  if (init !== undefined) return `The keep's init stopped: ${init.slice(INIT_ERROR_PREFIX.length)}`;
  return undefined;
}

/** The kvm measurement of the files QEMU was given, by runtime/measure/keep_measure.ts. */
async function measureImage(image: KvmImage): Promise<Uint8Array> {
  const { keepMeasurement } = await import("../measure/keep_measure.ts");
  const measured = await keepMeasurement("kvm", {
    kernelFile: image.kernel,
    initrd: image.initrd,
    append: image.append,
  });
  return measured.digest;
}

/**
 * Passes frames through; when they end, waits (up to 5 s) for QEMU's end
 * and errors the stream with `failure`'s reason if the console gave one.
 */
function endsWithFailure(
  failure: Promise<string | undefined>,
  error: (why: string) => Error,
): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream<Uint8Array, Uint8Array>({
    async flush(controller) {
      let timer: number | undefined;
      const why = await Promise.race([
        failure,
        new Promise<undefined>((r) => timer = setTimeout(r, 5000)),
      ]);
      clearTimeout(timer);
      if (why !== undefined) controller.error(error(why));
    },
  });
}

/** Drops everything up to and including the guest's ready line, then passes bytes through. */
function afterMarker(
  source: ReadableStream<Uint8Array>,
  onReady: () => void,
): ReadableStream<Uint8Array> {
  const marker = new TextEncoder().encode(READY_MARKER);
  let matched = 0;
  let ready = false;
  return source.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        if (ready) {
          controller.enqueue(chunk);
          return;
        }
        for (let i = 0; i < chunk.length; i++) {
          matched = chunk[i] === marker[matched] ? matched + 1 : chunk[i] === marker[0] ? 1 : 0;
          if (matched === marker.length) {
            ready = true;
            onReady();
            if (i + 1 < chunk.length) controller.enqueue(chunk.subarray(i + 1));
            return;
          }
        }
      },
    }),
  );
}
