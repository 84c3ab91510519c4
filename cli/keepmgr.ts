/**
 * `enarx keepmgr`: the keep manager daemon of a host. Serves the /v1 API over
 * HTTPS, starts one keepldr per keep, and logs structured lines to stderr.
 *
 * @module
 */
import {
  type Command,
  type OptionSpec,
  parseCommandArgs,
  type ParsedValues,
  printErr,
  printOut,
} from "./_command.ts";
import { EnarxError, UsageError } from "../runtime/errors.ts";
import { parseDuration, parseSize, UNITS_HELP } from "../runtime/units.ts";
import { type KeepLog, KeepManager } from "../runtime/keepmgr/keep_manager.ts";
import { type Created, errorReply, keepmgrHandler } from "../runtime/keepmgr/http.ts";
import { KeepmgrAuth, loadOrCreateToken, type OperatorToken } from "../runtime/keepmgr/api/auth.ts";
import {
  CreateGate,
  type CreateLimits,
  DEFAULT_CREATE_LIMITS,
  DEFAULT_SERVER_LIMITS,
  type ServerLimits,
} from "../runtime/keepmgr/api/limits.ts";
import { Http1Server } from "../runtime/keepmgr/api/http1_server.ts";
import {
  CreateQueue,
  type CreateQueueLimits,
  DEFAULT_QUEUE_LIMITS,
} from "../runtime/keepmgr/api/create_queue.ts";
import { type KeepmgrTls, loadOrCreateKeepmgrTls } from "../runtime/keepmgr/tls.ts";
import { userStateDir } from "../runtime/dirs.ts";
import { requireSystemd } from "../runtime/keepmgr/systemd.ts";
import { KEEPLDR_BACKENDS } from "../runtime/keepmgr/keepldr.ts";
import { DEFAULT_SERVICE_PORTS, parsePortRange } from "../runtime/keepmgr/services/mod.ts";

const HELP = `Usage: enarx keepmgr --listen ADDR:PORT [OPTIONS]

Runs the keep manager: an HTTPS API (/v1/keeps, /v1/info) that creates keeps,
relays their evidence and sealed keys, and forwards clients to them. On start
it prints the address it listens on and its certificate's SHA-256.

Options:
  --listen ADDR:PORT      Address to listen on (port 0: any free port)
  --tls-cert FILE         PEM certificate (default: generated in the state dir)
  --tls-key FILE          PEM PKCS#8 key for --tls-cert
  --state-dir DIR         Keep records and TLS files (default:
                          $STATE_DIRECTORY, else ~/.local/state/enarx/keepmgr)
  --max-keeps N           Keeps alive at once (default 64)
  --backends LIST         Backends offered, comma-separated: nil, kvm (a QEMU
                          micro-VM; needs qemu-system-x86 and a keep kernel,
                          $ENARX_KVM_KERNEL); default nil
  --systemd               Run each keep as a transient systemd unit
                          (needs systemd as PID 1); implies --keepldr-process
  --keepldr-process       Start an "enarx keepldr" process per keep to launch
                          and relay it; by default keepmgr does keepldr's part
                          itself and a keep's only process is the keep
  --warm-keeps SPEC       Keeps launched ahead, per backend, each waiting for
                          one deploy (its key pair and evidence are made after
                          the claim, for that deploy's nonce): BACKEND=N,...
                          or N for every backend offered (default nil=2; 0:
                          none). Not with --keepldr-process
  --keep-memory SIZE      Memory limit of each keep's workload (default 256M; e.g.
                          1G). KB, MB, GB now mean powers of 1000, as in "enarx
                          run"; K, M, G (and KiB, MiB, GiB) stay powers of 1024.
                          With --systemd the keep's unit gets this plus 256M
                          for its loader processes (MemoryMax=)
  --total-keep-memory SIZE
                          Most memory the live keeps may reserve together
                          (default: 3/4 of the host's MemTotal); a create past
                          it is refused (503 not-enough-memory)
  --keep-timeout TIME     Lifetime limit of each keep (e.g. 90s, 10m; default 10m)
  --step-timeout TIME     Time a keep has for one step (default 30s)
  --client-timeout TIME   Time a keep waits for its client (default 120s)
  --public-host HOST      Host name clients connect to (default: the one they used)
  --forward-address ADDR  Address of the ports forwarded to keeps (default:
                          loopback, 127.0.0.1 or ::1 as --listen; give
                          0.0.0.0 for clients on other machines)
  --service-ports FIRST-LAST
                          Host ports forwarded to keeps' listen sockets (default
                          20000-20999), on --forward-address; a keep gets the
                          port its Enarx.toml asks for if free and in range
  --token-file FILE       The operator's bearer token, needed to create and list
                          keeps (made on first start if missing; default:
                          <state dir>/token, mode 0600). Give it to deployers
                          with "enarx deploy --keepmgr-token FILE"
  --max-connections N     Connections open at once (default 256); more are closed
  --header-timeout TIME   Time a connection has for its TLS handshake and
                          request head (default 10s); slower ones are closed
  --create-burst N        Keeps one client address may create at once (default 256)
  --create-rate N         Creates per second that refill that burst (default 4);
                          past it: 429 rate-limited, with Retry-After
  --max-creating N        Keeps being created at once (default: the CPUs, at
                          least 2); later creates wait in order, and each
                          client is told how many are ahead of it
  --max-queued N          Creates that may wait (default 1000); past it: 503
                          queue-full, with Retry-After (enarx deploy exits 69)
  --json-logs             Log JSON lines to stderr (and print the start line as JSON)
  --wasmldr-command JSON  Run this command as wasmldr (JSON array; for testing)
  -h, --help              Show this help

${UNITS_HELP}
`;

const OPTIONS = {
  listen: { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "state-dir": { type: "string" },
  "max-keeps": { type: "string" },
  backends: { type: "string" },
  systemd: { type: "boolean" },
  "keepldr-process": { type: "boolean" },
  "warm-keeps": { type: "string" },
  "keep-memory": { type: "string" },
  "total-keep-memory": { type: "string" },
  "keep-timeout": { type: "string" },
  "step-timeout": { type: "string" },
  "client-timeout": { type: "string" },
  "public-host": { type: "string" },
  "forward-address": { type: "string" },
  "service-ports": { type: "string" },
  "token-file": { type: "string" },
  "max-connections": { type: "string" },
  "header-timeout": { type: "string" },
  "create-burst": { type: "string" },
  "create-rate": { type: "string" },
  "max-creating": { type: "string" },
  "max-queued": { type: "string" },
  "json-logs": { type: "boolean" },
  "wasmldr-command": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const satisfies OptionSpec;

type KeepmgrValues = ParsedValues<typeof OPTIONS>;

/** `enarx keepmgr`. */
export const command: Command = {
  name: "keepmgr",
  summary: "Run the keep manager daemon on a host",
  async run(args: string[]): Promise<number> {
    const { values } = parseCommandArgs("keepmgr", args, {
      options: OPTIONS,
      allowPositionals: false,
    });
    if (values.help) {
      await printOut(HELP);
      return 0;
    }
    if (values.listen === undefined) {
      throw new UsageError(`Missing --listen ADDR:PORT; see "enarx keepmgr --help"`);
    }
    const { hostname, port } = parseListen(values.listen);
    const backends = parseBackends(values.backends ?? "nil");
    if (values.systemd) requireSystemd();
    const stateDir = values["state-dir"] ?? defaultStateDir();
    const log = makeLog(values["json-logs"] === true);
    const wasmldrCommand = values["wasmldr-command"] === undefined
      ? undefined
      : parseWasmldrCommand(values["wasmldr-command"]);
    const simulatorRoot = await prepareBackends(backends, stateDir, wasmldrCommand);
    const keepTimeoutMs = parseDuration(values["keep-timeout"] ?? "10m", "--keep-timeout");
    const servicePorts = parsePortRange(values["service-ports"] ?? DEFAULT_SERVICE_PORTS);
    const manager = await KeepManager.open({
      stateDir,
      backends,
      maxKeeps: parseCount(values["max-keeps"] ?? "64", "--max-keeps"),
      ...memoryLimits(values),
      keepTimeoutMs,
      stepTimeoutMs: parseDuration(values["step-timeout"] ?? "30s", "--step-timeout"),
      clientTimeoutMs: parseDuration(values["client-timeout"] ?? "120s", "--client-timeout"),
      forwardHostname: values["forward-address"] ?? (hostname.includes(":") ? "::1" : "127.0.0.1"),
      servicePorts,
      systemd: values.systemd === true,
      keepldrProcess: values["keepldr-process"] === true,
      warmKeeps: warmKeepsOption(values, backends),
      wasmldrCommand,
      log,
    });
    const tls = await loadOrCreateKeepmgrTls(stateDir, {
      certFile: values["tls-cert"],
      keyFile: values["tls-key"],
      names: [hostname],
    });
    if (tls.generated) log("info", "generated a TLS certificate", { file: tls.certFile });
    const token = await loadOrCreateToken(stateDir, { file: values["token-file"] });
    if (token.generated) log("info", "generated the operator token", { file: token.file });
    await serveUntilSignal(manager, tls, {
      hostname,
      port,
      stateDir,
      backends,
      log,
      values,
      token,
      ...parseLimits(values),
      simulatorRoot,
    });
    return 0;
  },
};

function parseBackends(value: string): string[] {
  const backends = value.split(",").map((b) => b.trim()).filter((b) => b);
  for (const backend of backends) {
    if (!(KEEPLDR_BACKENDS as readonly string[]).includes(backend)) {
      throw new UsageError(
        `Backend "${backend}" cannot be launched by this keepmgr; use --backends ${
          KEEPLDR_BACKENDS.join(",")
        }`,
      );
    }
  }
  return backends;
}

/** The warm pool: none where keepldr runs as a process (--keepldr-process, --systemd). */
function warmKeepsOption(values: KeepmgrValues, backends: string[]): Record<string, number> {
  const given = values["warm-keeps"];
  if (values["keepldr-process"] || values.systemd) {
    const counts = parseWarmKeeps(given ?? "0", backends);
    if (Object.values(counts).some((n) => n > 0)) {
      throw new UsageError(
        `--warm-keeps needs keepmgr to host its keeps; drop --keepldr-process and --systemd`,
      );
    }
    return {};
  }
  return parseWarmKeeps(given ?? "nil=2", backends);
}

/**
 * Parses --warm-keeps: `N` for every backend offered, or `BACKEND=N,...`;
 * backends not offered are ignored (the default names nil).
 */
export function parseWarmKeeps(value: string, backends: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  const bad = () =>
    new UsageError(
      `--warm-keeps "${value}" is not N or BACKEND=N,... (e.g. nil=2,kvm=1; N from 0 to 64)`,
    );
  const count = (text: string) => {
    if (!/^\d{1,2}$/.test(text) || Number(text) > 64) throw bad();
    return Number(text);
  };
  if (/^\d+$/.test(value)) {
    const n = count(value);
    for (const backend of backends) counts[backend] = n;
    return counts;
  }
  for (const part of value.split(",")) {
    const [backend, n, extra] = part.trim().split("=");
    if (n === undefined || extra !== undefined || backend === "") throw bad();
    if (!(KEEPLDR_BACKENDS as readonly string[]).includes(backend)) {
      throw new UsageError(
        `--warm-keeps names backend "${backend}"; use one of ${KEEPLDR_BACKENDS.join(", ")}`,
      );
    }
    if (backends.includes(backend)) counts[backend] = count(n);
  }
  return counts;
}

function parseWasmldrCommand(value: string): string[] {
  let command: unknown;
  try {
    command = JSON.parse(value);
  } catch { /* checked below */ }
  if (!Array.isArray(command) || !command.every((a) => typeof a === "string")) {
    throw new UsageError(`--wasmldr-command must be a JSON array of strings`);
  }
  return command;
}

/**
 * Refuses backends that cannot launch here, and makes the simulated chain
 * that keepldr signs nil and kvm keeps' reports with. Returns its root's
 * fingerprint (`sha256:<hex>`), or undefined when no backend uses it.
 */
async function prepareBackends(
  backends: string[],
  stateDir: string,
  wasmldrCommand: string[] | undefined,
): Promise<string | undefined> {
  // keepldr signs nil and kvm keeps' reports with snp-sim on the host: make
  // the simulated chain here, once, and point keepldrs at it.
  if (backends.includes("kvm")) {
    // kvm keeps boot a QEMU micro-VM: refuse to start when it cannot launch one.
    const { findQemu, QEMU } = await import("../runtime/backends/kvm.ts");
    const { findKvmKernel } = await import("../runtime/backends/kvm_image.ts");
    if (findQemu() === undefined) {
      throw new EnarxError(
        "backend-unavailable",
        `--backends kvm needs "${QEMU}"; install qemu-system-x86 (apt-get install qemu-system-x86)`,
        { exit: "unavailable" },
      );
    }
    findKvmKernel();
    if (Deno.env.get("ENARX_KVM_CACHE_DIR") === undefined) {
      Deno.env.set("ENARX_KVM_CACHE_DIR", `${stateDir}/kvm-cache`);
    }
  }
  if ((backends.includes("nil") || backends.includes("kvm")) && wasmldrCommand === undefined) {
    const simDir = Deno.env.get("ENARX_SNP_SIM_DIR") ?? `${stateDir}/snp-sim`;
    Deno.env.set("ENARX_SNP_SIM_DIR", simDir);
    const { SnpSimulator } = await import("../runtime/attestation/amd/snp_sim.ts");
    return `sha256:${(await SnpSimulator.open(simDir)).rootFingerprint}`;
  }
  return undefined;
}

/** What {@link serveUntilSignal} needs besides the manager and TLS files. */
interface ServeOptions {
  hostname: string;
  port: number;
  stateDir: string;
  backends: string[];
  log: KeepLog;
  values: KeepmgrValues;
  token: OperatorToken;
  serverLimits: ServerLimits;
  createLimits: CreateLimits;
  queueLimits: CreateQueueLimits;
  /** The simulated SNP platform's root (`sha256:<hex>`), when nil or kvm keeps use it. */
  simulatorRoot?: string;
}

/** The connection and create limits from the flags, over the defaults. */
function parseLimits(
  values: KeepmgrValues,
): { serverLimits: ServerLimits; createLimits: CreateLimits; queueLimits: CreateQueueLimits } {
  const count = (flag: keyof KeepmgrValues, fallback: number) => {
    const value = values[flag];
    return typeof value === "string" ? parseCount(value, `--${flag}`) : fallback;
  };
  return {
    serverLimits: {
      ...DEFAULT_SERVER_LIMITS,
      maxConnections: count("max-connections", DEFAULT_SERVER_LIMITS.maxConnections),
      headerTimeoutMs: values["header-timeout"] === undefined
        ? DEFAULT_SERVER_LIMITS.headerTimeoutMs
        : parseDuration(values["header-timeout"], "--header-timeout"),
    },
    createLimits: {
      burst: count("create-burst", DEFAULT_CREATE_LIMITS.burst),
      perSecond: count("create-rate", DEFAULT_CREATE_LIMITS.perSecond),
    },
    queueLimits: {
      ...DEFAULT_QUEUE_LIMITS,
      maxCreating: Math.max(1, count("max-creating", DEFAULT_QUEUE_LIMITS.maxCreating)),
      maxQueued: count("max-queued", DEFAULT_QUEUE_LIMITS.maxQueued),
    },
  };
}

/**
 * Serves the API, announces the address on standard output, and on SIGTERM
 * or SIGINT stops every keep and the server.
 */
async function serveUntilSignal(
  manager: KeepManager,
  tls: KeepmgrTls,
  options: ServeOptions,
): Promise<void> {
  const { log, values, simulatorRoot } = options;
  // Listen for signals before announcing the address, so that none is missed.
  const stop = new Promise<string>((resolve) => {
    Deno.addSignalListener("SIGTERM", () => resolve("SIGTERM"));
    Deno.addSignalListener("SIGINT", () => resolve("SIGINT"));
  });
  const queue = new CreateQueue<Created>(options.queueLimits);
  const server = await Http1Server.listen({
    hostname: options.hostname,
    port: options.port,
    cert: tls.cert,
    key: tls.key,
    limits: options.serverLimits,
    handler: keepmgrHandler(manager, {
      publicHost: values["public-host"],
      log,
      auth: new KeepmgrAuth(options.token.token),
      gate: new CreateGate(options.createLimits),
      queue,
      simulatorRoot,
    }),
    refusal: errorReply,
    log,
  });
  const listening = server.addr;
  const host = listening.hostname.includes(":") ? `[${listening.hostname}]` : listening.hostname;
  const url = `https://${host}:${listening.port}`;
  const sim = simulatorRoot === undefined ? {} : { simulator_root: simulatorRoot };
  if (values["json-logs"]) {
    await printOut(
      JSON.stringify({
        listening: url,
        port: listening.port,
        cert_sha256: tls.fingerprint,
        token_file: options.token.file,
        ...sim,
      }) + "\n",
    );
  } else {
    const simText = simulatorRoot === undefined
      ? ""
      : `; simulated SNP root ${simulatorRoot} (trust it with enarx deploy --trust-simulated)`;
    await printOut(
      `enarx keepmgr: listening on ${url} (certificate SHA-256 ${tls.fingerprint})${simText}\n`,
    );
  }
  const { stateDir, backends } = options;
  log("info", "listening", {
    url,
    state_dir: stateDir,
    backends,
    cert_sha256: tls.fingerprint,
    token_file: options.token.file,
    ...sim,
  });

  const signal = await stop;
  log("info", "stopping", { signal });
  // Requests in flight are answered 503 shutting-down, then every keep stops.
  await server.shutdown();
  queue.close();
  await manager.close();
  log("info", "stopped", {});
}

/** Splits `ADDR:PORT` (IPv6 in brackets). */
function parseListen(value: string): { hostname: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (m === null || port > 65535) {
    throw new UsageError(
      `--listen "${value}" is not ADDR:PORT; use e.g. 127.0.0.1:8443 or [::1]:0`,
    );
  }
  return { hostname: m[1] ?? m[2], port };
}

/** Default --keep-memory: enough for most workloads, small enough that 64 keeps fit a host. */
const DEFAULT_KEEP_MEMORY = "256M";

/** --keep-memory and --total-keep-memory, with their defaults; a keep must fit in the total. */
function memoryLimits(values: KeepmgrValues): { keepMemory: number; totalKeepMemory: number } {
  const keepMemory = parseSize(values["keep-memory"] ?? DEFAULT_KEEP_MEMORY, "--keep-memory");
  const totalKeepMemory = values["total-keep-memory"] === undefined
    ? Math.floor(hostMemTotal() * 3 / 4)
    : parseSize(values["total-keep-memory"], "--total-keep-memory");
  if (keepMemory > totalKeepMemory) {
    throw new UsageError(
      `--keep-memory ${keepMemory} is more than --total-keep-memory ${totalKeepMemory} bytes; ` +
        `no keep could start; lower --keep-memory or raise --total-keep-memory`,
    );
  }
  return { keepMemory, totalKeepMemory };
}

/** MemTotal of /proc/meminfo in bytes. */
function hostMemTotal(): number {
  let meminfo = "";
  try {
    meminfo = Deno.readTextFileSync("/proc/meminfo");
  } catch { /* checked below */ }
  const m = /^MemTotal:\s+(\d+) kB$/m.exec(meminfo);
  if (m === null) {
    throw new EnarxError(
      "config",
      "Cannot read MemTotal from /proc/meminfo; give --total-keep-memory SIZE",
      { exit: "config" },
    );
  }
  return Number(m[1]) * 1024;
}

function parseCount(value: string, flag: string): number {
  if (!/^\d+$/.test(value) || Number(value) < 1) {
    throw new UsageError(`${flag} "${value}" is not a positive whole number`);
  }
  return Number(value);
}

/** `$STATE_DIRECTORY` (systemd's StateDirectory=), else the user's enarx state dir + `/keepmgr`. */
function defaultStateDir(): string {
  const fromSystemd = Deno.env.get("STATE_DIRECTORY");
  if (fromSystemd) return fromSystemd.split(":")[0];
  const state = userStateDir();
  if (state === undefined) {
    throw new EnarxError("config", "Neither $HOME nor --state-dir is set; give --state-dir DIR", {
      exit: "config",
    });
  }
  return `${state}/keepmgr`;
}

/** A structured logger writing JSON lines, or readable lines, to stderr. */
function makeLog(json: boolean): KeepLog {
  const encoder = new TextEncoder();
  return (level, msg, fields = {}) => {
    const ts = new Date().toISOString();
    const line = json
      ? JSON.stringify({ ts, level, msg, ...fields })
      : `${ts} ${level.padEnd(5)} ${msg}${
        Object.entries(fields).filter(([, v]) => v !== undefined).map(([k, v]) =>
          ` ${k}=${typeof v === "string" ? JSON.stringify(v) : String(v)}`
        ).join("")
      }`;
    try {
      Deno.stderr.writeSync(encoder.encode(line + "\n"));
    } catch {
      void printErr; // stderr closed: nothing to do
    }
  };
}
