/**
 * `prot = "tls"` sockets: the keep's runtime ends TLS (listen) or starts it
 * (connect) with Deno's TLS on the event loop, and hands the guest the
 * plaintext side as a Unix stream socket, which the socket shim serves like
 * any other (ffi/wasi_sockets.ts). The Unix sockets live in a private
 * directory (mode 0700, owned by the keep's user), so no other user can
 * connect to a guest's plaintext; the directory is removed when the run ends
 * (a SIGKILL leaves it behind, empty of anything but dead socket names).
 *
 * listen: Deno.listenTls on the entry's address; each client's handshake
 * runs on its own (a client that stalls or leaves mid-handshake holds up
 * no one, and is dropped after {@link HANDSHAKE_TIMEOUT_MS}); then the
 * bridge connects to the guest's Unix listener and copies bytes both ways.
 *
 * connect: Deno.connectTls to the peer, verified against Deno's default
 * roots plus the entry's `ca`, presenting the keep's certificate when
 * `mtls = true`; the handshake completes before the guest starts, so a peer
 * with a wrong certificate fails the run (exit 76). Then the guest's socket
 * is connected to a one-use Unix listener of the bridge.
 *
 * @module
 */
import { join } from "node:path";
import { connectUnixSocket, listenUnixSocket } from "../../ffi/wasi_sockets.ts";
import type { SocketResult } from "../../ffi/wasi_sockets.ts";
import { EnarxError } from "../errors.ts";
import type { FileEntry } from "./config.ts";
import type { KeepIdentity } from "./keep_identity.ts";

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
      `Cannot read ca "${source.path}" of [[files]] "${entry.name}": ${errorText(cause)}`,
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
  readonly #listeners = new Set<Deno.Listener>();
  readonly #conns = new Set<Deno.Conn>();
  readonly #tasks = new Set<Promise<void>>();
  /** For each spliced pair, the copy from the guest to its TLS peer. */
  readonly #outbound = new Set<Promise<void>>();
  #count = 0;
  #closed = false;

  private constructor(dir: string) {
    this.#dir = dir;
  }

  /** Makes the private directory (0700) for the run's Unix sockets. */
  static async create(): Promise<TlsBridge> {
    const dir = await Deno.makeTempDir({ prefix: "enarx-tls-" });
    await Deno.chmod(dir, 0o700);
    return new TlsBridge(dir);
  }

  /** The private directory. */
  get dir(): string {
    return this.#dir;
  }

  #path(kind: string): string {
    return join(this.#dir, `${kind}-${this.#count++}.sock`);
  }

  #track(task: Promise<void>): void {
    const done = task.catch(() => {}).finally(() => this.#tasks.delete(done));
    this.#tasks.add(done);
  }

  /**
   * Listens with TLS for `entry` as `identity`; returns the guest's Unix
   * listener. Throws what Deno.listenTls throws (the caller names it).
   */
  listen(entry: FileEntry, identity: KeepIdentity): BridgedSocket {
    const tls = Deno.listenTls({
      hostname: entry.addr ?? "::",
      port: entry.port ?? 0,
      cert: identity.certPem,
      key: identity.keyPem,
    });
    const path = this.#path("listen");
    const unix = listenUnixSocket(path);
    if (!unix.ok) {
      tls.close();
      throw unixFailure(`[[files]] "${entry.name}"`, unix);
    }
    this.#listeners.add(tls);
    this.#track(this.#acceptLoop(tls, path));
    return { fd: unix.fd, port: tls.addr.port };
  }

  async #acceptLoop(listener: Deno.TlsListener, path: string): Promise<void> {
    while (!this.#closed) {
      let conn: Deno.TlsConn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (this.#closed || error instanceof Deno.errors.BadResource) return;
        continue; // one client's failed accept (e.g. reset) ends nothing else
      }
      this.#track(this.#serve(conn, path));
    }
  }

  /** One client: its handshake, then a plaintext connection to the guest. */
  async #serve(conn: Deno.TlsConn, path: string): Promise<void> {
    this.#conns.add(conn);
    try {
      await within(conn.handshake(), HANDSHAKE_TIMEOUT_MS, "handshake timed out");
    } catch {
      this.#drop(conn);
      return;
    }
    let plain: Deno.UnixConn;
    try {
      plain = await Deno.connect({ transport: "unix", path });
    } catch {
      this.#drop(conn);
      return;
    }
    await this.#splice(conn, plain);
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
    const options: Deno.ConnectTlsOptions = {
      hostname: entry.host,
      port: entry.port ?? 443,
      caCerts: caCerts.length > 0 ? caCerts : undefined,
    };
    let tls: Deno.TlsConn;
    try {
      tls = await within(
        entry.mtls && identity
          ? Deno.connectTls({ ...options, cert: identity.certPem, key: identity.keyPem })
          : Deno.connectTls(options),
        HANDSHAKE_TIMEOUT_MS,
        "timed out",
      );
    } catch (cause) {
      throw connectError(entry, cause, false);
    }
    try {
      await within(tls.handshake(), HANDSHAKE_TIMEOUT_MS, "handshake timed out");
    } catch (cause) {
      closeQuietly(tls);
      throw connectError(entry, cause, true);
    }
    try {
      return { fd: await this.#plainPeer(entry, tls), port: options.port };
    } catch (error) {
      closeQuietly(tls);
      throw error;
    }
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
    for (const listener of this.#listeners) closeQuietly(listener);
    if (this.#outbound.size > 0) {
      await within(Promise.allSettled([...this.#outbound]), DRAIN_MS, "drain").catch(() => {});
    }
    for (const conn of this.#conns) closeQuietly(conn);
    this.#listeners.clear();
    this.#conns.clear();
    await Promise.allSettled([...this.#tasks]);
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}
