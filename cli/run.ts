/**
 * `enarx run`: runs a WASI command module in a local keep and exits with
 * the workload's own status. A nil keep runs in this process; a VM keep
 * (kvm, sev) starts through a local keepmgr and is attested before the
 * module is sent (runtime/client/local_keep_run.ts, loaded only then).
 *
 * @module
 */
import { type Command, type OptionSpec, parseCommandArgs, printErr, printOut } from "./_command.ts";
import { EnarxError, ExitStatus, UsageError } from "../runtime/errors.ts";
import type * as Units from "../runtime/units.ts";
import {
  keepmgrRunBackends,
  runnableBackend,
  runnableBackends,
} from "../runtime/backends/local.ts";
import { defaultModuleCacheDir } from "../runtime/wasm/module_cache.ts";
import type { Preopen, Workload, WorkloadResult } from "../runtime/wasm/workload.ts";
import type { EnarxConfig, loadEnarxConfig as LoadEnarxConfig } from "../runtime/wasm/config.ts";
import type * as LocalKeepRun from "../runtime/client/local_keep_run.ts";

import type { defaultConfig as DefaultConfig } from "../runtime/wasm/config.ts";
import type { GuestSocket } from "../runtime/wasm/sockets.ts";
import type { serviceNames as ServiceNames } from "../runtime/wasm/certificate_names.ts";

// Modules loaded only when a run needs them, by specifiers held in variables:
// `deno run` reads every literal dynamic import at start-up, and a variable
// costs no URL object (the specifier resolves against this module all the
// same). compile.sh `--include`s each of them.
const LOCAL_KEEP_RUN = "../runtime/client/local_keep_run.ts";
const CONFIG = "../runtime/wasm/config.ts";
const UNITS = "../runtime/units.ts";

/** runtime/units.ts: only --help, --timeout and --max-memory need it. */
async function units(): Promise<typeof Units> {
  return await import(UNITS);
}

/** The `--help` text (it shows runtime/units.ts's notes on units). */
const help = (unitsHelp: string) =>
  `Usage: enarx run [OPTIONS] MODULE [--] [ARGS...]

Runs a WebAssembly (WASI preview 1) command in a local keep. MODULE is a
.wasm file or WebAssembly text (.wat). The guest sees argv = [MODULE's file
name, ARGS...] and only the environment given here or in Enarx.toml.
Everything after MODULE is passed to the guest.

A nil keep is a sandboxed part of this process. --backend ${keepmgrRunBackends().join(" or ")}
starts a VM keep through a local keepmgr (127.0.0.1, only for this run),
verifies its evidence (kvm: this machine's simulated platform, trusted by its
fingerprint; sev: the hardware's, to AMD's roots) before the module leaves
this process, then streams the workload's output; standard input, unless a
terminal, is read to its end and sent with the module. A VM keep's sockets
come from --wasmcfgfile; each listen one is reached through a port of the
local keepmgr, printed as "enarx: endpoint NAME: tcp://127.0.0.1:PORT".

Options:
      --backend NAME        Keep backend (${
    [...runnableBackends().map((b) => b.name), ...keepmgrRunBackends()].join(", ")
  } or auto; default nil)
      --wasmcfgfile FILE    Enarx.toml: args, env, [[files]], [[dirs]]
      --dir HOST[::GUEST][:ro]
                            Preopen directory HOST as GUEST (default: the same
                            path); ":ro" makes it read-only. Repeatable (nil)
      --env NAME=VALUE      Set an environment variable. Repeatable
      --listen NAME=ADDR:PORT
                            Listen on ADDR:PORT for the [[files]] listen entry
                            NAME (without --wasmcfgfile: add a tcp one). Port
                            0 takes any free port, printed to stderr.
                            Repeatable (nil)
      --connect NAME=HOST:PORT
                            Connect the [[files]] connect entry NAME to
                            HOST:PORT (without --wasmcfgfile: add one).
                            Repeatable (nil)
      --service-name NAME   A DNS name or IP address of the keep's TLS
                            certificate (prot = "tls"; default localhost and
                            127.0.0.1); its SHA-256 is printed. Repeatable
      --timeout DURATION    Stop the guest after DURATION (500ms, 5s, 1m, 1h)
      --max-memory SIZE     Limit linear memory (e.g. 65536, 64MiB, 1GiB)
      --fuel N              Stop the guest after N units of fuel (metering
                            makes guest code about 2x slower; nil)
      --no-cache            Do not use the compiled-module cache
  -h, --help                Show this help

${unitsHelp}

Exit status: the workload's own; 124 timeout, 125 fuel used up, 126 memory
limit reached, 134 trap; 64 usage, 65 invalid module or Enarx.toml, 66
missing module, directory or file, 69 backend or feature unavailable, a
port in use, a host that does not resolve or refuses, 76 a TLS peer whose
certificate does not verify, 77 a port not permitted.
`;

/** Options that take a value (so that the value is not taken for MODULE). */
const VALUE_OPTIONS = new Set([
  "--backend",
  "--wasmcfgfile",
  "--dir",
  "--env",
  "--listen",
  "--connect",
  "--service-name",
  "--timeout",
  "--max-memory",
  "--fuel",
]);

/** Splits `args` into enarx's part (options and MODULE) and the guest's arguments. */
export function splitRunArgs(args: string[]): { own: string[]; guest: string[] } {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      // `--` before MODULE: MODULE is the next word.
      return { own: [...args.slice(0, i), ...args.slice(i + 1, i + 2)], guest: args.slice(i + 2) };
    }
    if (arg.startsWith("-") && arg !== "-") {
      if (VALUE_OPTIONS.has(arg)) i++;
      continue;
    }
    const rest = args.slice(i + 1);
    return { own: args.slice(0, i + 1), guest: rest[0] === "--" ? rest.slice(1) : rest };
  }
  return { own: args, guest: [] };
}

/** Parses `--dir HOST[::GUEST][:ro]` (`:rw` is also accepted). */
export function parseDirOption(text: string): Preopen {
  let spec = text;
  let readOnly = false;
  if (spec.endsWith(":ro")) {
    readOnly = true;
    spec = spec.slice(0, -3);
  } else if (spec.endsWith(":rw")) {
    spec = spec.slice(0, -3);
  }
  const [host, guest, ...extra] = spec.split("::");
  if (!host || guest === "" || extra.length > 0) {
    throw new UsageError(`Invalid --dir "${text}"; use HOST, HOST::GUEST or HOST::GUEST:ro`);
  }
  return { host, guest: guest ?? host, readOnly };
}

function parseEnvOption(text: string): [string, string] {
  const eq = text.indexOf("=");
  if (eq <= 0) throw new UsageError(`Invalid --env "${text}"; use NAME=VALUE`);
  return [text.slice(0, eq), text.slice(eq + 1)];
}

function parseFuel(text: string): bigint {
  if (!/^\d+$/.test(text) || BigInt(text) === 0n || BigInt(text) >= 1n << 64n) {
    throw new UsageError(`Invalid --fuel "${text}"; use a whole number above zero`);
  }
  return BigInt(text);
}

/** A `--listen` or `--connect` option: NAME=HOST:PORT (an IPv6 address in brackets). */
export interface SocketOption {
  /** `listen` or `connect`. */
  kind: "listen" | "connect";
  /** The `[[files]]` name. */
  name: string;
  /** The address (listen) or host (connect). */
  host: string;
  /** The port. */
  port: number;
}

/** Parses `--listen`/`--connect NAME=HOST:PORT`. */
export function parseSocketOption(kind: "listen" | "connect", text: string): SocketOption {
  const match = /^([^=:]+)=(\[[^\]]+\]|[^:\[\]]+):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    const what = kind === "listen" ? "ADDR" : "HOST";
    throw new UsageError(
      `Invalid --${kind} "${text}"; use NAME=${what}:PORT (port 0-65535, an IPv6 address in brackets)`,
    );
  }
  return { kind, name: match[1], host: match[2].replace(/^\[(.*)\]$/, "$1"), port };
}

/**
 * Applies `--listen`/`--connect` to `config`: an entry of that kind and name
 * gets the address; without an Enarx.toml (`fromFile` false) an unknown name
 * adds a tcp entry, with one it is a usage error.
 */
export function applySocketOptions(
  config: EnarxConfig,
  options: SocketOption[],
  fromFile: boolean,
): void {
  for (const option of options) {
    const entry = config.files.find((f) => f.kind === option.kind && f.name === option.name);
    if (entry) {
      if (option.kind === "listen") entry.addr = option.host;
      else entry.host = option.host;
      entry.port = option.port;
      continue;
    }
    if (fromFile) {
      const names = config.files.filter((f) => f.kind === option.kind).map((f) => `"${f.name}"`);
      throw new UsageError(
        `--${option.kind} ${option.name}=...: the Enarx.toml has no ${option.kind} entry named ` +
          `"${option.name}"${names.length > 0 ? `; it has ${names.join(", ")}` : ""}`,
      );
    }
    config.files.push({
      kind: option.kind,
      prot: "tcp",
      name: option.name,
      port: option.port,
      ...(option.kind === "listen" ? { addr: option.host } : { host: option.host }),
    });
  }
}

/**
 * Tells a person (or a script that asked for port 0) where a socket is; a
 * socket that presents the keep's certificate always, with its SHA-256.
 */
function reportSocket(socket: GuestSocket): void {
  const anyPort = socket.kind === "listen" && socket.askedPort === 0;
  const fingerprint = socket.tls?.fingerprint;
  if (!anyPort && fingerprint === undefined && !Deno.stderr.isTerminal()) return;
  const where = socket.host.includes(":")
    ? `[${socket.host}]:${socket.port}`
    : `${socket.host}:${socket.port}`;
  const verb = socket.kind === "listen" ? "listening on" : "connected to";
  const tls = socket.tls === undefined
    ? ""
    : fingerprint === undefined
    ? " (tls)"
    : ` (tls, certificate sha256 ${fingerprint})`;
  Deno.stderr.writeSync(
    new TextEncoder().encode(`enarx: fd ${socket.fd} "${socket.name}" ${verb} ${where}${tls}\n`),
  );
}

/**
 * Checks `--service-name` values (UsageError, 64, before anything starts);
 * runtime/wasm/certificate_names.ts is loaded only when there are some.
 */
async function checkServiceNames(names: string[] | undefined): Promise<string[] | undefined> {
  if (names === undefined || names.length === 0) return undefined;
  const { serviceNames }: { serviceNames: typeof ServiceNames } = await import(
    new URL("../runtime/wasm/certificate_names.ts", import.meta.url).href
  );
  serviceNames(names);
  return names;
}

/** The configuration with `--listen`/`--connect` applied (loading config.ts only when needed). */
async function configWithSockets(
  file: string | undefined,
  sockets: SocketOption[],
): Promise<EnarxConfig | undefined> {
  const config = file === undefined ? undefined : await loadConfig(file);
  if (sockets.length === 0) return config;
  const { defaultConfig }: { defaultConfig: typeof DefaultConfig } = await import(CONFIG);
  const result = config ?? defaultConfig();
  applySocketOptions(result, sockets, file !== undefined);
  return result;
}

/**
 * Reads Enarx.toml. runtime/wasm/config.ts (and its TOML parser) is loaded only
 * here, by a specifier that `deno run` does not follow ahead of time, so
 * runs without --wasmcfgfile never load it; compile.sh `--include`s it.
 */
async function loadConfig(path: string): Promise<EnarxConfig> {
  const { loadEnarxConfig }: { loadEnarxConfig: typeof LoadEnarxConfig } = await import(CONFIG);
  return await loadEnarxConfig(path);
}

/** Modules at least this large get a progress line while they compile (on a terminal). */
const COMPILE_NOTICE_BYTES = 4 * 1024 * 1024;

/** The options of `enarx run`. */
const RUN_OPTIONS = {
  help: { type: "boolean", short: "h" },
  backend: { type: "string", default: "nil" },
  wasmcfgfile: { type: "string" },
  dir: { type: "string", multiple: true },
  env: { type: "string", multiple: true },
  listen: { type: "string", multiple: true },
  connect: { type: "string", multiple: true },
  "service-name": { type: "string", multiple: true },
  timeout: { type: "string" },
  "max-memory": { type: "string" },
  fuel: { type: "string" },
  "no-cache": { type: "boolean" },
} as const satisfies OptionSpec;

/**
 * The options whose handling loads a module on demand (runtime/units.ts,
 * runtime/wasm/config.ts and the socket code, certificate_names.ts): the run
 * bundle (cli/bundle/run.ts) holds none of them.
 */
const ON_DEMAND_OPTIONS = [
  "help",
  "wasmcfgfile",
  "listen",
  "connect",
  "service-name",
  "timeout",
  "max-memory",
] as const;

/**
 * Whether the run bundle (build/enarx_run.js, cli/bundle/run.ts) can run
 * `enarx run ARGS` by itself: a nil keep (`--backend nil` or `auto`, the
 * default) and none of {@link ON_DEMAND_OPTIONS}. Anything else, arguments
 * that do not parse included, is run from the sources, whose modules load
 * what they need: a module loaded beside the bundle would have its own copy
 * of every module it shares with it (another `EnarxError` class, another
 * libwasmtime state), so the bundle never loads one.
 */
export function runBundleCovers(args: string[]): boolean {
  let values;
  try {
    ({ values } = parseCommandArgs("run", splitRunArgs(args).own, { options: RUN_OPTIONS }));
  } catch {
    return false;
  }
  if (values.backend !== "nil" && values.backend !== "auto") return false;
  return ON_DEMAND_OPTIONS.every((name) => values[name] === undefined);
}

/** The `run` subcommand. */
export const command: Command = {
  name: "run",
  summary: "Run a WebAssembly (WASI) module in a local keep",
  async run(args: string[]): Promise<number> {
    const { own, guest } = splitRunArgs(args);
    const { values, positionals } = parseCommandArgs("run", own, { options: RUN_OPTIONS });
    if (values.help) {
      await printOut(help((await units()).UNITS_HELP));
      return ExitStatus.ok;
    }
    if (positionals.length !== 1) {
      throw new UsageError(`Expected one MODULE; see "enarx run --help"`);
    }
    if (keepmgrRunBackends().includes(values.backend as string)) {
      return await runInVmKeep(values, positionals[0], guest);
    }
    const backend = await runnableBackend(values.backend as string);
    const serviceNames = await checkServiceNames(values["service-name"]);
    const workload: Workload = {
      module: positionals[0],
      args: guest,
      env: Object.fromEntries((values.env ?? []).map(parseEnvOption)),
      preopens: (values.dir ?? []).map(parseDirOption),
      config: await configWithSockets(values.wasmcfgfile, [
        ...(values.listen ?? []).map((t) => parseSocketOption("listen", t)),
        ...(values.connect ?? []).map((t) => parseSocketOption("connect", t)),
      ]),
      limits: {
        ...await parseLimits(values),
        fuel: values.fuel === undefined ? undefined : parseFuel(values.fuel),
      },
    };
    // The registry gives only backends that have an in-process keep.
    await using keep = await backend.launchLocal!();
    const result = await keep.run(workload, {
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
      cacheDir: values["no-cache"] ? undefined : defaultModuleCacheDir(),
      onSocket: reportSocket,
      tls: { names: serviceNames },
      onCompile: ({ bytes, cacheRefused }) => {
        if (cacheRefused !== undefined) {
          // Whoever can write the cache could run native code as this user.
          Deno.stderr.writeSync(new TextEncoder().encode(
            `enarx: not using the module cache: ${cacheRefused}\n`,
          ));
        }
        // Progress for a person: compiling a large module takes seconds.
        // Scripts (stderr not a terminal) get the workload's stderr only.
        if (bytes < COMPILE_NOTICE_BYTES || !Deno.stderr.isTerminal()) return;
        const what = values["no-cache"] ? "" : "; the module cache makes later runs fast";
        Deno.stderr.writeSync(new TextEncoder().encode(
          `enarx: compiling "${positionals[0]}" (${(bytes / 1048576).toFixed(1)} MiB)${what}\n`,
        ));
      },
    });
    if (result.reason !== "exit") await reportEnd(result);
    return result.status;
  },
};

/** Says why a guest that did not exit ended (a trap, a timeout), with its backtrace. */
async function reportEnd(result: WorkloadResult): Promise<void> {
  const lines = [`enarx: ${result.message ?? result.reason}`];
  if (result.backtrace && result.backtrace.length > 0) {
    lines.push("wasm backtrace:", ...result.backtrace.map((f, i) => `  ${i}: ${f}`));
  }
  await printErr(lines.join("\n") + "\n");
}

/** The options of `enarx run` as parsed. */
interface RunValues {
  backend?: string | boolean;
  wasmcfgfile?: string | boolean;
  dir?: (string | boolean)[];
  env?: (string | boolean)[];
  timeout?: string | boolean;
  "max-memory"?: string | boolean;
  fuel?: string | boolean;
  "service-name"?: (string | boolean)[];
  listen?: (string | boolean)[];
  connect?: (string | boolean)[];
}

/** `--timeout` and `--max-memory` in milliseconds and bytes (runtime/units.ts loaded only for them). */
async function parseLimits(
  values: RunValues,
): Promise<{ timeoutMs?: number; maxMemoryBytes?: number }> {
  const timeout = values.timeout as string | undefined;
  const maxMemory = values["max-memory"] as string | undefined;
  if (timeout === undefined && maxMemory === undefined) {
    return { timeoutMs: undefined, maxMemoryBytes: undefined };
  }
  const { parseDuration, parseSize } = await units();
  return {
    timeoutMs: timeout === undefined ? undefined : parseDuration(timeout, "--timeout"),
    maxMemoryBytes: maxMemory === undefined ? undefined : parseSize(maxMemory, "--max-memory"),
  };
}

/** Reads a file the run needs, or throws EnarxError (exit 66) naming it. */
async function readRunInput(what: string, path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (cause) {
    throw new EnarxError("input-unreadable", `Cannot find ${what} "${path}": ${cause}`, {
      exit: cause instanceof Deno.errors.PermissionDenied ? "permission" : "noInput",
      cause,
    });
  }
}

/** Writes all of `chunk` to `file`. */
async function writeAll(file: typeof Deno.stdout, chunk: Uint8Array): Promise<void> {
  for (let done = 0; done < chunk.length;) done += await file.write(chunk.subarray(done));
}

/** `enarx run --backend kvm|sev`: a VM keep through a local keepmgr; returns the workload's status. */
async function runInVmKeep(values: RunValues, module: string, guest: string[]): Promise<number> {
  for (const flag of ["dir", "fuel"] as const) {
    if (values[flag] !== undefined) {
      throw new UsageError(
        `--${flag} applies to nil keeps only: a VM keep sees no host directory and meters no ` +
          `fuel; drop --${flag} or use --backend nil`,
      );
    }
  }
  for (const flag of ["listen", "connect"] as const) {
    if (values[flag] !== undefined) {
      throw new UsageError(
        `--${flag} applies to nil keeps only for now: give a VM keep its sockets as [[files]] ` +
          `entries of an Enarx.toml (--wasmcfgfile), or use --backend nil`,
      );
    }
  }
  const { timeoutMs, maxMemoryBytes } = await parseLimits(values);
  const options = {
    backend: values.backend as string,
    timeoutMs,
    keepMemoryBytes: maxMemoryBytes,
  };
  const moduleBytes = await readRunInput("module", module);
  const configFile = values.wasmcfgfile as string | undefined;
  const config = configFile === undefined
    ? null
    : new TextDecoder().decode(await readRunInput("Enarx.toml", configFile));
  const stdin = Deno.stdin.isTerminal()
    ? new Uint8Array(0)
    : new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
  const { runInLocalKeep, vmRunSockets }: typeof LocalKeepRun = await import(LOCAL_KEEP_RUN);
  const serviceNames = await checkServiceNames(values["service-name"] as string[] | undefined);
  const sockets = vmRunSockets(
    configFile === undefined ? undefined : await loadConfig(configFile),
    serviceNames,
  );
  const encoder = new TextEncoder();
  const result = await runInLocalKeep({
    module: moduleBytes,
    config,
    args: guest,
    env: Object.fromEntries(((values.env ?? []) as string[]).map(parseEnvOption)),
    stdin,
    ...sockets,
  }, {
    ...options,
    // Progress for a person: booting a VM keep takes seconds. Scripts get the workload's only.
    onProgress: (line) => {
      if (Deno.stderr.isTerminal()) Deno.stderr.writeSync(encoder.encode(`enarx: ${line}\n`));
    },
    onStdout: (chunk) => writeAll(Deno.stdout, chunk),
    onStderr: (chunk) => writeAll(Deno.stderr, chunk),
    // Always: the port is the local keepmgr's, not necessarily the one Enarx.toml asked for.
    onEndpoint: ({ name, prot, host, port, fingerprint }) => {
      const cert = fingerprint === undefined ? "" : ` (certificate sha256 ${fingerprint})`;
      Deno.stderr.writeSync(
        encoder.encode(`enarx: endpoint ${name}: ${prot}://${host}:${port}${cert}\n`),
      );
    },
  });
  if (result.reason !== "exit") await printErr(`enarx: ${result.message ?? result.reason}\n`);
  return result.status;
}
