/**
 * keepmgr's HTTPS server: TLS connections accepted here (Deno.listenTls), one
 * HTTP/1.1 request each, handed to the API handler as a `Request`. It exists
 * because Deno.serve has no handshake or header timeout and no connection
 * cap: here a connection over the cap is closed on accept, one that has not
 * finished its TLS handshake and request head within `headerTimeoutMs` (or
 * its body within `bodyTimeoutMs`) is closed, heads and bodies are bounded,
 * and on shutdown requests in flight are answered (503) rather than dropped.
 *
 * @module
 */
import type { KeepLog } from "../keep_supervisor.ts";
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
  /** Where it listens. */
  readonly addr: Deno.NetAddr;
  readonly #listener: Deno.TlsListener;
  readonly #options: Http1ServerOptions;
  readonly #limits: ServerLimits;
  readonly #log: KeepLog;
  /** Open connections, and whether each is waiting for its request (closed first on shutdown). */
  readonly #conns = new Map<Deno.Conn, { reading: boolean; done: Promise<void> }>();
  readonly #stopping = Promise.withResolvers<void>();
  #stopped = false;
  #refused = 0;
  #accepting: Promise<void>;

  private constructor(listener: Deno.TlsListener, options: Http1ServerOptions) {
    this.#listener = listener;
    this.#options = options;
    this.#limits = { ...DEFAULT_SERVER_LIMITS, ...options.limits };
    this.#log = options.log ?? (() => {});
    this.addr = listener.addr;
    this.#accepting = this.#acceptLoop();
  }

  /** Listens (TLS) and starts serving. */
  static listen(options: Http1ServerOptions): Http1Server {
    const listener = Deno.listenTls({
      hostname: options.hostname,
      port: options.port,
      cert: options.cert,
      key: options.key,
    });
    return new Http1Server(listener, options);
  }

  /** Connections open now. */
  get connections(): number {
    return this.#conns.size;
  }

  async #acceptLoop(): Promise<void> {
    while (!this.#stopped) {
      let conn: Deno.TlsConn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#stopped) return;
        // Out of descriptors, say: wait a moment rather than spin.
        this.#log("warn", "accept failed", { error: String(error) });
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      if (this.#conns.size >= this.#limits.maxConnections) {
        closeQuietly(conn);
        if (this.#refused++ % 100 === 0) {
          this.#log("warn", "connection refused: too many open", {
            max_connections: this.#limits.maxConnections,
            refused: this.#refused,
          });
        }
        continue;
      }
      const state = { reading: true, done: Promise.resolve() };
      state.done = this.#serve(conn, state).catch(() => {}).finally(() => {
        closeQuietly(conn);
        this.#conns.delete(conn);
      });
      this.#conns.set(conn, state);
    }
  }

  /** Reads one request within the deadlines, answers it and closes. */
  async #serve(conn: Deno.TlsConn, state: { reading: boolean }): Promise<void> {
    const limits = this.#limits;
    let timer = setTimeout(() => closeQuietly(conn), limits.headerTimeoutMs);
    let response: Response;
    try {
      const head = await readRequestHead(conn, limits);
      clearTimeout(timer);
      timer = setTimeout(() => closeQuietly(conn), limits.bodyTimeoutMs);
      const body = await readRequestBody(conn, head);
      clearTimeout(timer);
      const request = toRequest(head, body, this.addr);
      state.reading = false;
      response = await this.#answer(request, conn.remoteAddr);
    } catch (error) {
      clearTimeout(timer);
      if (!(error instanceof HttpRefusal)) return; // closed, timed out or reset: nothing to answer
      state.reading = false;
      response = this.#options.refusal(error.status, error.code, error.message);
    }
    timer = setTimeout(() => closeQuietly(conn), limits.writeTimeoutMs);
    try {
      await writeResponse(conn, response);
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
    closeQuietly(this.#listener);
    this.#stopping.resolve();
    for (const [conn, state] of this.#conns) if (state.reading) closeQuietly(conn);
    await Promise.all([...this.#conns.values()].map((s) => s.done));
    await this.#accepting;
  }
}

/** Writes a response with Content-Length and `connection: close`. */
async function writeResponse(conn: Deno.Conn, response: Response): Promise<void> {
  const body = new Uint8Array(await response.arrayBuffer());
  let head = `HTTP/1.1 ${response.status} ${REASONS[response.status] ?? "Status"}\r\n`;
  for (const [name, value] of response.headers) {
    if (name !== "content-length" && name !== "connection") head += `${name}: ${value}\r\n`;
  }
  head += `content-length: ${body.length}\r\nconnection: close\r\n\r\n`;
  const bytes = new Uint8Array(head.length + body.length);
  bytes.set(new TextEncoder().encode(head));
  bytes.set(body, head.length);
  let at = 0;
  while (at < bytes.length) at += await conn.write(bytes.subarray(at));
}

function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch { /* already closed */ }
}
