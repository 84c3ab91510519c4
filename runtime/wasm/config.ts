/**
 * Enarx.toml: a workload's configuration, compatible with Enarx's own
 * schema (crate `enarx-config`), plus preopened directories (Enarx issue
 * #1959). Unlike Enarx, an unknown key anywhere is an error that names it.
 *
 * ```toml
 * steward = "https://steward.example.net"   # accepted, not used yet
 * args = ["--verbose"]                      # argv[1..]
 * [env]
 * GREETING = "hi"
 * [[files]]                                 # fd 0, 1, 2, ... in order
 * kind = "stdin"                            # null | stdin | stdout | stderr | listen | connect
 * name = "in"                               # optional; FD_NAMES lists the names
 * [[dirs]]                                  # enarx's addition: preopened directories
 * host = "data"                             # relative to the Enarx.toml's folder
 * guest = "/data"
 * readonly = true                           # default false
 * ```
 *
 * The first three entries stand for the guest's fds 0, 1 and 2 and may each
 * be `null` or their own standard stream; `listen` and `connect` sockets
 * follow them (runtime/wasm/sockets.ts opens them; `enarx deploy` refuses
 * them for now).
 *
 * @module
 */
import { parse, TomlError } from "smol-toml";
import { dirname, isAbsolute, join } from "node:path";
import { EnarxError } from "../errors.ts";

/** The kind of a `[[files]]` entry. */
export type FileKind = "null" | "stdin" | "stdout" | "stderr" | "listen" | "connect";

/** One `[[files]]` entry: the guest's fd at its index. */
export interface FileEntry {
  /** What backs the fd. */
  kind: FileKind;
  /** Its name in FD_NAMES (default: the kind; for connect, the host). */
  name: string;
  /** `listen`/`connect`: `tcp` or `tls`. */
  prot?: "tcp" | "tls";
  /** `listen`: the address to bind (default `::`). */
  addr?: string;
  /** `connect`: the host to connect to. */
  host?: string;
  /** `listen`/`connect`: the port (default 443 for tls, 80 for tcp). */
  port?: number;
  /**
   * tls only (`ca`): for `connect`, trust anchors added to the default roots;
   * for `listen`, the only CAs whose client certificates `mtls` accepts.
   */
  ca?: TrustAnchorSource[];
  /**
   * tls only (`mtls = true`): `connect` presents the keep's certificate to
   * the peer; `listen` requires a client certificate issued by `ca`.
   */
  mtls?: boolean;
}

/** Where a `ca` trust anchor comes from: PEM text in Enarx.toml, or a file (absolute path). */
export type TrustAnchorSource = { pem: string } | { path: string };

/** One `[[dirs]]` entry: a preopened directory. */
export interface DirEntry {
  /** Host directory (resolved against the Enarx.toml's folder when relative). */
  host: string;
  /** Guest path. */
  guest: string;
  /** Refuse writes (default false). */
  readOnly: boolean;
}

/** A parsed Enarx.toml. */
export interface EnarxConfig {
  /** Steward URL (https only); accepted for compatibility, not used yet. */
  steward?: string;
  /** argv[1..]. */
  args: string[];
  /** Environment variables. */
  env: Record<string, string>;
  /** The guest's fds, in order (default stdin, stdout, stderr). */
  files: FileEntry[];
  /** Preopened directories. */
  dirs: DirEntry[];
}

/** The configuration Enarx uses when there is no Enarx.toml. */
export function defaultConfig(): EnarxConfig {
  return {
    args: [],
    env: {},
    files: [
      { kind: "stdin", name: "stdin" },
      { kind: "stdout", name: "stdout" },
      { kind: "stderr", name: "stderr" },
    ],
    dirs: [],
  };
}

/** A problem in an Enarx.toml (exit status dataError). */
export class ConfigError extends EnarxError {
  /** Makes a config error; `origin` names the file. */
  constructor(origin: string, message: string) {
    super("config-invalid", `${origin}: ${message}`, { exit: "dataError" });
    this.name = "ConfigError";
  }
}

/** An Enarx.toml feature that enarx does not support yet (exit status unavailable). */
export class ConfigUnsupportedError extends EnarxError {
  /** Makes the error; `origin` names the file. */
  constructor(origin: string, message: string) {
    super("config-unsupported", `${origin}: ${message}`, { exit: "unavailable" });
    this.name = "ConfigUnsupportedError";
  }
}

type Table = Record<string, unknown>;

function isTable(value: unknown): value is Table {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !(value instanceof Date);
}

function checkKeys(origin: string, where: string, table: Table, allowed: string[]): void {
  for (const key of Object.keys(table)) {
    if (!allowed.includes(key)) {
      throw new ConfigError(
        origin,
        `unknown key "${key}"${where}; expected one of ${allowed.map((k) => `"${k}"`).join(", ")}`,
      );
    }
  }
}

function stringAt(origin: string, where: string, value: unknown): string {
  if (typeof value !== "string") throw new ConfigError(origin, `${where} must be a string`);
  return value;
}

function nameAt(origin: string, where: string, value: unknown): string {
  const name = stringAt(origin, where, value);
  if (name.includes(":")) {
    throw new ConfigError(origin, `${where} "${name}" must not contain ":"`);
  }
  return name;
}

const FILE_KINDS: FileKind[] = ["null", "stdin", "stdout", "stderr", "listen", "connect"];
const STDIO_AT: FileKind[] = ["stdin", "stdout", "stderr"];

/** `ca`: a file path, inline PEM, or a list of either; relative paths from `base`. */
function parseCa(origin: string, where: string, raw: unknown, base: string): TrustAnchorSource[] {
  const items = Array.isArray(raw) ? raw : [raw];
  if (items.length === 0) throw new ConfigError(origin, `${where} ca is an empty list`);
  return items.map((item, i) => {
    const text = stringAt(origin, `${where} ca${Array.isArray(raw) ? `[${i}]` : ""}`, item);
    if (text.includes("-----BEGIN CERTIFICATE-----")) return { pem: text };
    return { path: isAbsolute(text) ? text : join(base, text) };
  });
}

/**
 * The TLS keys of a listen or connect entry (`ca`, `mtls`), refused unless
 * `prot = "tls"`; on a listen entry they go together (mtls = true names
 * the CA of client certificates in `ca`).
 */
function socketTls(
  origin: string,
  where: string,
  raw: Table,
  base: string,
): Pick<FileEntry, "ca" | "mtls"> {
  if (raw.prot !== "tls") {
    const key = ["mtls", "ca"].find((k) => raw[k] !== undefined);
    if (key !== undefined) {
      throw new ConfigError(origin, `${where} has ${key} but prot = "tcp"; set prot = "tls"`);
    }
    return {};
  }
  const out: Pick<FileEntry, "ca" | "mtls"> = {};
  if (raw.ca !== undefined) out.ca = parseCa(origin, where, raw.ca, base);
  if (raw.mtls !== undefined) {
    if (typeof raw.mtls !== "boolean") {
      throw new ConfigError(origin, `${where} mtls must be true or false`);
    }
    out.mtls = raw.mtls;
  }
  if (raw.kind === "listen" && (out.mtls === true) !== (out.ca !== undefined)) {
    throw new ConfigError(
      origin,
      out.ca === undefined
        ? `${where} (listen) has mtls = true but no ca; name the CA whose client ` +
          `certificates it accepts, ca = "clients-ca.pem"`
        : `${where} (listen) has ca but not mtls = true; on a listen entry ca is the CA of ` +
          `client certificates, which only mtls = true asks for`,
    );
  }
  return out;
}

function parseFile(origin: string, index: number, raw: unknown, base: string): FileEntry {
  const where = `[[files]] entry ${index + 1}`;
  if (!isTable(raw)) throw new ConfigError(origin, `${where} must be a table`);
  const kind = raw.kind;
  if (typeof kind !== "string" || !FILE_KINDS.includes(kind as FileKind)) {
    throw new ConfigError(
      origin,
      `${where} has kind ${JSON.stringify(kind)}; expected one of ${FILE_KINDS.join(", ")}`,
    );
  }
  const k = kind as FileKind;
  if (k === "listen" || k === "connect") {
    checkKeys(origin, ` in ${where}`, raw, [
      "kind",
      "name",
      "prot",
      "port",
      "ca",
      "mtls",
      ...(k === "listen" ? ["addr"] : ["host"]),
    ]);
    const prot = raw.prot;
    if (prot !== "tcp" && prot !== "tls") {
      throw new ConfigError(origin, `${where} needs prot = "tcp" or "tls"`);
    }
    const port = raw.port ?? (prot === "tls" ? 443 : 80);
    if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) {
      throw new ConfigError(origin, `${where} has port ${JSON.stringify(port)}; expected 0-65535`);
    }
    if (k === "listen") {
      if (raw.name === undefined) throw new ConfigError(origin, `${where} (listen) needs a name`);
      return {
        kind: k,
        prot,
        port,
        name: nameAt(origin, `${where} name`, raw.name),
        addr: raw.addr === undefined ? "::" : stringAt(origin, `${where} addr`, raw.addr),
        ...socketTls(origin, where, raw, base),
      };
    }
    if (raw.host === undefined) throw new ConfigError(origin, `${where} (connect) needs a host`);
    const host = stringAt(origin, `${where} host`, raw.host);
    return {
      kind: k,
      prot,
      port,
      host,
      name: raw.name === undefined ? host : nameAt(origin, `${where} name`, raw.name),
      ...socketTls(origin, where, raw, base),
    };
  }
  checkKeys(origin, ` in ${where}`, raw, ["kind", "name"]);
  return { kind: k, name: raw.name === undefined ? k : nameAt(origin, `${where} name`, raw.name) };
}

function parseDir(origin: string, index: number, raw: unknown, base: string): DirEntry {
  const where = `[[dirs]] entry ${index + 1}`;
  if (!isTable(raw)) throw new ConfigError(origin, `${where} must be a table`);
  checkKeys(origin, ` in ${where}`, raw, ["host", "guest", "readonly"]);
  if (raw.host === undefined) throw new ConfigError(origin, `${where} needs host`);
  const host = stringAt(origin, `${where} host`, raw.host);
  const guest = raw.guest === undefined ? host : stringAt(origin, `${where} guest`, raw.guest);
  const readOnly = raw.readonly ?? false;
  if (typeof readOnly !== "boolean") {
    throw new ConfigError(origin, `${where} readonly must be true or false`);
  }
  return { host: isAbsolute(host) ? host : join(base, host), guest, readOnly };
}

/**
 * Parses Enarx.toml text. `origin` names the file in errors and its folder
 * resolves relative `[[dirs]]` hosts. Throws ConfigError for anything
 * malformed or unknown and ConfigUnsupportedError for `listen`/`connect`.
 */
export function parseEnarxConfig(text: string, origin = "Enarx.toml"): EnarxConfig {
  let raw: Table;
  try {
    raw = parse(text) as Table;
  } catch (error) {
    const why = error instanceof TomlError
      ? `line ${error.line}, column ${error.column}: ${error.message.split("\n")[0]}`
      : String(error);
    throw new ConfigError(origin, `not valid TOML (${why})`);
  }
  checkKeys(origin, "", raw, ["steward", "args", "env", "files", "dirs"]);
  const config = defaultConfig();
  if (raw.steward !== undefined) {
    const url = stringAt(origin, "steward", raw.steward);
    if (!url.startsWith("https://")) {
      throw new ConfigError(origin, `steward "${url}" must be an https URL`);
    }
    config.steward = url;
  }
  if (raw.args !== undefined) {
    if (!Array.isArray(raw.args)) throw new ConfigError(origin, "args must be an array of strings");
    config.args = raw.args.map((a, i) => stringAt(origin, `args[${i}]`, a));
  }
  if (raw.env !== undefined) {
    if (!isTable(raw.env)) throw new ConfigError(origin, "env must be a table of strings");
    for (const [k, v] of Object.entries(raw.env)) {
      if (k.includes("=") || k === "") {
        throw new ConfigError(origin, `env name "${k}" must be non-empty without "="`);
      }
      config.env[k] = stringAt(origin, `env.${k}`, v);
    }
  }
  if (raw.files !== undefined) {
    if (!Array.isArray(raw.files)) {
      throw new ConfigError(origin, "files must be an array of tables ([[files]])");
    }
    const base = dirname(origin);
    config.files = raw.files.map((f, i) => parseFile(origin, i, f, base));
  }
  if (raw.dirs !== undefined) {
    if (!Array.isArray(raw.dirs)) {
      throw new ConfigError(origin, "dirs must be an array of tables ([[dirs]])");
    }
    const base = dirname(origin);
    config.dirs = raw.dirs.map((d, i) => parseDir(origin, i, d, base));
  }
  config.files.forEach((file, fd) => {
    if (file.kind === "listen" || file.kind === "connect") {
      if (fd > 2) return;
      throw new ConfigUnsupportedError(
        origin,
        `[[files]] entry ${fd + 1} (kind "${file.kind}") is fd ${fd}; sockets come after ` +
          `the three standard streams (add entries for fds 0-2 before it, "null" if unused)`,
      );
    }
    if (fd > 2) {
      throw new ConfigUnsupportedError(
        origin,
        `[[files]] entry ${fd + 1} (kind "${file.kind}"): only fds 0-2 are supported yet`,
      );
    }
    if (file.kind !== "null" && file.kind !== STDIO_AT[fd]) {
      throw new ConfigUnsupportedError(
        origin,
        `[[files]] entry ${fd + 1} is fd ${fd} and can be "null" or "${
          STDIO_AT[fd]
        }", not "${file.kind}"`,
      );
    }
  });
  return config;
}

/**
 * Parses the Enarx.toml that a client deploys to a keep. It is checked by
 * the client before anything is sent and again by wasmldr. `[[dirs]]` is
 * refused: its hosts name directories of the machine that runs the keep,
 * and that machine's files are not the deployer's to open.
 */
export function parseDeployedConfig(text: string, origin = "The deployed Enarx.toml"): EnarxConfig {
  const config = parseEnarxConfig(text, origin);
  // A `ca` path names a file of the machine that runs the keep: not the deployer's.
  const path = config.files.find((f) => f.ca?.some((a) => "path" in a));
  if (path !== undefined) {
    throw new ConfigUnsupportedError(
      origin,
      `[[files]] "${path.name}" has ca = a file path, which a keep cannot read from the ` +
        `deployer's machine; put the PEM text in Enarx.toml instead`,
    );
  }
  if (config.dirs.length > 0) {
    throw new ConfigUnsupportedError(
      origin,
      `[[dirs]] (host directory "${
        config.dirs[0].host
      }") cannot be deployed: a keep may not open ` +
        `directories of the host that runs it; use [[dirs]] with "enarx run" only`,
    );
  }
  return config;
}

/** Reads and parses an Enarx.toml file; a missing file is noInput. */
export async function loadEnarxConfig(path: string): Promise<EnarxConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new EnarxError("config-not-found", `Cannot find configuration "${path}"`, {
        exit: "noInput",
      });
    }
    const why = error instanceof Error ? error.message : String(error);
    throw new EnarxError("config-unreadable", `Cannot read configuration "${path}": ${why}`, {
      exit: "noInput",
    });
  }
  return parseEnarxConfig(text, path);
}
