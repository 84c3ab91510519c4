/**
 * A raw HTTP/1.1 client for the tests of the HTTP workloads
 * (tests/workloads/c/http_server.c, tests/workloads/rust/tokio_http/): it
 * writes bytes as given (pipelined, malformed, cut short) and reads responses
 * one by one off the wire, framed by Content-Length.
 *
 * @module
 */
import assert from "node:assert/strict";

/** One HTTP response as read off the wire. */
export interface Reply {
  /** The status code. */
  status: number;
  /** The status line and headers, without the blank line. */
  head: string;
  /** The body (none for a HEAD). */
  body: string;
}

/** A raw TCP client that reads responses one by one (Content-Length framed). */
export class RawClient {
  #buf = new Uint8Array(0);
  private constructor(readonly conn: Deno.Conn) {}

  /** Connects to 127.0.0.1:PORT. */
  static async open(port: number): Promise<RawClient> {
    return new RawClient(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  /** Writes all of `text`. */
  async send(text: string | Uint8Array): Promise<void> {
    const data = typeof text === "string" ? new TextEncoder().encode(text) : text;
    for (let at = 0; at < data.length;) at += await this.conn.write(data.subarray(at));
  }

  /** Reads more bytes; false at end of stream (or a reset). */
  async #fill(): Promise<boolean> {
    const chunk = new Uint8Array(16384);
    const n = await this.conn.read(chunk).catch(() => null);
    if (n === null) return false;
    const joined = new Uint8Array(this.#buf.length + n);
    joined.set(this.#buf);
    joined.set(chunk.subarray(0, n), this.#buf.length);
    this.#buf = joined;
    return true;
  }

  /** The next response (of a HEAD: without a body), or null when the server closed first. */
  async reply(head = false): Promise<Reply | null> {
    let end: number;
    while ((end = new TextDecoder().decode(this.#buf).indexOf("\r\n\r\n")) < 0) {
      if (!await this.#fill()) return null;
    }
    const text = new TextDecoder().decode(this.#buf.subarray(0, end));
    let length = Number(/\r\ncontent-length: *(\d+)/i.exec(text)?.[1] ?? NaN);
    assert.ok(Number.isInteger(length), `no Content-Length in ${JSON.stringify(text)}`);
    if (head) length = 0;
    while (this.#buf.length < end + 4 + length) {
      if (!await this.#fill()) return null;
    }
    const body = new TextDecoder().decode(this.#buf.subarray(end + 4, end + 4 + length));
    this.#buf = this.#buf.slice(end + 4 + length);
    return { status: Number(text.split(" ")[1]), head: text, body };
  }

  /** True when the server ends the stream (nothing more to read). */
  async ended(): Promise<boolean> {
    return this.#buf.length === 0 && !await this.#fill();
  }

  /** Closes the connection (once; later calls do nothing). */
  close(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}

/** A GET request for `target`, with `extra` header lines (each ending in CRLF). */
export function get(target: string, extra = ""): string {
  return `GET ${target} HTTP/1.1\r\nHost: keep.test\r\n${extra}\r\n`;
}

/**
 * `clients` keep-alive clients against an HTTP server at `port` (the C and
 * the tokio example answer the same requests): each gets its first answer
 * before any goes on, so that all are open in the guest at once; then three
 * requests each, then two pipelined in one write, the second asking to
 * close. Asserts every status and body, and that each connection was closed.
 */
export async function concurrentKeepAliveClients(
  port: number,
  clients: number,
  hello: string,
): Promise<void> {
  let arrived = 0;
  let release!: () => void;
  const barrier = new Promise<void>((resolve) => release = resolve);
  const results = await Promise.all(Array.from({ length: clients }, async (_, i) => {
    const client = await RawClient.open(port);
    const seen: (Reply | null)[] = [];
    try {
      await client.send(get("/"));
      seen.push(await client.reply());
    } finally {
      if (++arrived === clients) release();
    }
    await barrier;
    for (let k = 0; k < 3; k++) {
      await client.send(get(`/echo?client=${i}&k=${k}`));
      seen.push(await client.reply());
    }
    await client.send(get(`/echo?${i}-a`) + get(`/echo?${i}-b`, "Connection: close\r\n"));
    seen.push(await client.reply(), await client.reply());
    const ended = await client.ended();
    client.close();
    return { i, seen, ended };
  }));
  for (const { i, seen, ended } of results) {
    assert.deepEqual(seen.map((r) => r?.status), [200, 200, 200, 200, 200, 200]);
    assert.deepEqual(seen.map((r) => r?.body), [
      hello,
      `client=${i}&k=0`,
      `client=${i}&k=1`,
      `client=${i}&k=2`,
      `${i}-a`,
      `${i}-b`,
    ]);
    assert.match(seen[5]!.head, /\r\nConnection: close/);
    assert.ok(ended, `client ${i}: the server kept the connection after Connection: close`);
  }
}

/** Two clients that leave mid-request: in the request line, then in a body. */
export async function leaveMidRequest(port: number): Promise<void> {
  const half = await RawClient.open(port);
  await half.send("GET /echo?half HTTP/1.1\r\nHost: ke");
  half.close();
  const body = await RawClient.open(port);
  await body.send("POST /upload HTTP/1.1\r\nContent-Length: 1000\r\n\r\n" + "x".repeat(10));
  body.close();
}

/**
 * Sends each request of `cases` on a connection of its own and asserts its
 * error status, `Connection: close`, and that the server then closes.
 */
export async function refusedRequests(
  port: number,
  cases: [string | Uint8Array, number][],
): Promise<void> {
  for (const [data, status] of cases) {
    const client = await RawClient.open(port);
    await client.send(data);
    const reply = await client.reply();
    assert.equal(reply?.status, status, `after ${JSON.stringify(String(data).slice(0, 30))}`);
    assert.match(reply!.head, /\r\nConnection: close/);
    assert.ok(await client.ended());
    client.close();
  }
}

/** Requests both example HTTP servers refuse, with their statuses (the 431 case is each one's own). */
export const REFUSED_REQUESTS: [string, number][] = [
  ["\x00\x01\x02 not http at all\r\n\r\n", 400],
  ["GET / HTTP/2.0\r\n\r\n", 505],
  ["GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400],
  ["GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501],
  ["GET / HTTP/1.1\r\nContent-Length: 99999\r\n\r\n", 413],
];
