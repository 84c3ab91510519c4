/**
 * Launching a `sev` keep: finding each piece it needs (QEMU >= 9.1, the
 * AmdSev OVMF of tools/build_ovmf.sh, the keep kernel, /dev/kvm, /dev/sev,
 * kvm_amd's `sev_snp=1`, the C-bit position from CPUID Fn8000_001F), then starting
 * QEMU with the command line of sev_qemu.ts and connecting to the guest's
 * frames port. A missing piece is an error (exit 69) naming every missing
 * piece; a QEMU that fails to start the SNP guest is one too, with its
 * error line and what to check. The keep image (kernel, initrd, base disk) is kvm's
 * (kvm_image.ts); wasmldr inside gets its report from the guest's
 * /dev/sev-guest or configfs-tsm.
 *
 * @module
 */
import { EnarxError } from "../../errors.ts";
import { amdSevOvmfPath } from "../../dirs.ts";
import { findKvmKernel, type KvmKernel } from "../kvm_kernel.ts";
import type { LaunchPiece } from "../../platform/host_facts.ts";
import { findQemu, QEMU } from "../kvm.ts";
import { freeLoopbackPort, QMP_SOCKET_NAME, qmpForwarder } from "../vm/user_net.ts";
import {
  explainSnpFailure,
  type HashesLoad,
  parseQemuVersion,
  qemuSupportsSnp,
  SEV_MIN_QEMU,
  sevQemuArgs,
  type SevQemuOptions,
  type SnpAddressBits,
  snpAddressBits,
} from "./sev_qemu.ts";

/** What this module uses of kvm_image.ts, loaded when a keep is launched (as kvm.ts does). */
interface KvmImageModule {
  buildKvmImage(
    options: { cacheDir: string },
  ): Promise<KvmKernel & { initrd: string; append: string; base: { path: string } }>;
  GUEST_PORT: number;
}

/** What this module uses of runtime/measure/keep_measure.ts (loaded when a keep is measured). */
interface KeepMeasureModule {
  keepMeasurement(
    backend: string,
    options: { ovmf?: string; vcpus?: number; vcpuType?: string; cacheDir?: string },
  ): Promise<{ digest: Uint8Array }>;
}

/** The vCPU count of a sev keep (what its measurement's VMSAs count). */
export const SEV_VCPUS = 1;

/** QEMU's CPU model of a sev keep: `ENARX_SEV_VCPU_TYPE`, else `EPYC-Milan`. */
export function sevVcpuType(): string {
  return Deno.env.get("ENARX_SEV_VCPU_TYPE") || "EPYC-Milan";
}

/** The image cache of sev keeps: `ENARX_KVM_CACHE_DIR`, else `fallback`. */
function sevImageCache(fallback?: string): string | undefined {
  return Deno.env.get("ENARX_KVM_CACHE_DIR") || fallback;
}

/**
 * The measurement a sev keep launched here reports: the SEV-SNP launch
 * digest of the OVMF, kernel, initrd, command line, vCPU count and CPU model
 * that {@link launchSevKeep} gives QEMU (`enarx measure --backend sev`
 * computes the same with the same inputs). Undefined when there is no
 * AmdSev OVMF to measure.
 */
export async function sevKeepMeasurement(): Promise<Uint8Array | undefined> {
  const ovmf = sevOvmfPath();
  if (!fileExists(ovmf)) return undefined;
  const { keepMeasurement }: KeepMeasureModule = await import(
    new URL("../../measure/keep_measure.ts", import.meta.url).href
  );
  const measured = await keepMeasurement("sev", {
    ovmf,
    vcpus: SEV_VCPUS,
    vcpuType: sevVcpuType(),
    cacheDir: sevImageCache(),
  });
  return measured.digest;
}

/** The line the guest's init writes on the frames port once it is raw (kvm_image.ts). */
export const READY_MARKER = "ENARX-KVM-READY\n";

/** The kernel command line of a sev keep, before its base disk's `enarx.verity=` (kvm_image.ts). */
export const SEV_APPEND = "console=ttyS0 quiet panic=-1";

/** The CPUID leaf that describes AMD memory encryption. */
const CPUID_SEV_LEAF = 0x8000001f;

/** One thing a sev keep needs, found or not. */
export type SevPiece = LaunchPiece;

/** The AmdSev OVMF: `ENARX_SEV_OVMF`, else `ovmf-amdsev/OVMF.fd` in the bootstrap cache. */
export function sevOvmfPath(): string {
  return amdSevOvmfPath();
}

/** The QEMU of sev keeps (`ENARX_SEV_QEMU`, else qemu-system-x86_64 on PATH) and its version. */
export function sevQemu(): { path?: string; version?: [number, number, number] } {
  const path = Deno.env.get("ENARX_SEV_QEMU") || findQemu();
  if (path === undefined) return {};
  try {
    const out = new Deno.Command(path, { args: ["--version"], stdout: "piped", stderr: "null" })
      .outputSync();
    return { path, version: parseQemuVersion(new TextDecoder().decode(out.stdout)) };
  } catch {
    return { path };
  }
}

/**
 * CPUID Fn8000_001F's C-bit position and reduced physical bits, read from
 * /dev/cpu/0/cpuid (the `cpuid` module; root); undefined when unreadable.
 */
export function readSnpAddressBits(): SnpAddressBits | undefined {
  try {
    using file = Deno.openSync("/dev/cpu/0/cpuid", { read: true });
    file.seekSync(CPUID_SEV_LEAF, Deno.SeekMode.Start);
    const regs = new Uint8Array(16);
    if (file.readSync(regs) !== 16) return undefined;
    const view = new DataView(regs.buffer);
    // EAX bit 4: SEV-SNP. EBX: C-bit position and reduced physical bits.
    if ((view.getUint32(0, true) & 0x10) === 0) return undefined;
    return snpAddressBits(view.getUint32(4, true));
  } catch {
    return undefined;
  }
}

function fileExists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function kernelPiece(): SevPiece & { kernel?: KvmKernel } {
  const name = "keep kernel";
  try {
    const kernel = findKvmKernel();
    return { name, ok: true, detail: kernel.kernel, fix: "", kernel };
  } catch (error) {
    return {
      name,
      ok: false,
      detail: error instanceof Error ? error.message : String(error),
      fix: "tools/test.sh fetches Debian's cloud kernel, or set ENARX_KVM_KERNEL",
    };
  }
}

/** Every piece a sev keep needs on this host, in order. */
export function sevPieces(): SevPiece[] {
  const qemu = sevQemu();
  const min = SEV_MIN_QEMU.join(".");
  const ovmf = sevOvmfPath();
  const kvm = (() => {
    try {
      using _f = Deno.openSync("/dev/kvm", { read: true, write: true });
      return "ok";
    } catch (error) {
      return error instanceof Error ? error.name : String(error);
    }
  })();
  const sevDevice = (() => {
    try {
      using _f = Deno.openSync("/dev/sev", { read: true, write: true });
      return "ok";
    } catch (error) {
      return error instanceof Error ? error.name : String(error);
    }
  })();
  const snp = (() => {
    try {
      return Deno.readTextFileSync("/sys/module/kvm_amd/parameters/sev_snp").trim();
    } catch {
      return undefined;
    }
  })();
  const { kernel: _, ...kernel } = kernelPiece();
  const cbit = readSnpAddressBits();
  return [
    {
      name: `QEMU >= ${min}`,
      ok: qemu.version !== undefined && qemuSupportsSnp(qemu.version),
      detail: qemu.path === undefined
        ? `${QEMU} is not on PATH`
        : `${qemu.path}: ${qemu.version?.join(".") ?? "unknown version"}`,
      fix: `install QEMU >= ${min} (Debian bookworm: tools/qemu_backports.sh installs ` +
        "qemu-system-x86 from bookworm-backports), or set ENARX_SEV_QEMU to its qemu-system-x86_64",
    },
    {
      name: "OVMF (AmdSev build)",
      ok: fileExists(ovmf),
      detail: fileExists(ovmf) ? ovmf : `${ovmf} is missing`,
      fix: "run tools/build_ovmf.sh, or set ENARX_SEV_OVMF to an AmdSevX64 OVMF.fd",
    },
    kernel,
    {
      name: "/dev/kvm",
      ok: kvm === "ok",
      detail: kvm === "ok" ? "opens read-write" : `cannot open: ${kvm}`,
      fix: "load kvm_amd and give this user access to /dev/kvm (the kvm group)",
    },
    {
      name: "/dev/sev (SEV firmware)",
      ok: sevDevice === "ok",
      detail: sevDevice === "ok" ? "opens read-write" : `cannot open: ${sevDevice}`,
      fix: "QEMU talks to the AMD secure processor's firmware through /dev/sev: the ccp driver " +
        "provides it once the firmware enables SEV-SNP (modprobe ccp; dmesg | grep -i sev)",
    },
    {
      name: "kvm_amd sev_snp=1",
      ok: snp === "Y" || snp === "1",
      detail: snp === undefined
        ? "kvm_amd has no sev_snp parameter (not loaded)"
        : `sev_snp=${snp}`,
      fix: "modprobe -r kvm_amd; modprobe kvm_amd sev=1 sev_es=1 sev_snp=1, on a host whose " +
        "firmware enables SEV-SNP",
    },
    {
      name: "SEV-SNP in CPUID Fn8000_001F (C-bit position)",
      ok: cbit !== undefined,
      detail: cbit === undefined
        ? "unreadable or SNP absent (/dev/cpu/0/cpuid)"
        : `cbitpos=${cbit.cbitpos}, reduced-phys-bits=${cbit.reducedPhysBits}`,
      fix: "an AMD EPYC (Milan or later) with SEV-SNP on in the firmware; modprobe cpuid",
    },
  ];
}

/** The error naming every missing piece of `pieces`, or undefined when none is missing. */
export function missingPiecesError(pieces: SevPiece[]): EnarxError | undefined {
  const missing = pieces.filter((p) => !p.ok);
  if (missing.length === 0) return undefined;
  return new EnarxError(
    "backend-unavailable",
    `Cannot launch a sev keep: missing ${missing.map((p) => p.name).join(", ")}. ` +
      missing.map((p) => `${p.name}: ${p.detail}; ${p.fix}`).join(". "),
    { exit: "unavailable" },
  );
}

/** The error of a QEMU that could not start an SNP guest (exit 69). */
export function snpLaunchError(stderr: string): EnarxError {
  const { line, checks } = explainSnpFailure(stderr);
  return new EnarxError(
    "backend-unavailable",
    `QEMU could not start the SEV-SNP guest: ${line}. Check: ${checks.join("; ")}`,
    { exit: "unavailable" },
  );
}

/** Options of {@link startSevQemu}. */
export interface StartSevQemuOptions
  extends Omit<SevQemuOptions, "framesSocket" | "consoleLog" | "hostPort" | "qmpSocket"> {
  /** The QEMU program. */
  qemu: string;
  /** The keep's work directory (frames socket, console log). */
  workDir: string;
  /** A hashes page to load (no-SNP boots); see {@link SevQemuOptions.hashes}. */
  hashes?: HashesLoad;
}

/** A started sev keep's QEMU. */
export interface SevQemu {
  /** The QEMU process. */
  child: Deno.ChildProcess;
  /** The frames socket (QEMU listens). */
  framesSocket: string;
  /** The host port forwarded to wasmldr. */
  hostPort: number;
  /** QEMU's QMP socket. */
  qmpSocket: string;
  /** The guest console's file. */
  consoleLog: string;
  /** QEMU's stderr so far (whole once it has exited). */
  stderr(): string;
}

/** Starts QEMU for a sev keep (or its no-SNP twin) and collects its stderr. */
export function startSevQemu(options: StartSevQemuOptions): SevQemu {
  const framesSocket = `${options.workDir}/frames.sock`;
  const consoleLog = `${options.workDir}/console.log`;
  const hostPort = freeLoopbackPort();
  const qmpSocket = `${options.workDir}/${QMP_SOCKET_NAME}`;
  const { qemu, workDir: _, ...rest } = options;
  const child = new Deno.Command(qemu, {
    args: sevQemuArgs({ ...rest, framesSocket, consoleLog, hostPort, qmpSocket }),
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  child.stderr.pipeTo(
    new WritableStream({
      write: (chunk) => void (text += decoder.decode(chunk, { stream: true })),
    }),
  ).catch(() => {});
  return { child, framesSocket, hostPort, qmpSocket, consoleLog, stderr: () => text };
}

/** A running sev keep, shaped like a kvm keep. */
export interface SevKeep {
  /** Frames to wasmldr. */
  stdin: WritableStream<Uint8Array>;
  /** Frames from wasmldr (after the guest's ready line). */
  stdout: ReadableStream<Uint8Array>;
  /** Resolves when QEMU has ended. */
  status: Promise<Deno.CommandStatus>;
  /** Resolved: {@link bootSevKeep} returns once the guest's init has written its ready line. */
  ready: Promise<void>;
  /** Signals QEMU. */
  kill(signal?: Deno.Signal): void;
  /** The host loopback port forwarded to wasmldr. */
  hostPort: number;
  /** Forwards free host loopback ports to guest ports (the workload's services). */
  forwardGuestPorts: (guestPorts: number[]) => Promise<number[]>;
  /** The guest console's file. */
  consoleLog: string;
}

/**
 * Starts QEMU, connects to the frames port and waits for the guest's ready
 * line. QEMU opens that port before it creates the machine (KVM, SNP), so a
 * connection proves nothing: a QEMU that ends before the ready line failed
 * to start the guest, for an SNP guest {@link snpLaunchError} (exit 69).
 */
export async function bootSevKeep(
  options: StartSevQemuOptions & {
    log?: (line: string) => void;
    /** How long the guest may take to reach its ready line (default 120 s). */
    readyTimeoutMs?: number;
  },
): Promise<SevKeep> {
  const { log = () => {}, readyTimeoutMs = 120_000, ...start } = options;
  const started = performance.now();
  const vm = startSevQemu(start);
  const kill = (signal: Deno.Signal = "SIGTERM") => {
    try {
      vm.child.kill(signal);
    } catch { /* already gone */ }
  };
  let exited = false;
  const status = vm.child.status.then((s) => {
    exited = true;
    return s;
  });
  const failed = async (why?: string): Promise<EnarxError> => {
    kill("SIGKILL");
    await status;
    await new Promise((r) => setTimeout(r, 50)); // the rest of stderr
    if (why !== undefined) {
      return new EnarxError("keep-launch", `The sev keep did not start: ${why}`, {
        exit: "unavailable",
      });
    }
    if (options.snp !== undefined) return snpLaunchError(vm.stderr());
    return new EnarxError(
      "keep-launch",
      `QEMU did not start the keep: ${explainSnpFailure(vm.stderr()).line}`,
      { exit: "unavailable" },
    );
  };
  const conn = await connectUnix(vm.framesSocket, () => exited);
  if (conn === undefined) throw await failed();
  log(`qemu started (pid ${vm.child.pid}, host port ${vm.hostPort})`);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    kill("SIGKILL");
  }, readyTimeoutMs);
  const reader = conn.readable.getReader();
  let rest: Uint8Array | undefined;
  try {
    rest = await readUntilReady(reader);
  } finally {
    clearTimeout(timer);
  }
  if (rest === undefined) {
    try {
      conn.close();
    } catch { /* closed with its stream */ }
    throw await failed(
      timedOut
        ? `the guest wrote no ready line within ${
          readyTimeoutMs / 1000
        } s (console: ${vm.consoleLog})`
        : undefined,
    );
  }
  log(`guest ready in ${(performance.now() - started).toFixed(0)} ms`);
  const leftover = rest;
  return {
    stdin: conn.writable,
    stdout: prependTo(leftover, reader),
    status,
    ready: Promise.resolve(),
    kill,
    hostPort: vm.hostPort,
    forwardGuestPorts: qmpForwarder(vm.qmpSocket),
    consoleLog: vm.consoleLog,
  };
}

/** Connects to `path` within 10 s, unless `gone()` says its server has ended. */
async function connectUnix(path: string, gone: () => boolean): Promise<Deno.UnixConn | undefined> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await Deno.connect({ transport: "unix", path });
    } catch {
      if (gone() || Date.now() > deadline) return undefined;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** A stream of `first` followed by what `reader` still gives. */
function prependTo(
  first: Uint8Array,
  reader: ReadableStreamDefaultReader<Uint8Array>,
): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (first.length > 0) controller.enqueue(first);
    },
    async pull(controller) {
      const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }));
      if (done || value === undefined) controller.close();
      else controller.enqueue(value);
    },
    cancel: () => reader.cancel().catch(() => {}),
  });
}

/**
 * Reads the guest's output up to and including its ready line and returns
 * what followed it in the same chunk, or `undefined` if the stream ended
 * first (QEMU exited or was killed).
 */
async function readUntilReady(
  reader: ReadableStreamDefaultReader<Uint8Array>,
): Promise<Uint8Array | undefined> {
  const marker = new TextEncoder().encode(READY_MARKER);
  let matched = 0;
  for (;;) {
    const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }));
    if (done || value === undefined) return undefined;
    for (let i = 0; i < value.length; i++) {
      matched = value[i] === marker[matched] ? matched + 1 : value[i] === marker[0] ? 1 : 0;
      if (matched === marker.length) return value.subarray(i + 1);
    }
  }
}

/** Options of {@link launchSevKeep}. */
export interface LaunchSevKeepOptions {
  /** The keep's work directory. */
  workDir: string;
  /** Folder of cached keep images (default `$ENARX_KVM_CACHE_DIR`, else beside the work dir). */
  cacheDir?: string;
  /** Writes a diagnostic line. */
  log?: (line: string) => void;
}

/**
 * Launches a sev keep: checks every piece (exit 69 naming the missing
 * ones), builds or reuses the keep image, boots it as an SEV-SNP guest.
 */
export async function launchSevKeep(options: LaunchSevKeepOptions): Promise<SevKeep> {
  const log = options.log ?? (() => {});
  const error = missingPiecesError(sevPieces());
  if (error !== undefined) throw error;
  const cbit = readSnpAddressBits()!;
  const cacheDir = options.cacheDir ?? sevImageCache(`${options.workDir}/../../kvm-cache`)!;
  // The same image as kvm keeps: no simulator state, no key; its evidence is the hardware's.
  const { buildKvmImage, GUEST_PORT }: KvmImageModule = await import(
    new URL("../kvm_image.ts", import.meta.url).href
  );
  const image = await buildKvmImage({ cacheDir });
  log(`sev keep image: ${image.kernel}, ${image.initrd}, base disk ${image.base.path}`);
  return await bootSevKeep({
    qemu: sevQemu().path!,
    workDir: options.workDir,
    ovmf: sevOvmfPath(),
    kernel: image.kernel,
    initrd: image.initrd,
    append: image.append,
    baseDisk: image.base.path,
    memoryMiB: 1024,
    vcpus: SEV_VCPUS,
    vcpuType: sevVcpuType(),
    snp: cbit,
    accel: "kvm",
    guestPort: GUEST_PORT,
    log,
  });
}
