/**
 * A node:tls socket seen as a pull-based byte connection (read, write,
 * close), for api/http1_request.ts. keepmgr's server uses node:tls rather
 * than Deno.listenTls because, in Deno 2.9, closing a Deno TLS connection
 * whose handshake has not finished leaves its TCP socket open, whereas a
 * node:tls socket is destroyed at once (and has a handshake timeout).
 *
 * @module
 */
import type { TLSSocket } from "node:tls";
import type { ByteConn } from "./http1_request.ts";

/** A socket's bytes, read on demand. */
export class SocketConn implements ByteConn {
  readonly #socket: TLSSocket;
  #chunks: Uint8Array[] = [];
  #ended = false;
  #failed?: Error;
  #wake?: () => void;

  /** Wraps `socket` (paused until read). */
  constructor(socket: TLSSocket) {
    this.#socket = socket;
    socket.pause();
    socket.on("data", (chunk: Uint8Array) => {
      this.#chunks.push(new Uint8Array(chunk));
      socket.pause();
      this.#wake?.();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#wake?.();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#wake?.();
    });
    socket.on("error", (error: Error) => {
      this.#failed = error;
      this.#wake?.();
    });
  }

  /** Reads into `buffer`: the count, or null once the peer ended or the socket closed. */
  async read(buffer: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#failed !== undefined) throw this.#failed;
      if (this.#ended) return null;
      const woken = new Promise<void>((resolve) => this.#wake = resolve);
      this.#socket.resume();
      await woken;
      this.#wake = undefined;
    }
    const chunk = this.#chunks[0];
    const n = Math.min(chunk.length, buffer.length);
    buffer.set(chunk.subarray(0, n));
    if (n === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(n);
    return n;
  }

  /** Writes all of `bytes` and ends the stream. */
  end(bytes: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#socket.destroyed) return reject(new Error("the connection is closed"));
      this.#socket.once("error", reject);
      this.#socket.end(bytes, () => resolve());
    });
  }

  /** Destroys the socket (and its TCP connection) now. */
  close(): void {
    this.#socket.destroy();
  }
}
