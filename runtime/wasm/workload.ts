/**
 * A workload — a WASI preview 1 command module with its arguments,
 * environment, configuration, preopened directories and limits — and
 * {@link runWorkload}, which runs one under wasmtime. This is wasmldr's core:
 * `enarx run` (through runtime/backends/keep.ts) and the deploy flow's wasmldr both
 * call it.
 *
 * The guest sees exactly the arguments and environment given: argv[0] is
 * `name`, then the config's `args`, then `args`; the environment is the
 * config's `env`, `FD_COUNT`/`FD_NAMES` when a config is given, then `env`.
 * Nothing of the host's environment leaks in.
 *
 * @module
 */
// The binding's files one by one, not ffi/wasmtime/mod.ts: Deno pays for
// every module `enarx run` loads, and a run without callback sinks never
// needs ffi/wasmtime/pipe.ts (nor the libc binding under it).
import { Engine, type EngineOptions } from "../../ffi/wasmtime/engine.ts";
import { type CallOutcome, type Instance, Linker } from "../../ffi/wasmtime/linker.ts";
import { WasmtimeLoadError } from "../../ffi/wasmtime/library.ts";
import type { Module } from "../../ffi/wasmtime/module.ts";
import type * as PipeModule from "../../ffi/wasmtime/pipe.ts";
import { Store } from "../../ffi/wasmtime/store.ts";
import { TrapCode, type WasmFrame, WasmtimeFfiError } from "../../ffi/wasmtime/trap.ts";
import { WasiConfig, type WasiOutput } from "../../ffi/wasmtime/wasi.ts";
import { EnarxError, ExitStatus } from "../errors.ts";
import type { EnarxConfig, FileKind } from "./config.ts";
import {
  compileModule,
  compileModuleFile,
  decodeModuleBytes,
  readModuleFile,
  statModuleFile,
} from "./module_cache.ts";
import { loadLibwasmtime } from "./libwasmtime_path.ts";
import { WASMTIME_VERSION } from "../version.ts";
import type {
  GuestSocket,
  openWorkloadSockets as OpenWorkloadSockets,
  SocketTlsOptions,
  WorkloadSockets,
} from "./sockets.ts";

/** A directory of the host made visible to the guest. */
export interface Preopen {
  /** The directory on the host; must exist. */
  host: string;
  /** The path the guest opens it by, e.g. `/data`. */
  guest: string;
  /** Refuse writes, creation and removal (default false). */
  readOnly?: boolean;
}

/** Limits on a workload; each is off when absent. */
export interface WorkloadLimits {
  /** Stop the guest after this many milliseconds (epoch deadline); reason `timeout`. */
  timeoutMs?: number;
  /** Maximum bytes of linear memory; growth beyond fails; reason `memory`. */
  maxMemoryBytes?: number;
  /** Fuel units (about one per wasm instruction); reason `fuel` when used up. */
  fuel?: number | bigint;
  /** How the memory limit was set, named in the message (default `--max-memory`). */
  memoryLimitName?: string;
}

/** What to run. */
export interface Workload {
  /** The module: its bytes (binary or WebAssembly text), or the path of a file holding them. */
  module: Uint8Array | string;
  /** argv[0] as the guest sees it; defaults to the module file's name, else `main.wasm`. */
  name?: string;
  /** Arguments after argv[0] (after the config's `args`). */
  args?: string[];
  /** Environment variables (added to, and overriding, the config's `env`). */
  env?: Record<string, string>;
  /** A parsed Enarx.toml (runtime/wasm/config.ts), or undefined for none. */
  config?: EnarxConfig;
  /** Directories to preopen (added to the config's `[[dirs]]`). */
  preopens?: Preopen[];
  /** Resource limits. */
  limits?: WorkloadLimits;
}

/** A chunk sink for streamed guest output; awaited before the next chunk (backpressure). */
export type OutputCallback = (chunk: Uint8Array) => void | Promise<void>;

/** Where the guest's standard input comes from. */
export type StdinSource = "inherit" | "null" | Uint8Array | { path: string };

/** Where a guest output stream goes. */
export type OutputSink = "inherit" | "null" | OutputCallback;

/** How to run it. */
export interface RunOptions {
  /** Standard input (default `null`: the guest reads end-of-file). */
  stdin?: StdinSource;
  /** Standard output (default `inherit`: this process's own). */
  stdout?: OutputSink;
  /** Standard error (default `inherit`). */
  stderr?: OutputSink;
  /** Directory of the compiled-module cache; undefined compiles every time. */
  cacheDir?: string;
  /** Aborts the run like a timeout (reason `timeout`). */
  signal?: AbortSignal;
  /**
   * Called before the module is compiled (not when it comes from the cache),
   * for progress; `cacheRefused` says why an untrusted cache was not used.
   */
  onCompile?: (info: { bytes: number; cacheRefused?: string }) => void;
  /** Called for each `listen`/`connect` socket once it is open, before the guest starts. */
  onSocket?: (socket: GuestSocket) => void;
  /**
   * The keep's TLS identity for `prot = "tls"` sockets: its certificate's
   * names (default localhost and 127.0.0.1) and who issues it (default
   * self-signed; the issuer gets the public key and a CSR, returns a PEM chain).
   */
  tls?: SocketTlsOptions;
}

/** Why the workload ended. */
export type EndReason = "exit" | "trap" | "timeout" | "fuel" | "memory";

/** How the workload ended. */
export interface WorkloadResult {
  /**
   * The exit status: the workload's own (`proc_exit(n)` or 0 when `_start`
   * returns), or ExitStatus.timeout (124), fuelExhausted (125),
   * memoryExhausted (126), trap (134).
   */
  status: number;
  /** Why it ended. */
  reason: EndReason;
  /** One line for a person, when the reason is not `exit`. */
  message?: string;
  /** The wasm backtrace, one frame per line, innermost first (traps). */
  backtrace?: string[];
}

/** Formats one wasm frame like wasmtime's CLI: `0x1a2b - module!function`. */
export function formatFrame(frame: WasmFrame): string {
  const where = `0x${frame.moduleOffset.toString(16)}`;
  const mod = frame.moduleName ?? "<unknown>";
  const func = frame.funcName ?? `<wasm function ${frame.funcIndex}>`;
  return `${where} - ${mod}!${func}`;
}

/** Converts a libwasmtime load failure into an EnarxError. */
function wasmtimeUnavailable(error: WasmtimeLoadError): EnarxError {
  return new EnarxError(
    "wasmtime-unavailable",
    `${error.message}; set ENARX_LIBWASMTIME to libwasmtime ${WASMTIME_VERSION}, ` +
      `or run ./enarx once to fetch it`,
    { exit: "unavailable", cause: error },
  );
}

/** Reads the module bytes of a workload (file or bytes), as binary wasm. */
export async function readWorkloadModule(
  workload: Pick<Workload, "module">,
): Promise<{ bytes: Uint8Array<ArrayBuffer>; origin: string }> {
  // WebAssembly text is converted by libwasmtime.
  await loadLibwasmtime();
  if (typeof workload.module === "string") {
    return { bytes: await readModuleFile(workload.module), origin: workload.module };
  }
  return { bytes: decodeModuleBytes(workload.module, "<bytes>"), origin: "<bytes>" };
}

/** The last segment of a path, like node:path's basename (`a/b.wasm/` gives `b.wasm`). */
function fileName(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}

/** The guest's argv: name, then the config's args, then the workload's args. */
export function guestArgv(workload: Workload): string[] {
  const name = workload.name ??
    (typeof workload.module === "string" ? fileName(workload.module) : "main.wasm");
  return [name, ...(workload.config?.args ?? []), ...(workload.args ?? [])];
}

/**
 * The guest's environment: the config's env, FD_COUNT/FD_NAMES, then the
 * workload's env. FD_NAMES names fd i at index i: when sockets follow
 * preopened directories, the directories (by guest path) come between the
 * standard streams and the sockets.
 */
export function guestEnv(workload: Workload): [string, string][] {
  const env = new Map<string, string>();
  const config = workload.config;
  if (config) {
    for (const [k, v] of Object.entries(config.env)) env.set(k, v);
    const names = config.files.map((f) => f.name);
    if (config.files.some((f) => f.kind === "listen" || f.kind === "connect")) {
      names.splice(3, 0, ...guestPreopens(workload).map((d) => d.guest));
    }
    env.set("FD_COUNT", String(names.length));
    env.set("FD_NAMES", names.join(":"));
  }
  for (const [k, v] of Object.entries(workload.env ?? {})) env.set(k, v);
  return [...env.entries()];
}

/** Every preopen of a workload: the config's `[[dirs]]`, then the workload's. */
export function guestPreopens(workload: Workload): Preopen[] {
  const fromConfig = (workload.config?.dirs ?? []).map((d) => ({
    host: d.host,
    guest: d.guest,
    readOnly: d.readOnly,
  }));
  return [...fromConfig, ...(workload.preopens ?? [])];
}

async function checkPreopen(dir: Preopen): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(dir.host);
  } catch {
    throw new EnarxError(
      "preopen-missing",
      `Cannot preopen "${dir.host}" as "${dir.guest}": no such directory; create it or fix --dir`,
      { exit: "noInput" },
    );
  }
  if (!info.isDirectory) {
    throw new EnarxError(
      "preopen-not-directory",
      `Cannot preopen "${dir.host}" as "${dir.guest}": not a directory`,
      { exit: "noInput" },
    );
  }
}

/** Which host stream backs each of the guest's fds 0, 1, 2. */
function stdioKinds(config: EnarxConfig | undefined): [FileKind, FileKind, FileKind] {
  if (!config) return ["stdin", "stdout", "stderr"];
  const kind = (i: number): FileKind => config.files[i]?.kind ?? "null";
  return [kind(0), kind(1), kind(2)];
}

type Pipe = PipeModule.Pipe;
// Specifiers in variables: `deno run` reads every literal dynamic import at
// start-up; a relative string resolves against this module as a literal
// would. compile.sh `--include`s both modules.
const PIPE_MODULE = "../../ffi/wasmtime/pipe.ts";
const SOCKETS_MODULE = "./sockets.ts";
let pipeClass: typeof PipeModule.Pipe | undefined;

/** Loads ffi/wasmtime/pipe.ts when a run streams output into a callback. */
async function loadPipes(options: RunOptions): Promise<void> {
  const streams = typeof options.stdout === "function" || typeof options.stderr === "function";
  if (streams) pipeClass ??= (await import(PIPE_MODULE) as typeof PipeModule).Pipe;
}

/** An output sink being pumped from a pipe into a callback. */
interface Pump {
  done: Promise<void>;
}

async function pumpPipe(file: Deno.FsFile, sink: OutputCallback): Promise<void> {
  const buffer = new Uint8Array(1 << 20);
  let failure: unknown;
  try {
    while (true) {
      const n = await file.read(buffer);
      if (n === null) break;
      if (failure !== undefined) continue; // keep draining so that the guest never blocks
      try {
        await sink(buffer.slice(0, n));
      } catch (error) {
        failure = error;
      }
    }
  } finally {
    file.close();
  }
  if (failure !== undefined) throw failure;
}

function outputTarget(
  sink: OutputSink,
  pumps: Pump[],
  pipes: Pipe[],
): { target: WasiOutput; open?: () => Promise<void> } {
  if (sink === "inherit") return { target: { kind: "inherit" } };
  if (sink === "null") return { target: { kind: "null" } };
  const pipe = new pipeClass!();
  pipes.push(pipe);
  return {
    target: { kind: "file", path: pipe.writePath },
    // Opened after wasmtime has opened the write end, so that opening the
    // read end of the FIFO does not wait for a writer.
    open: async () => {
      const file = await Deno.open(pipe.readPath, { read: true });
      pumps.push({ done: pumpPipe(file, sink) });
    },
  };
}

function wasiFailure(error: unknown): EnarxError {
  const why = error instanceof Error ? error.message : String(error);
  return new EnarxError("wasi-config", why, { exit: "noInput", cause: error });
}

function engineOptionsFor(limits: WorkloadLimits, interruptible: boolean): EngineOptions {
  return {
    optLevel: "speed",
    epochInterruption: interruptible,
    consumeFuel: limits.fuel !== undefined,
  };
}

/** How long a guest may stay in a host call after its deadline before it is abandoned. */
const ABANDON_GRACE_MS = 1000;

function abandonedResult(limits: WorkloadLimits): WorkloadResult {
  const after = limits.timeoutMs === undefined ? "" : ` of ${describeTimeout(limits.timeoutMs)}`;
  return {
    status: ExitStatus.timeout,
    reason: "timeout",
    message:
      `Workload ran past its timeout${after} while blocked in a host call, and was abandoned`,
  };
}

/** Imports that the linker cannot satisfy, as `module::name`. */
function unsatisfiedImports(linker: Linker, store: Store, module: Module): string[] {
  return module.imports()
    .filter((item) => !linker.defines(store, item))
    .map((item) => `${item.module}::${item.name}`);
}

function describeTimeout(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/**
 * Runs `workload` to completion and says how it ended. Throws EnarxError
 * (with exit status noInput or dataError) for bad input: a missing or
 * invalid module, no `_start`, imports that cannot be satisfied, a missing
 * preopen directory; and for a missing libwasmtime (unavailable).
 */
export async function runWorkload(
  workload: Workload,
  options: RunOptions = {},
): Promise<WorkloadResult> {
  try {
    return await run(workload, options);
  } catch (error) {
    if (error instanceof WasmtimeLoadError) throw wasmtimeUnavailable(error);
    throw error;
  }
}

/**
 * Stops a run on its deadline or abort signal: bumps the engine's epoch
 * (the guest traps with `interrupt` at its next check), then gives a guest
 * blocked in a host call (e.g. reading a stdin that never ends), which does
 * not see the epoch, a grace period before `stuck` resolves and it is
 * abandoned.
 */
interface Interrupter {
  /** Stops the guest; later calls do nothing. */
  interrupt(): void;
  /** Whether interrupt() was called. */
  readonly timedOut: boolean;
  /** Resolves once an interrupted guest is past its grace period. */
  readonly stuck: Promise<"stuck">;
  /** Starts the timeout timer and listens to the signal. */
  arm(limits: WorkloadLimits, signal: AbortSignal | undefined): void;
  /** Clears the timers and stops listening to the signal. */
  disarm(signal: AbortSignal | undefined): void;
}

function interrupterFor(engine: Engine, also?: () => void): Interrupter {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let graceTimer: ReturnType<typeof setTimeout> | undefined;
  let onStuck: () => void = () => {};
  const self = {
    timedOut: false,
    stuck: new Promise<"stuck">((resolve) => onStuck = () => resolve("stuck")),
    interrupt(): void {
      if (self.timedOut) return;
      self.timedOut = true;
      engine.incrementEpoch();
      also?.(); // wakes a guest blocked on a socket
      graceTimer = setTimeout(onStuck, ABANDON_GRACE_MS);
    },
    arm(limits: WorkloadLimits, signal: AbortSignal | undefined): void {
      if (limits.timeoutMs !== undefined) timer = setTimeout(self.interrupt, limits.timeoutMs);
      if (signal) {
        if (signal.aborted) self.interrupt();
        signal.addEventListener("abort", self.interrupt, { once: true });
      }
    },
    disarm(signal: AbortSignal | undefined): void {
      if (timer !== undefined) clearTimeout(timer);
      if (graceTimer !== undefined) clearTimeout(graceTimer);
      signal?.removeEventListener("abort", self.interrupt);
    },
  };
  return self;
}

/** A workload's module: a file (found in the cache without reading it) or bytes. */
type ModuleSource = { path: string; origin: string } | {
  bytes: Uint8Array<ArrayBuffer>;
  origin: string;
};

/** The module of `workload`; bytes are decoded, a file is only checked to exist. */
async function moduleSource(workload: Workload): Promise<ModuleSource> {
  if (typeof workload.module !== "string") return await readWorkloadModule(workload);
  await loadLibwasmtime();
  statModuleFile(workload.module);
  return { path: workload.module, origin: workload.module };
}

/** Compiles (or loads from the cache) a module, and checks that it is a WASI command. */
async function compileCommand(
  engine: Engine,
  module: ModuleSource,
  options: RunOptions,
): Promise<Module> {
  const how = { cacheDir: options.cacheDir, origin: module.origin, onCompile: options.onCompile };
  const compiled = "path" in module
    ? await compileModuleFile(engine, module.path, how)
    : await compileModule(engine, module.bytes, how);
  if (!compiled.exports().includes("_start")) {
    compiled.close();
    throw new EnarxError(
      "module-no-start",
      `Module "${module.origin}" exports no "_start" function; it is not a WASI command`,
      { exit: "dataError" },
    );
  }
  return compiled;
}

/** Throws when the linker cannot satisfy every import of `module`. */
function checkImports(linked: { linker: Linker; store: Store }, module: Module, origin: string) {
  const missing = unsatisfiedImports(linked.linker, linked.store, module);
  if (missing.length > 0) {
    throw new EnarxError(
      "module-unknown-imports",
      `Module "${origin}" needs imports that enarx does not provide: ${missing.join(", ")}`,
      { exit: "dataError" },
    );
  }
}

/** Sets the guest's standard input as `options.stdin` says, when fd 0 is stdin. */
function setStdin(wasi: WasiConfig, stdin: StdinSource): void {
  if (stdin === "inherit") wasi.setStdin({ kind: "inherit" });
  else if (stdin instanceof Uint8Array) wasi.setStdin({ kind: "bytes", bytes: stdin });
  else if (stdin !== "null") wasi.setStdin({ kind: "file", path: stdin.path });
}

/** The output streams being pumped and the pipes not yet closed, of one run. */
interface Streams {
  pumps: Pump[];
  pipes: Pipe[];
}

/**
 * Makes the guest's WASI configuration: argv, env, stdio, preopens. Returns
 * it with the read ends of output pipes still to open (after wasmtime has
 * opened the write ends). Bad settings throw EnarxError `wasi-config`.
 */
function wasiConfigFor(
  workload: Workload,
  options: RunOptions,
  context: { preopens: Preopen[]; streams: Streams },
): { wasi: WasiConfig; opens: (() => Promise<void>)[] } {
  const { pumps, pipes } = context.streams;
  const wasi = new WasiConfig();
  const opens: (() => Promise<void>)[] = [];
  try {
    wasi.setArgv(guestArgv(workload));
    wasi.setEnv(guestEnv(workload));
    const [k0, k1, k2] = stdioKinds(workload.config);
    if (k0 === "stdin") setStdin(wasi, options.stdin ?? "null");
    const sinkFor = (kind: FileKind): OutputSink =>
      kind === "stdout"
        ? options.stdout ?? "inherit"
        : kind === "stderr"
        ? options.stderr ?? "inherit"
        : "null";
    const out = outputTarget(sinkFor(k1), pumps, pipes);
    const err = outputTarget(sinkFor(k2), pumps, pipes);
    wasi.setStdout(out.target);
    wasi.setStderr(err.target);
    for (const t of [out, err]) if (t.open) opens.push(t.open);
    for (const dir of context.preopens) {
      wasi.preopenDir(dir.host, dir.guest, { writable: !dir.readOnly });
    }
  } catch (error) {
    wasi.close();
    if (error instanceof WasmtimeFfiError) throw wasiFailure(error);
    throw error;
  }
  return { wasi, opens };
}

/** Sets the store's memory limit, fuel and epoch deadline. */
function applyLimits(store: Store, limits: WorkloadLimits, interruptible: boolean): void {
  if (limits.maxMemoryBytes !== undefined) {
    store.setLimits({ memorySize: limits.maxMemoryBytes });
  }
  if (limits.fuel !== undefined) store.setFuel(BigInt(limits.fuel));
  if (interruptible) store.setEpochDeadline(1n);
}

/** Instantiates and runs `_start`; "stuck" when an interrupted guest had to be abandoned. */
async function execute(
  linked: { linker: Linker; store: Store; module: Module },
  context: { limits: WorkloadLimits; deadline: Interrupter },
): Promise<WorkloadResult | "stuck"> {
  const { limits, deadline } = context;
  const instantiated = await Promise.race([
    linked.linker.instantiate(linked.store, linked.module),
    deadline.stuck,
  ]);
  if (instantiated === "stuck") return "stuck";
  if (!("instance" in instantiated)) {
    return classify(instantiated.failed, {
      limits,
      timedOut: deadline.timedOut,
      instance: undefined,
    });
  }
  const outcome = await Promise.race([
    instantiated.instance.callNonblocking("_start"),
    deadline.stuck,
  ]);
  if (outcome === "stuck") return "stuck";
  return classify(outcome, {
    limits,
    timedOut: deadline.timedOut,
    instance: instantiated.instance,
  });
}

async function run(workload: Workload, options: RunOptions): Promise<WorkloadResult> {
  const limits = workload.limits ?? {};
  const source = await moduleSource(workload);
  const origin = source.origin;
  const preopens = guestPreopens(workload);
  for (const dir of preopens) await checkPreopen(dir);
  const sockets = await openSockets(workload, preopens.length, options);

  const interruptible = limits.timeoutMs !== undefined || options.signal !== undefined;
  const stderrTail = new OutputTail();
  options = { ...options, stderr: stderrTail.watch(options.stderr) };
  const engine = new Engine(engineOptionsFor(limits, interruptible));
  const deadline = interrupterFor(engine, () => sockets?.table.interrupt());
  const streams: Streams = { pumps: [], pipes: [] };
  let store: Store | undefined;
  let module: Module | undefined;
  let linker: Linker | undefined;
  let abandoned = false;
  try {
    module = await compileCommand(engine, source, options);
    store = new Store(engine);
    linker = new Linker(engine);
    checkImports({ linker, store }, module, origin);

    await loadPipes(options);
    const { wasi, opens } = wasiConfigFor(workload, options, {
      preopens: [...preopens, ...sockets?.placeholders ?? []],
      streams,
    });
    for (const open of opens) await open();
    for (const pipe of streams.pipes) pipe.close();
    streams.pipes.length = 0;
    store.setWasi(wasi);
    await sockets?.install({ engine, linker, store });
    applyLimits(store, limits, interruptible);
    deadline.arm(limits, options.signal);

    const result = await execute({ linker, store, module }, { limits, deadline });
    if (result === "stuck") {
      abandoned = true;
      return abandonedResult(limits);
    }
    // Closing the store closes the guest's ends of the output pipes, which
    // lets the pumps see end-of-file once everything written is delivered.
    store.close();
    await Promise.all(streams.pumps.map((p) => p.done));
    return refusedGrowth(result, limits, stderrTail.text) ?? result;
  } finally {
    deadline.disarm(options.signal);
    for (const pipe of streams.pipes) pipe.close();
    // An abandoned guest's worker thread still uses the store, module and
    // engine: they are leaked on purpose, and its output pumps end with the
    // process.
    if (!abandoned) {
      store?.close();
      await Promise.allSettled(streams.pumps.map((p) => p.done));
      linker?.close();
      module?.close();
      engine.close();
      await sockets?.close();
    }
  }
}

/**
 * Opens the workload's `listen`/`connect` sockets (runtime/wasm/sockets.ts,
 * loaded only when there are some), the first at fd 3 + `dirs`.
 */
async function openSockets(
  workload: Workload,
  dirs: number,
  options: RunOptions,
): Promise<WorkloadSockets | undefined> {
  const config = workload.config;
  if (!config?.files.some((f) => f.kind === "listen" || f.kind === "connect")) return undefined;
  // By a specifier in a variable, so that `deno run` does not load the socket code ahead of
  // time for runs without sockets.
  const { openWorkloadSockets }: { openWorkloadSockets: typeof OpenWorkloadSockets } = await import(
    SOCKETS_MODULE
  );
  const sockets = await openWorkloadSockets(config, 3 + dirs, { tls: options.tls });
  for (const socket of sockets?.sockets ?? []) options.onSocket?.(socket);
  return sockets;
}

/**
 * The last characters a guest wrote to an output. wasmtime's memory
 * limit only makes `memory.grow` return -1; the guest decides what follows,
 * and a single large request far below the limit leaves no trace in the
 * store. What a guest's allocator says when it aborts is the one sign left.
 */
class OutputTail {
  // Decoded as it streams (a character split across chunks stays whole); made
  // on the first chunk, since most runs write to inherited outputs, never seen here.
  #decoder: TextDecoder | undefined;
  #text = "";

  /** `sink` with every chunk also kept (the last 1024 characters); "inherit" and "null" are not seen. */
  watch(sink: OutputSink | undefined): OutputSink | undefined {
    if (typeof sink !== "function") return sink;
    return (chunk) => {
      this.#decoder ??= new TextDecoder();
      const tail = this.#decoder.decode(chunk.subarray(-4096), { stream: true });
      this.#text = (this.#text + tail).slice(-1024);
      return sink(chunk);
    };
  }

  /** The characters kept. */
  get text(): string {
    return this.#text;
  }
}

/** What allocators print when a memory request fails (Rust's handler, C and C++ idioms). */
const ALLOCATION_FAILED =
  /memory allocation of \d+ bytes failed|out of memory|cannot allocate memory|std::bad_alloc/i;

/**
 * A failure (trap or non-zero exit) that followed a refused memory growth, as
 * the guest reported it on its standard error: the memory result (126), or
 * undefined when the result stands.
 */
function refusedGrowth(
  result: WorkloadResult,
  limits: WorkloadLimits,
  stderr: string,
): WorkloadResult | undefined {
  const limit = limits.maxMemoryBytes;
  const failed = result.reason === "trap" || (result.reason === "exit" && result.status !== 0);
  if (limit === undefined || !failed) return undefined;
  const said = ALLOCATION_FAILED.exec(stderr);
  if (said === null) return undefined;
  return {
    status: ExitStatus.memoryExhausted,
    reason: "memory",
    message: `Workload reached its memory limit of ${limit} bytes (${
      limits.memoryLimitName ?? "--max-memory"
    }): it asked for more ("${said[0]}") and stopped`,
  };
}

/** Memory headroom under which a failed workload counts as out of memory. */
function nearMemoryLimit(instance: Instance | undefined, limit: number): boolean {
  const size = instance?.memorySize("memory");
  if (size === undefined) return false;
  return limit - size < Math.max(2 << 20, limit / 16);
}

/**
 * The cause line of a trap message. wasmtime's message holds a backtrace
 * and a "Caused by:" section; the cause is the line after it.
 */
export function trapReason(message: string): string {
  const lines = message.split("\n").map((l) => l.trim());
  const caused = lines.indexOf("Caused by:");
  const cause = caused >= 0 ? lines.slice(caused + 1).find((l) => l) : lines.find((l) => l);
  return (cause ?? message).replace(/^\d+: /, "").replace(/^wasm trap: /, "");
}

function classify(
  outcome: CallOutcome,
  context: { limits: WorkloadLimits; timedOut: boolean; instance: Instance | undefined },
): WorkloadResult {
  const { limits } = context;
  const memoryLimit = limits.maxMemoryBytes;
  const outOfMemory = () =>
    memoryLimit !== undefined && nearMemoryLimit(context.instance, memoryLimit);
  const memoryResult = (): WorkloadResult => ({
    status: ExitStatus.memoryExhausted,
    reason: "memory",
    message: `Workload reached its memory limit of ${memoryLimit} bytes (${
      limits.memoryLimitName ?? "--max-memory"
    })`,
  });
  switch (outcome.kind) {
    case "return":
      return { status: 0, reason: "exit" };
    case "exit":
      if (outcome.status !== 0 && outOfMemory()) return memoryResult();
      return { status: outcome.status, reason: "exit" };
    case "trap": {
      const { trap } = outcome;
      if (trap.code === TrapCode.interrupt) {
        return {
          status: ExitStatus.timeout,
          reason: "timeout",
          message: limits.timeoutMs !== undefined
            ? `Workload ran past its timeout of ${
              describeTimeout(limits.timeoutMs)
            } and was stopped`
            : "Workload was interrupted",
        };
      }
      if (trap.code === TrapCode.outOfFuel) {
        return {
          status: ExitStatus.fuelExhausted,
          reason: "fuel",
          message: `Workload used up its fuel (${limits.fuel}) and was stopped`,
        };
      }
      if (outOfMemory()) return { ...memoryResult(), backtrace: trap.frames.map(formatFrame) };
      return {
        status: ExitStatus.trap,
        reason: "trap",
        message: `Workload trapped: ${trapReason(trap.message)}`,
        backtrace: trap.frames.map(formatFrame),
      };
    }
    case "error": {
      const firstLine = outcome.message.split("\n").map((l) => l.trim()).filter((l) => l)
        .filter((l) => l !== "Caused by:").join(": ");
      if (memoryLimit !== undefined && /memory|limit/i.test(outcome.message) && !context.instance) {
        return {
          ...memoryResult(),
          message:
            `Workload needs more memory than its limit of ${memoryLimit} bytes: ${firstLine}`,
        };
      }
      return {
        status: ExitStatus.trap,
        reason: "trap",
        message: `Workload failed: ${firstLine}`,
        backtrace: outcome.frames.map(formatFrame),
      };
    }
  }
}
