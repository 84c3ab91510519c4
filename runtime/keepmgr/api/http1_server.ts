/**
 * keepmgr's HTTPS server: TLS connections accepted here (node:tls, see
 * api/socket_conn.ts for why), one HTTP/1.1 request each, handed to the API
 * handler as a `Request`. It exists because Deno.serve has no handshake or
 * header timeout and no connection cap: here a connection over the cap is
 * closed on accept, one that has not finished its TLS handshake within
 * `headerTimeoutMs`, then its request head within `headerTimeoutMs` (and its
 * body within `bodyTimeoutMs`) is closed, heads and bodies are bounded, and
 * on shutdown requests in flight are answered (503) rather than dropped.
 *
 * @module
 */
import tls from "node:tls";
import type { Socket } from "node:net";
import type { KeepLog } from "../keep_supervisor.ts";
import { SocketConn } from "./socket_conn.ts";
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from "./limits.ts";
import { HttpRefusal, readRequestBody, readRequestHead, toRequest } from "./http1_request.ts";

/** The API handler: a request and the client's address. */
export type Http1Handler = (
  request: Request,
  info: { remoteAddr: Deno.NetAddr },
) => Promise<Response>;

/** Options of {@link Http1Server.listen}. */
export interface Http1ServerOptions {
  /** Address to listen on. */
  hostname: string;
  /** Port (0: any free one). */
  port: number;
  /** Certificate chain, PEM. */
  cert: string;
  /** Private key, PEM. */
  key: string;
  /** Limits (default {@link DEFAULT_SERVER_LIMITS}). */
  limits?: Partial<ServerLimits>;
  /** The API. */
  handler: Http1Handler;
  /** The reply to a request refused before the handler (status, code, message). */
  refusal: (status: number, code: string, message: string) => Response;
  /** Structured log. */
  log?: KeepLog;
}

const REASONS: Record<number, string> = {
  200: "OK",
  201: "Created",
  400: "Bad Request",
  401: "Unauthorized",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  411: "Length Required",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  505: "HTTP Version Not Supported",
};

/** A listening server; {@link shutdown} stops it. */
export class Http1Server {
  readonly #server: tls.Server;
  readonly #options: Http1ServerOptions;
  readonly #limits: ServerLimits;
  readonly #log: KeepLog;
  /** Open TCP connections, each with the timer that closes it unless its head arrives in time. */
  readonly #sockets = new Map<string, { socket: Socket; timer: ReturnType<typeof setTimeout> }>();
  /** Connections past their handshake, and whether each still sends its request. */
  readonly #conns = new Map<SocketConn, { reading: boolean; done: Promise<void> }>();
  readonly #stopping = Promise.withResolvers<void>();
  #stopped = false;
  #refused = 0;
  #timedOut = 0;
  #tlsErrors = 0;

  private constructor(options: Http1ServerOptions) {
    this.#options = options;
    this.#limits = { ...DEFAULT_SERVER_LIMITS, ...options.limits };
    this.#log = options.log ?? (() => {});
    this.#server = tls.createServer({
      cert: options.cert,
      key: options.key,
      handshakeTimeout: this.#limits.headerTimeoutMs,
    });
    this.#server.on("connection", (socket: Socket) => this.#admit(socket));
    this.#server.on("secureConnection", (socket: tls.TLSSocket) => {
      const conn = new SocketConn(socket);
      const state = { reading: true, done: Promise.resolve() };
      state.done = this.#serve(conn, socket, state).catch(() => {}).finally(() => {
        conn.close();
        this.#conns.delete(conn);
      });
      this.#conns.set(conn, state);
    });
    // Handshake timeouts and garbage: closed, and said (the first and every 100th time).
    this.#server.on("tlsClientError", (error: Error) => {
      if (this.#tlsErrors++ % 100 === 0) {
        this.#log("warn", "connection closed: TLS handshake failed", {
          error: error.message.slice(0, 200),
          closed: this.#tlsErrors,
        });
      }
    });
  }

  /** Listens (TLS) and starts serving; resolves once listening. */
  static async listen(options: Http1ServerOptions): Promise<Http1Server> {
    const server = new Http1Server(options);
    await new Promise<void>((resolve, reject) => {
      server.#server.once("error", reject);
      server.#server.listen(options.port, options.hostname, () => resolve());
    });
    return server;
  }

  /** Where it listens. */
  get addr(): Deno.NetAddr {
    const a = this.#server.address() as { address: string; port: number };
    return { transport: "tcp", hostname: a.address, port: a.port };
  }

  /** TCP connections open now. */
  get connections(): number {
    return this.#sockets.size;
  }

  /** Counts a new TCP connection, or closes it when the cap is reached. */
  #admit(socket: Socket): void {
    if (this.#stopped || this.#sockets.size >= this.#limits.maxConnections) {
      socket.destroy();
      if (this.#refused++ % 100 === 0) {
        this.#log("warn", "connection refused: too many open", {
          max_connections: this.#limits.maxConnections,
          refused: this.#refused,
        });
      }
      return;
    }
    // The handshake and the request head must arrive within headerTimeoutMs of
    // accept (node:tls's own handshakeTimeout is not enforced reliably here).
    const key = peerKey(socket);
    const timer = setTimeout(() => {
      // Said (the first and every 100th time): a loaded client host looks the same as a slow one.
      if (this.#timedOut++ % 100 === 0) {
        this.#log("warn", "connection closed: no request head within the header timeout", {
          header_timeout_ms: this.#limits.headerTimeoutMs,
          closed: this.#timedOut,
        });
      }
      socket.destroy();
    }, this.#limits.headerTimeoutMs);
    this.#sockets.set(key, { socket, timer });
    socket.on("close", () => {
      clearTimeout(timer);
      if (this.#sockets.get(key)?.socket === socket) this.#sockets.delete(key);
    });
  }

  /** Reads one request within the deadlines, answers it and closes. */
  async #serve(conn: SocketConn, socket: tls.TLSSocket, state: { reading: boolean }) {
    const limits = this.#limits;
    let timer = setTimeout(() => conn.close(), limits.headerTimeoutMs);
    let response: Response;
    let refused = false;
    try {
      const head = await readRequestHead(conn, limits);
      clearTimeout(timer);
      clearTimeout(this.#sockets.get(peerKey(socket))?.timer);
      timer = setTimeout(() => conn.close(), limits.bodyTimeoutMs);
      const body = await readRequestBody(conn, head);
      clearTimeout(timer);
      const request = toRequest(head, body, this.addr);
      state.reading = false;
      const remoteAddr: Deno.NetAddr = {
        transport: "tcp",
        hostname: socket.remoteAddress ?? "unknown",
        port: socket.remotePort ?? 0,
      };
      response = await this.#answer(request, remoteAddr);
    } catch (error) {
      clearTimeout(timer);
      if (!(error instanceof HttpRefusal)) return; // closed, timed out or reset: nothing to answer
      state.reading = false;
      response = this.#options.refusal(error.status, error.code, error.message);
      refused = true;
    }
    timer = setTimeout(() => conn.close(), limits.writeTimeoutMs);
    try {
      await conn.end(await responseBytes(response));
      // A refused client may still be sending its body: read and drop some of
      // it, briefly, so that it reads the answer instead of a reset.
      if (refused) await drain(conn, { bytes: 4 * limits.maxBodyBytes + (1 << 20), ms: 2_000 });
    } finally {
      clearTimeout(timer);
    }
  }

  /** The handler's response, or 503 `shutting-down` as soon as the server stops. */
  async #answer(request: Request, remoteAddr: Deno.NetAddr): Promise<Response> {
    const work = this.#options.handler(request, { remoteAddr });
    const stopped = this.#stopping.promise.then(() =>
      this.#options.refusal(503, "shutting-down", "keepmgr is stopping; retry on another host")
    );
    work.catch(() => {});
    return await Promise.race([work, stopped]);
  }

  /**
   * Stops accepting, closes connections still sending their request, answers
   * requests in flight with 503 `shutting-down`, and waits until every
   * connection is closed.
   */
  async shutdown(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#stopping.resolve();
    for (const [conn, state] of this.#conns) if (state.reading) conn.close();
    await Promise.all([...this.#conns.values()].map((s) => s.done));
    for (const { socket } of this.#sockets.values()) socket.destroy(); // mid-handshake
    await closed;
  }
}

/** Reads and drops up to `bytes` bytes or for `ms` milliseconds, whichever ends first. */
async function drain(conn: SocketConn, { bytes, ms }: { bytes: number; ms: number }) {
  const timer = setTimeout(() => conn.close(), ms);
  const buffer = new Uint8Array(64 * 1024);
  try {
    for (let seen = 0; seen < bytes;) {
      const n = await conn.read(buffer).catch(() => null);
      if (n === null) break;
      seen += n;
    }
  } finally {
    clearTimeout(timer);
  }
}

function peerKey(socket: Socket): string {
  return `${socket.remoteAddress}|${socket.remotePort}`;
}

/** A response's bytes with Content-Length and `connection: close`. */
async function responseBytes(response: Response): Promise<Uint8Array> {
  const body = new Uint8Array(await response.arrayBuffer());
  let head = `HTTP/1.1 ${response.status} ${REASONS[response.status] ?? "Status"}\r\n`;
  for (const [name, value] of response.headers) {
    if (name !== "content-length" && name !== "connection") head += `${name}: ${value}\r\n`;
  }
  head += `content-length: ${body.length}\r\nconnection: close\r\n\r\n`;
  const bytes = new Uint8Array(head.length + body.length);
  bytes.set(new TextEncoder().encode(head));
  bytes.set(body, head.length);
  return bytes;
}
