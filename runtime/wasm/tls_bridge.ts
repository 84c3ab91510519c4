/**
 * `prot = "tls"` sockets: the keep's runtime ends TLS (listen) or starts it
 * (connect) with Deno's TLS on the event loop, and hands the guest the
 * plaintext side as a Unix stream socket, which the socket shim serves like
 * any other (ffi/wasi_sockets.ts). The Unix sockets live in a private
 * directory (mode 0700, owned by the keep's user), so no other user can
 * connect to a guest's plaintext; the directory is removed when the run ends.
 * A SIGKILL leaves it behind (with dead socket names in it): the next run
 * with tls sockets removes it (run_dir.ts). A deployed keep's fixed
 * directory is in its work directory, which keepmgr removes.
 *
 * listen: a node:tls server (Deno's implementation, on the same rustls as
 * Deno.listenTls) on the entry's address, offering ALPN http/1.1, and with
 * `mtls = true` requiring a client certificate issued by the entry's `ca`
 * (Deno.listenTls cannot ask for one). Not Deno.listenTls, whose
 * connections cannot turn Nagle's algorithm off: measured, one handshake in
 * ten then waited 40 ms for a delayed ACK (BENCHMARKS.md); and closing a
 * Deno TLS connection whose handshake has not finished leaves its TCP socket
 * open. Each client's handshake runs on its own (a client that stalls or
 * leaves mid-handshake holds up no one, and is dropped after
 * {@link HANDSHAKE_TIMEOUT_MS}); then the bridge connects to the guest's
 * Unix listener and copies bytes both ways.
 *
 * connect: Deno's TLS to the peer (TCP with Nagle off, then Deno.startTls;
 * Deno.connectTls when `mtls = true`, as only it presents a client
 * certificate), verified against Deno's default roots plus the entry's
 * `ca`; the handshake completes before the guest starts, so a peer with a
 * wrong certificate fails the run (exit 76). Then the guest's socket is
 * connected to a one-use Unix listener of the bridge.
 *
 * @module
 */
import { bridgedSocketPath, TLS_SOCKET_DIR_ENV } from "./tls_socket_paths.ts";
import { RunDir } from "./run_dir.ts";
import * as net from "node:net";
import * as tls from "node:tls";
import { connectUnixSocket, listenUnixSocket } from "../../ffi/wasi_sockets.ts";
import type { SocketResult } from "../../ffi/wasi_sockets.ts";
import { EnarxError } from "../errors.ts";
import type { FileEntry } from "./config.ts";
import type { KeepIdentity } from "./keep_identity.ts";

/**
 * The ALPN protocols a tls `listen` offers: HTTP/1.1 only. Enarx.toml (as
 * Enarx's schema has it) has no key to name others, and HTTP/1.1 is what
 * the workloads that serve HTTP speak; a client that offers ALPN without
 * it is refused in the handshake (no_application_protocol), one that
 * offers none is served.
 */
export const LISTEN_ALPN: readonly string[] = ["http/1.1"];

/** How long a TLS client has to finish its handshake, and a connect its own. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * How long closing waits for what a guest wrote before it ended to reach
 * its TLS peers (the guest's sockets are closed by then, so this is only
 * data already in flight).
 */
const DRAIN_MS = 2_000;

/** The size of one copy between a TLS stream and the guest's socket. */
const CHUNK = 64 * 1024;

/** A guest socket whose other side is the bridge: the host fd for the shim's table. */
export interface BridgedSocket {
  /** The host fd (a Unix socket) the guest gets. */
  fd: number;
  /** The TCP port of the TLS side (bound or connected to). */
  port: number;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length;) done += await conn.write(bytes.subarray(done));
}

/** Copies `from` to `to` until end of stream, then half-closes `to`. */
async function copy(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(CHUNK);
  while (true) {
    const n = await from.read(buf);
    if (n === null) break;
    await writeAll(to, buf.subarray(0, n));
  }
  await to.closeWrite();
}

/** Runs `promise` with a deadline; rejects with `what` when it passes. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(what)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

function closeQuietly(conn: Deno.Conn | Deno.Listener): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

function unixFailure(what: string, result: Extract<SocketResult, { ok: false }>): EnarxError {
  return new EnarxError(
    "socket-tls-bridge",
    `Cannot make the plaintext side of ${what}: ${result.reason}`,
    { exit: "io" },
  );
}

/** Reads the `ca` anchors of an entry as PEM texts; a missing file is exit 66. */
export async function trustAnchors(entry: FileEntry): Promise<string[]> {
  const out: string[] = [];
  for (const source of entry.ca ?? []) {
    if ("pem" in source) {
      out.push(source.pem);
      continue;
    }
    out.push(await readAnchor(entry, source));
  }
  return out;
}

async function readAnchor(entry: FileEntry, source: { path: string }): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(source.path);
  } catch (cause) {
    throw new EnarxError(
      "socket-tls-ca-unreadable",
      `Cannot read ca "${source.path}" of [[files]] "${entry.name}": ${errorText(cause)}; ` +
        `check the path (a relative one starts at the Enarx.toml's folder)`,
      { exit: "noInput", cause },
    );
  }
  if (!text.includes("-----BEGIN CERTIFICATE-----")) {
    throw new EnarxError(
      "socket-tls-ca-invalid",
      `ca "${source.path}" of [[files]] "${entry.name}" holds no PEM certificate; give a PEM file`,
      { exit: "dataError" },
    );
  }
  return text;
}

/** Why a connect failed, for a person; `tls` says whether TCP had connected. */
function connectError(entry: FileEntry, cause: unknown, tls: boolean): EnarxError {
  const target = `${entry.host}:${entry.port}`;
  const what = `[[files]] "${entry.name}"`;
  const why = errorText(cause);
  if (tls) {
    return new EnarxError(
      "socket-tls-handshake",
      `The TLS handshake with ${target} for ${what} failed: ${why}; check the peer's ` +
        `certificate, or add its CA with ca = "ca.pem" in the entry`,
      { exit: "protocol", cause },
    );
  }
  if (/lookup|resolve|name or service/i.test(why)) {
    return new EnarxError(
      "socket-host-unresolved",
      `Cannot resolve host "${entry.host}" of ${what}: ${why}; check the name ` +
        `(or --connect ${entry.name}=HOST:PORT)`,
      { exit: "unavailable", cause },
    );
  }
  return new EnarxError(
    "socket-connect-failed",
    `Cannot connect to ${target} for ${what}: ${why}; check that it is up`,
    { exit: cause instanceof Deno.errors.ConnectionRefused ? "unavailable" : "io", cause },
  );
}

/** The TLS bridges of one run, and their private directory. */
export class TlsBridge {
  readonly #dir: string;
  /** The temporary directory when this run made one (not the fixed one). */
  readonly #owned: RunDir | undefined;
  readonly #servers = new Set<tls.Server>();
  /** Every TCP socket of the servers, handshake done or not. */
  readonly #sockets = new Set<net.Socket>();
  readonly #conns = new Set<Deno.Conn>();
  readonly #tasks = new Set<Promise<void>>();
  /** For each spliced pair, the copy from the guest to its TLS peer. */
  readonly #outbound = new Set<Promise<void>>();
  #count = 0;
  #closed = false;

  private constructor(dir: string, owned: RunDir | undefined) {
    this.#dir = dir;
    this.#owned = owned;
  }

  /**
   * Makes the private directory (0700) for the run's Unix sockets: the
   * fixed one of {@link TLS_SOCKET_DIR_ENV}, else `$TMPDIR/enarx-tls-*`
   * (after removing those of killed runs).
   */
  static async create(): Promise<TlsBridge> {
    const fixed = Deno.env.get(TLS_SOCKET_DIR_ENV);
    if (fixed === undefined || fixed === "") {
      const owned = await RunDir.create("enarx-tls-");
      return new TlsBridge(owned.path, owned);
    }
    await Deno.mkdir(fixed, { mode: 0o700 });
    await Deno.chmod(fixed, 0o700);
    return new TlsBridge(fixed, undefined);
  }

  /** The private directory. */
  get dir(): string {
    return this.#dir;
  }

  #path(kind: "listen" | "connect"): string {
    return bridgedSocketPath(this.#dir, kind, this.#count++);
  }

  #track(task: Promise<void>): void {
    const done = task.catch(() => {}).finally(() => this.#tasks.delete(done));
    this.#tasks.add(done);
  }

  /**
   * Listens with TLS for `entry` as `identity` (offering {@link LISTEN_ALPN};
   * with `mtls`, only to clients with a certificate issued by the entry's
   * `ca`); returns the guest's Unix listener. Throws the server's error
   * (with its node `code`, e.g. EADDRINUSE; the caller names it) or
   * EnarxError (a `ca` that cannot be read: 66, or is not PEM: 65).
   */
  async listen(entry: FileEntry, identity: KeepIdentity): Promise<BridgedSocket> {
    const clientCas = entry.mtls === true ? await trustAnchors(entry) : undefined;
    const path = this.#path("listen");
    const server = tls.createServer({
      cert: identity.certPem,
      key: identity.keyPem,
      allowHalfOpen: true,
      noDelay: true,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      ALPNProtocols: [...LISTEN_ALPN],
      // rustls verifies the chain to these CAs only (not the default roots)
      // and refuses a client without one in the handshake.
      ...(clientCas === undefined
        ? {}
        : { ca: clientCas, requestCert: true, rejectUnauthorized: true }),
    });
    server.on("secureConnection", (socket: tls.TLSSocket) => this.#serve(socket, path));
    server.on("connection", (socket: net.Socket) => {
      this.#sockets.add(socket);
      socket.once("close", () => this.#sockets.delete(socket));
    });
    // A client that fails or stalls its handshake: node destroys its socket; nothing else to do.
    server.on("tlsClientError", () => {});
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: entry.addr ?? "::", port: entry.port ?? 0, backlog: 1024 }, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.#servers.add(server);
    const unix = listenUnixSocket(path);
    if (!unix.ok) throw unixFailure(`[[files]] "${entry.name}"`, unix);
    return { fd: unix.fd, port: (server.address() as { port: number }).port };
  }

  /**
   * One client, its handshake done: a plaintext connection to the guest,
   * piped both ways by node's streams (back-pressure, and half-close: the
   * client's close_notify is the guest's end of stream, and the guest's
   * shutdown is the client's close_notify).
   */
  #serve(socket: tls.TLSSocket, path: string): void {
    socket.setNoDelay(true);
    if (this.#closed) {
      socket.destroy();
      return;
    }
    const plain = net.connect({ path, allowHalfOpen: true });
    this.#sockets.add(plain);
    plain.once("close", () => this.#sockets.delete(plain));
    const fail = () => {
      socket.destroy();
      plain.destroy();
    };
    socket.on("error", fail);
    plain.on("error", fail);
    socket.once("close", () => plain.destroy());
    const outbound = new Promise<void>((resolve) => {
      socket.once("finish", resolve);
      socket.once("close", resolve);
    });
    const drained = outbound.finally(() => this.#outbound.delete(drained));
    this.#outbound.add(drained);
    plain.once("connect", () => {
      socket.pipe(plain);
      plain.pipe(socket);
    });
  }

  /** Copies both ways until both ends are done or either fails; then closes both. */
  async #splice(tls: Deno.Conn, plain: Deno.Conn): Promise<void> {
    this.#conns.add(tls);
    this.#conns.add(plain);
    const outbound = copy(plain, tls);
    const drained = outbound.catch(() => {}).finally(() => this.#outbound.delete(drained));
    this.#outbound.add(drained);
    const both = [copy(tls, plain), outbound];
    try {
      await Promise.all(both);
    } catch {
      // a reset on either side ends the pair
    }
    this.#drop(tls);
    this.#drop(plain);
    await Promise.allSettled(both);
  }

  #drop(conn: Deno.Conn): void {
    this.#conns.delete(conn);
    closeQuietly(conn);
  }

  /**
   * Connects with TLS for `entry` (the handshake done, verified against the
   * default roots and the entry's `ca`; `identity` is presented when
   * `mtls`), and returns the guest's Unix socket connected to it. Throws
   * EnarxError: unresolved or refused (69), a failed handshake (76).
   */
  async connect(entry: FileEntry, identity: KeepIdentity | undefined): Promise<BridgedSocket> {
    const caCerts = await trustAnchors(entry);
    const port = entry.port ?? 443;
    let conn: Deno.TlsConn;
    try {
      conn = await within(
        this.#openTls(entry, caCerts, entry.mtls ? identity : undefined),
        HANDSHAKE_TIMEOUT_MS,
        "timed out",
      );
    } catch (cause) {
      throw connectError(entry, cause, false);
    }
    try {
      await within(conn.handshake(), HANDSHAKE_TIMEOUT_MS, "handshake timed out");
    } catch (cause) {
      closeQuietly(conn);
      throw connectError(entry, cause, true);
    }
    try {
      return { fd: await this.#plainPeer(entry, conn), port };
    } catch (error) {
      closeQuietly(conn);
      throw error;
    }
  }

  /** TCP to the peer and a TLS client on it (the handshake not yet done). */
  async #openTls(
    entry: FileEntry,
    caCerts: string[],
    identity: KeepIdentity | undefined,
  ): Promise<Deno.TlsConn> {
    const hostname = entry.host ?? "";
    const port = entry.port ?? 443;
    const anchors = caCerts.length > 0 ? caCerts : undefined;
    if (identity !== undefined) {
      // Only connectTls presents a client certificate; its socket keeps Nagle's algorithm.
      return await Deno.connectTls({
        hostname,
        port,
        caCerts: anchors,
        cert: identity.certPem,
        key: identity.keyPem,
      });
    }
    const tcp = await Deno.connect({ hostname, port });
    tcp.setNoDelay(true);
    return await Deno.startTls(tcp, { hostname, caCerts: anchors });
  }

  /** A one-use Unix listener: the guest's end connects, the bridge accepts and splices. */
  async #plainPeer(entry: FileEntry, tls: Deno.TlsConn): Promise<number> {
    const path = this.#path("connect");
    const listener = Deno.listen({ transport: "unix", path });
    try {
      const guest = connectUnixSocket(path);
      if (!guest.ok) throw unixFailure(`[[files]] "${entry.name}"`, guest);
      const plain = await listener.accept();
      this.#track(this.#splice(tls, plain));
      return guest.fd;
    } finally {
      closeQuietly(listener);
      await Deno.remove(path).catch(() => {});
    }
  }

  /**
   * Stops listening, lets what the guest already wrote reach its peers
   * (at most {@link DRAIN_MS}; close the guest's sockets first), closes
   * every connection and removes the directory.
   */
  async close(): Promise<void> {
    this.#closed = true;
    for (const server of this.#servers) server.close();
    if (this.#outbound.size > 0) {
      await within(Promise.allSettled([...this.#outbound]), DRAIN_MS, "drain").catch(() => {});
    }
    for (const conn of this.#conns) closeQuietly(conn);
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    this.#servers.clear();
    this.#conns.clear();
    await Promise.allSettled([...this.#tasks]);
    if (this.#owned !== undefined) await this.#owned.close();
    else await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}
