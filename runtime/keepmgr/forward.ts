/**
 * A TCP forward from a port that keepmgr opens for one keep to the keep's
 * HTTPS listener on 127.0.0.1. keepmgr only copies bytes: TLS runs end to
 * end between the client and the keep, pinned to a key the host never sees.
 *
 * @module
 */

/** Options of {@link TcpForward.open}. */
export interface TcpForwardOptions {
  /** Address to listen on (default `127.0.0.1`). */
  hostname?: string;
  /** Port to listen on (default 0: an ephemeral port). */
  port?: number;
  /** The keep's loopback port. */
  targetPort: number;
  /** Connections open at once; more are closed at once (default 16). */
  maxConnections?: number;
}

/** A listening forward; {@link close} stops it and closes every connection. */
export class TcpForward {
  #listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  #targetPort: number;
  #maxConnections: number;
  #conns = new Set<Deno.TcpConn>();
  #pairs = new Set<Promise<void>>();
  #closed = false;
  #accepting: Promise<void>;

  private constructor(
    listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>,
    options: TcpForwardOptions,
  ) {
    this.#listener = listener;
    this.#targetPort = options.targetPort;
    this.#maxConnections = options.maxConnections ?? 16;
    this.#accepting = this.#acceptLoop();
  }

  /** Opens the listening side. */
  static open(options: TcpForwardOptions): TcpForward {
    const listener = Deno.listen({
      hostname: options.hostname ?? "127.0.0.1",
      port: options.port ?? 0,
      transport: "tcp",
    });
    return new TcpForward(listener, options);
  }

  /** The port clients connect to. */
  get port(): number {
    return this.#listener.addr.port;
  }

  /** The number of connections being forwarded now. */
  get connections(): number {
    return this.#conns.size;
  }

  async #acceptLoop(): Promise<void> {
    while (!this.#closed) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return; // listener closed
      }
      if (this.#closed || this.#conns.size >= this.#maxConnections) {
        conn.close();
        continue;
      }
      const pair = this.#forward(conn);
      this.#pairs.add(pair);
      pair.finally(() => this.#pairs.delete(pair));
    }
  }

  async #forward(client: Deno.TcpConn): Promise<void> {
    this.#conns.add(client);
    let target: Deno.TcpConn | undefined;
    try {
      target = await Deno.connect({ hostname: "127.0.0.1", port: this.#targetPort });
      if (this.#closed) return;
      this.#conns.add(target);
      // Each direction ends when its source ends (closing its destination's
      // write side); the connection pair is done when both have ended.
      await Promise.all([
        client.readable.pipeTo(target.writable).catch(() => {}),
        target.readable.pipeTo(client.writable).catch(() => {}),
      ]);
    } catch {
      // The keep is not listening (any more): the client sees the close.
    } finally {
      closeQuietly(client);
      this.#conns.delete(client);
      if (target !== undefined) {
        closeQuietly(target);
        this.#conns.delete(target);
      }
    }
  }

  /**
   * Stops listening and closes every forwarded connection. With `drainMs`,
   * first lets open connections finish relaying what is in flight (a keep
   * that has exited may have just written its last bytes) for up to that
   * long. Safe to call twice.
   */
  async close(options: { drainMs?: number } = {}): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.#listener);
    if (options.drainMs !== undefined && options.drainMs > 0 && this.#pairs.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.allSettled([...this.#pairs]),
        new Promise((resolve) => timer = setTimeout(resolve, options.drainMs)),
      ]);
      clearTimeout(timer);
    }
    for (const conn of this.#conns) closeQuietly(conn);
    this.#conns.clear();
    await this.#accepting;
  }

  /** Same as {@link close}, without waiting. */
  [Symbol.dispose](): void {
    this.close();
  }
}

function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch { /* already closed */ }
}
