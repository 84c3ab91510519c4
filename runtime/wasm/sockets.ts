/**
 * A workload's `listen` and `connect` sockets (Enarx.toml `[[files]]`):
 * opened by the keep before the guest starts (so that a port in use or a
 * host that does not resolve is a clear error, not a guest failure), then
 * handed to the guest through the socket shim (ffi/wasi_sockets.ts).
 *
 * Guest fds: 0-2 are the standard streams, then the preopened directories,
 * then the sockets in `[[files]]` order (with no directories, exactly
 * Enarx's numbering: the first socket is fd 3). wasi-libc finds preopens by
 * asking fd 3, 4, ... until one answers EBADF, which the sockets do, so the
 * directories must come first. Each socket fd, and one more (the anchor),
 * is also a read-only preopen of an empty private directory in wasmtime's
 * own table, so that wasmtime never gives those numbers to a file the guest
 * opens; the shim answers every call on them. See docs/sockets.md.
 *
 * A `prot = "tls"` entry's fd is a Unix socket whose other end is the keep's
 * TLS (runtime/wasm/tls_bridge.ts, with the certificate of
 * runtime/wasm/keep_identity.ts); the guest sees plaintext.
 *
 * @module
 */
import {
  closeSocket,
  connectSocket,
  listenSocket,
  SocketTable,
  trampolineWat,
} from "../../ffi/wasi_sockets.ts";
import { type Engine, type Linker, Module, type Store, wat2wasm } from "../../ffi/wasmtime/mod.ts";
import type { SocketResult } from "../../ffi/wasi_sockets.ts";
import { EnarxError, type ExitStatusName } from "../errors.ts";
import type { EnarxConfig, FileEntry } from "./config.ts";
import { loadSocketShim } from "./socket_shim.ts";
import type { CertificateIssuer, KeepIdentity } from "./keep_identity.ts";
import type { TlsBridge } from "./tls_bridge.ts";
import { RunDir } from "./run_dir.ts";

/** How long a `connect` entry may take to connect, per address of its host. */
export const CONNECT_TIMEOUT_MS = 10_000;

/** The queue of connections not yet accepted, for each listening socket. */
const LISTEN_BACKLOG = 1024;

/** A socket that the guest got, for a progress line. */
export interface GuestSocket {
  /** `listen` or `connect`. */
  kind: "listen" | "connect";
  /** Its name in FD_NAMES. */
  name: string;
  /** The guest's fd. */
  fd: number;
  /** The address bound (listen) or the host connected to (connect). */
  host: string;
  /** The port bound (the one the system chose, when 0 was asked) or connected to. */
  port: number;
  /** The port that the configuration asked for. */
  askedPort: number;
  /** `prot = "tls"`: the keep's certificate, when this socket presents it. */
  tls?: { fingerprint?: string };
}

/** The keep's TLS identity for `prot = "tls"` sockets (runtime/wasm/keep_identity.ts). */
export interface SocketTlsOptions {
  /** The certificate's names (default localhost and 127.0.0.1). */
  names?: readonly string[];
  /** Issues the certificate from the keep's CSR; default self-signed. */
  issuer?: CertificateIssuer;
  /** An identity made already (`enarx deploy`: the deployer saw its key); overrides the rest. */
  identity?: KeepIdentity;
}

/** A preopen that only reserves a guest fd in wasmtime's table. */
export interface Placeholder {
  /** An empty private directory. */
  host: string;
  /** A name nobody sees (wasi-libc stops at the first socket). */
  guest: string;
  /** Always true. */
  readOnly: true;
}

/** The sockets of one run. */
export interface WorkloadSockets {
  /** The shim's table (interrupt() it to stop a guest blocked on a socket). */
  table: SocketTable;
  /** Shadows the linker's WASI functions for the store; before instantiating. */
  install(linked: { engine: Engine; linker: Linker; store: Store }): Promise<void>;
  /** Preopens to add after every other, one per socket and the anchor. */
  placeholders: Placeholder[];
  /** The sockets, in fd order. */
  sockets: GuestSocket[];
  /** Closes every socket and removes the placeholder directory. */
  close(): Promise<void>;
}

/** The `listen` and `connect` entries of a configuration, in `[[files]]` order. */
export function socketEntries(config: EnarxConfig | undefined): FileEntry[] {
  return (config?.files ?? []).filter((f) => f.kind === "listen" || f.kind === "connect");
}

/** `host:port`, with an IPv6 address in brackets. */
export function formatAddress(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

function socketError(
  entry: FileEntry,
  result: Extract<SocketResult, { ok: false }>,
): EnarxError {
  const what = `[[files]] "${entry.name}"`;
  const port = entry.port ?? 0;
  if (entry.kind === "connect") {
    const target = formatAddress(entry.host ?? "", port);
    if (result.failure === "resolve") {
      return new EnarxError(
        "socket-host-unresolved",
        `Cannot resolve host "${entry.host}" of ${what}: ${result.reason}; check the name ` +
          `(or --connect ${entry.name}=HOST:PORT)`,
        { exit: "unavailable" },
      );
    }
    const exit: ExitStatusName = result.failure === "refused" ? "unavailable" : "io";
    return new EnarxError(
      "socket-connect-failed",
      `Cannot connect to ${target} for ${what}: ${result.reason}; check that it is up`,
      { exit },
    );
  }
  const at = formatAddress(entry.addr ?? "::", port);
  const fix = `choose another with --listen ${entry.name}=ADDR:PORT`;
  switch (result.failure) {
    case "in-use":
      return new EnarxError(
        "socket-port-in-use",
        `Cannot listen on ${at} for ${what}: port ${port} is already in use; stop what uses it or ${fix}`,
        { exit: "unavailable" },
      );
    case "denied":
      return new EnarxError(
        "socket-port-denied",
        `Cannot listen on ${at} for ${what}: ${result.reason} (ports below 1024 need ` +
          `CAP_NET_BIND_SERVICE); ${fix}`,
        { exit: "permission" },
      );
    case "resolve":
    case "no-address":
      return new EnarxError(
        "socket-address-invalid",
        `Cannot listen on ${at} for ${what}: ${result.reason}; use an address of this host ` +
          `("::" or "0.0.0.0" for all) or ${fix}`,
        { exit: "unavailable" },
      );
    default:
      return new EnarxError(
        "socket-listen-failed",
        `Cannot listen on ${at} for ${what}: ${result.reason}`,
        { exit: "io" },
      );
  }
}

/** What a node:net listen error means, as the shim's failure kinds. */
function listenFailure(error: unknown): Extract<SocketResult, { ok: false }> {
  const reason = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | null)?.code;
  const failure = code === "EADDRINUSE"
    ? "in-use"
    : code === "EACCES" || code === "EPERM"
    ? "denied"
    : code === "EADDRNOTAVAIL"
    ? "no-address"
    : code === "ENOTFOUND" || code === "EAI_AGAIN"
    ? "resolve"
    : "other";
  return { ok: false, failure, reason };
}

/** The TLS side of the run: the bridge and, made on first need, the keep's identity. */
interface TlsState {
  bridge?: TlsBridge;
  identity?: KeepIdentity;
  options: SocketTlsOptions;
}

async function openTls(entry: FileEntry, state: TlsState): Promise<OpenedSocket> {
  // Loaded only for tls entries: the X.509 library is large.
  const [{ TlsBridge }, { createKeepIdentity }] = await Promise.all([
    import(new URL("./tls_bridge.ts", import.meta.url).href),
    import(new URL("./keep_identity.ts", import.meta.url).href),
  ]) as [typeof import("./tls_bridge.ts"), typeof import("./keep_identity.ts")];
  state.bridge ??= await TlsBridge.create();
  const presents = entry.kind === "listen" || entry.mtls === true;
  if (presents) {
    state.identity ??= state.options.identity ?? await createKeepIdentity(state.options);
  }
  const tls = { fingerprint: presents ? state.identity!.fingerprint : undefined };
  if (entry.kind === "connect") {
    return { ...await state.bridge.connect(entry, state.identity), tls };
  }
  try {
    return { ...await state.bridge.listen(entry, state.identity!), tls };
  } catch (error) {
    if (error instanceof EnarxError) throw error;
    throw socketError(entry, listenFailure(error));
  }
}

/** A host socket for one entry. */
interface OpenedSocket {
  fd: number;
  port: number;
  tls?: { fingerprint?: string };
}

async function openOne(entry: FileEntry, state: TlsState): Promise<OpenedSocket> {
  if (entry.prot === "tls") return await openTls(entry, state);
  const result = entry.kind === "listen"
    ? listenSocket(entry.addr ?? "::", entry.port ?? 0, LISTEN_BACKLOG)
    : await connectSocket(entry.host ?? "", entry.port ?? 0, CONNECT_TIMEOUT_MS);
  if (!result.ok) throw socketError(entry, result);
  return { fd: result.fd, port: result.port };
}

/**
 * Opens the sockets of `config` for a guest whose first socket is fd
 * `firstFd` (3 plus the number of preopened directories); undefined when it
 * has none. Builds and loads the shim the first time (libwasmtime must be
 * loaded). `prot = "tls"` entries go through runtime/wasm/tls_bridge.ts with
 * the keep identity of `options.tls`. Throws EnarxError: a port in use, a
 * host that does not resolve, a refused connection, a TLS peer whose
 * certificate does not verify (76), a missing C compiler.
 */
export async function openWorkloadSockets(
  config: EnarxConfig | undefined,
  firstFd: number,
  options: { tls?: SocketTlsOptions } = {},
): Promise<WorkloadSockets | undefined> {
  const entries = socketEntries(config);
  if (entries.length === 0) return undefined;
  await loadSocketShim();
  const state: TlsState = { options: options.tls ?? {} };
  const opened: number[] = [];
  const sockets: GuestSocket[] = [];
  let table: SocketTable | undefined;
  let dir: RunDir | undefined;
  try {
    for (const [i, entry] of entries.entries()) {
      const { fd, port, tls } = await openOne(entry, state);
      opened.push(fd);
      sockets.push({
        kind: entry.kind as "listen" | "connect",
        name: entry.name,
        fd: firstFd + i,
        host: (entry.kind === "listen" ? entry.addr : entry.host) ?? "",
        port,
        askedPort: entry.port ?? 0,
        ...(tls ? { tls } : {}),
      });
    }
    table = new SocketTable();
    for (const [i, socket] of sockets.entries()) table.addSocket(socket.fd, opened[i]);
    opened.length = 0; // the table owns them now
    const anchor = firstFd + sockets.length;
    table.addAnchor(anchor);
    // Swept at a later run's start if this one is killed (run_dir.ts).
    dir = await RunDir.create("enarx-sockets-");
    const empty = `${dir.path}/fds`;
    await Deno.mkdir(empty, { mode: 0o700 });
    const placeholders: Placeholder[] = [...sockets.map((s) => s.fd), anchor].map((fd) => ({
      host: empty,
      guest: `/.enarx-fd-${fd}`,
      readOnly: true,
    }));
    const owned = { table, dir, bridge: state.bridge, trampoline: undefined as Module | undefined };
    return {
      table,
      placeholders,
      sockets,
      async install({ engine, linker, store }) {
        owned.trampoline ??= await Module.compile(
          engine,
          new Uint8Array(wat2wasm(trampolineWat())),
        );
        owned.table.install(linker.pointer, store.context, {
          engine: engine.pointer,
          trampoline: owned.trampoline.pointer,
        });
      },
      async close() {
        owned.table.close();
        owned.trampoline?.close();
        await owned.bridge?.close();
        await owned.dir.close();
      },
    };
  } catch (error) {
    for (const fd of opened) closeSocket(fd);
    table?.close();
    await state.bridge?.close();
    await dir?.close();
    throw error;
  }
}
