/**
 * A plain TCP relay from one host port to one `listen` socket on a keep's
 * loopback: every connection accepted is paired with a new connection to the
 * keep, and bytes are copied both ways on the event loop until each side
 * ends (half-closes pass through, so a client that shuts down its writing
 * side still reads the answer). Unlike the deploy forward (../forward.ts)
 * there are no handshake or idle timeouts: a service decides how long its
 * clients may stay.
 *
 * @module
 */

/** Connections one service forward keeps open at once (past it, new ones are closed). */
export const MAX_SERVICE_CONNECTIONS = 1024;

/** One relayed connection. */
interface Pair {
  client: Deno.TcpConn;
  target?: Deno.TcpConn;
}

/** Relays a listener's connections to `127.0.0.1:targetPort`; {@link close} ends all. */
export class ServiceForward {
  readonly #listener: Deno.TcpListener;
  readonly #targetPort: number;
  readonly #pairs = new Set<Pair>();
  readonly #accepting: Promise<void>;
  #closed = false;

  /** Starts relaying connections accepted on `listener`. */
  constructor(listener: Deno.TcpListener, targetPort: number) {
    this.#listener = listener;
    this.#targetPort = targetPort;
    this.#accepting = this.#accept();
  }

  /** The host port. */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** Connections relayed now. */
  get connections(): number {
    return this.#pairs.size;
  }

  async #accept(): Promise<void> {
    while (!this.#closed) {
      let client: Deno.TcpConn;
      try {
        client = await this.#listener.accept();
      } catch {
        return; // closed
      }
      if (this.#pairs.size >= MAX_SERVICE_CONNECTIONS) {
        closeQuietly(client);
        continue;
      }
      const pair: Pair = { client };
      this.#pairs.add(pair);
      this.#relay(pair).finally(() => this.#end(pair));
    }
  }

  async #relay(pair: Pair): Promise<void> {
    try {
      pair.client.setNoDelay(true);
      pair.target = await Deno.connect({ hostname: "127.0.0.1", port: this.#targetPort });
      pair.target.setNoDelay(true);
      if (this.#closed) return;
      await Promise.all([copy(pair.client, pair.target), copy(pair.target, pair.client)]);
    } catch {
      // The keep refused or one side broke: the client sees the close.
    }
  }

  #end(pair: Pair): void {
    closeQuietly(pair.client);
    if (pair.target !== undefined) closeQuietly(pair.target);
    this.#pairs.delete(pair);
  }

  /** Stops listening and closes every relayed connection. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.#listener);
    for (const pair of [...this.#pairs]) this.#end(pair);
    await this.#accepting;
  }
}

/** Copies `from` to `to` until `from` ends, then half-closes `to`. */
async function copy(from: Deno.TcpConn, to: Deno.TcpConn): Promise<void> {
  const buf = new Uint8Array(64 * 1024);
  while (true) {
    const n = await from.read(buf);
    if (n === null) break;
    let at = 0;
    while (at < n) at += await to.write(buf.subarray(at, n));
  }
  await to.closeWrite().catch(() => {});
}

function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch { /* already closed */ }
}
