/**
 * A TCP forward from a port that keepmgr opens for one keep to the keep's
 * HTTPS listener on 127.0.0.1. keepmgr only copies bytes: TLS runs end to
 * end between the client and the keep, pinned to a key the host never sees.
 *
 * Anyone who can reach the port can connect, so idle sockets must never hold
 * the place of the client that needs it: a connection the keep has not
 * answered within the handshake timeout, or that moves no byte for the idle
 * timeout, is closed; and when every place is taken, a newcomer takes the
 * place of the connection idle the longest. Once the keep has its workload,
 * the forward stops accepting ({@link TcpForward.stopAccepting}); when the
 * keep ends, {@link TcpForward.close} with `drain` relays everything still
 * in flight to a client however slowly it reads, as long as it keeps reading.
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
  /** Connections open at once (default 16); past it the longest idle one makes room. */
  maxConnections?: number;
  /** Time the keep has to send a first byte on a connection (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Time a connection may move no byte before the workload runs (default 30 s). */
  idleTimeoutMs?: number;
}

/** One client connection and its pair to the keep. */
interface Pair {
  client: Deno.TcpConn;
  target?: Deno.TcpConn;
  /** When a byte last moved either way (performance.now()). */
  lastActive: number;
  /** Whether the keep has sent a byte (its TLS answer). */
  answered: boolean;
  /** Settles when both directions have ended. */
  done?: Promise<void>;
}

/** A listening forward; {@link close} stops it and closes every connection. */
export class TcpForward {
  #listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  #targetPort: number;
  #maxConnections: number;
  #handshakeMs: number;
  #idleMs: number;
  #pairs = new Set<Pair>();
  #accepting = true;
  #closed = false;
  #acceptLoop: Promise<void>;
  #sweeper: ReturnType<typeof setInterval>;

  private constructor(
    listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>,
    options: TcpForwardOptions,
  ) {
    this.#listener = listener;
    this.#targetPort = options.targetPort;
    this.#maxConnections = options.maxConnections ?? 16;
    this.#handshakeMs = options.handshakeTimeoutMs ?? 10_000;
    this.#idleMs = options.idleTimeoutMs ?? 30_000;
    this.#acceptLoop = this.#accept();
    const every = Math.max(10, Math.min(this.#handshakeMs, this.#idleMs) / 4);
    this.#sweeper = setInterval(() => this.#sweep(), every);
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

  /** The number of client connections being forwarded now. */
  get connections(): number {
    return this.#pairs.size;
  }

  async #accept(): Promise<void> {
    while (this.#accepting) {
      let client: Deno.TcpConn;
      try {
        client = await this.#listener.accept();
      } catch {
        return; // listener closed
      }
      if (!this.#accepting || !this.#makeRoom()) {
        closeQuietly(client);
        continue;
      }
      // A relay must not add Nagle's wait to the delayed ACKs of both ends
      // (TLS records are written whole; each waits otherwise up to 40 ms).
      client.setNoDelay(true);
      const pair: Pair = { client, lastActive: performance.now(), answered: false };
      this.#pairs.add(pair);
      pair.done = this.#forward(pair).finally(() => this.#pairs.delete(pair));
    }
  }

  /** Makes a place for one more connection, evicting the longest idle; false if none is idle. */
  #makeRoom(): boolean {
    if (this.#pairs.size < this.#maxConnections) return true;
    let idlest: Pair | undefined;
    for (const pair of this.#pairs) {
      if (idlest === undefined || pair.lastActive < idlest.lastActive) idlest = pair;
    }
    // A connection that moved bytes in the last second is in use: do not cut it.
    if (idlest === undefined || performance.now() - idlest.lastActive < 1_000) return false;
    this.#end(idlest);
    return true;
  }

  /** Closes connections the keep never answered, and (before the workload runs) idle ones. */
  #sweep(): void {
    const now = performance.now();
    for (const pair of this.#pairs) {
      const idle = now - pair.lastActive;
      if (!pair.answered && idle >= this.#handshakeMs) this.#end(pair);
      else if (this.#accepting && idle >= this.#idleMs) this.#end(pair);
    }
  }

  async #forward(pair: Pair): Promise<void> {
    try {
      pair.target = await Deno.connect({ hostname: "127.0.0.1", port: this.#targetPort });
      pair.target.setNoDelay(true);
      if (this.#closed || !this.#pairs.has(pair)) return;
      // Each direction ends when its source ends (closing its destination's
      // write side); the pair is done when both have ended.
      await Promise.all([
        this.#copy(pair, pair.client, pair.target, false),
        this.#copy(pair, pair.target, pair.client, true),
      ]);
    } catch {
      // The keep is not listening (any more): the client sees the close.
    } finally {
      this.#end(pair);
    }
  }

  async #copy(
    pair: Pair,
    from: Deno.TcpConn,
    to: Deno.TcpConn,
    fromKeep: boolean,
  ): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buf);
        if (n === null) break;
        pair.lastActive = performance.now();
        if (fromKeep) pair.answered = true;
        let at = 0;
        while (at < n) {
          at += await to.write(buf.subarray(at, n));
          pair.lastActive = performance.now(); // a slow reader that reads is active
        }
      }
      await to.closeWrite();
    } catch {
      // One side broke: end the pair, so that the other direction ends too.
      this.#end(pair);
    }
  }

  #end(pair: Pair): void {
    closeQuietly(pair.client);
    if (pair.target !== undefined) closeQuietly(pair.target);
    this.#pairs.delete(pair);
  }

  /**
   * Stops accepting connections (the keep has its one workload, so a new
   * connection could only be refused by it); open ones go on, and no longer
   * time out for being idle (a workload may be silent for long).
   */
  stopAccepting(): void {
    if (!this.#accepting) return;
    this.#accepting = false;
    closeQuietly(this.#listener);
  }

  /**
   * Stops listening and closes every forwarded connection. With `drain`,
   * first lets open connections relay what is still in flight (a keep that
   * has exited may have just written its last bytes, and the client may read
   * slowly): a connection is closed when it has finished or moved no byte for
   * `drainIdleMs` (default 120 s) since the drain began. Safe to call twice.
   */
  async close(options: { drain?: boolean; drainIdleMs?: number } = {}): Promise<void> {
    if (this.#closed) return;
    this.stopAccepting();
    if (options.drain === true) {
      const idleMs = options.drainIdleMs ?? 120_000;
      // Idle counts from here: a workload silent for longer than idleMs
      // left every pair "idle" just before its last bytes, which the copy
      // loops may not have relayed yet when this first looks.
      const started = performance.now();
      for (const pair of this.#pairs) pair.lastActive = Math.max(pair.lastActive, started);
      while (this.#pairs.size > 0) {
        const now = performance.now();
        for (const pair of this.#pairs) {
          if (now - pair.lastActive >= idleMs) this.#end(pair);
        }
        const done = [...this.#pairs].map((p) => p.done);
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          Promise.allSettled(done),
          new Promise((resolve) => timer = setTimeout(resolve, Math.min(idleMs, 1_000))),
        ]);
        clearTimeout(timer);
      }
    }
    this.#closed = true;
    clearInterval(this.#sweeper);
    for (const pair of [...this.#pairs]) this.#end(pair);
    await this.#acceptLoop;
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
