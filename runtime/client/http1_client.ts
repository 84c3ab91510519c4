/**
 * A small HTTP/1.1 client over an already connected stream (the pinned TLS
 * connection to a keep, deploy step 9). `fetch` cannot pin a certificate to
 * one key, so the client speaks HTTP itself: one request per connection
 * (`connection: close`), a content-length request body, and a response body
 * framed by content-length, chunked transfer coding, or the end of the
 * connection, delivered as a stream as it arrives.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import { concatBytes } from "../bytes.ts";

/** A byte stream the client reads and writes: Deno.TlsConn, Deno.TcpConn. */
export interface Http1Stream {
  /** Reads into `p`; null at the end of the stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p`, returning how many bytes were written. */
  write(p: Uint8Array): Promise<number>;
  /** Closes the stream. */
  close(): void;
}

/** A request to send. */
export interface Http1Request {
  /** Method, e.g. "POST". */
  method: string;
  /** Path and query, e.g. "/v1/workload". */
  path: string;
  /** The Host header's value. */
  host: string;
  /** Extra headers (lower-case names). */
  headers?: Record<string, string>;
  /** The request body, sent with content-length; a streamed one is sent as it is produced. */
  body?: Uint8Array | Http1StreamedBody;
}

/** A request body of known length, produced piece by piece. */
export interface Http1StreamedBody {
  /** Its length in bytes (the content-length); the chunks must add up to it. */
  length: number;
  /** Its bytes, in order; opened when iterated. */
  chunks(): AsyncIterable<Uint8Array>;
}

/** A response whose body streams from the connection. */
export interface Http1Response {
  /** The status code. */
  status: number;
  /** The reason phrase. */
  statusText: string;
  /** Headers with lower-case names (repeated headers joined with ", "). */
  headers: Map<string, string>;
  /**
   * The decoded body as a stream, made when first read (Deno loads its web
   * streams then, ~4 ms of CPU); reading it to the end or cancelling it
   * closes the connection. Read either this or {@link chunks}, not both.
   */
  readonly body: ReadableStream<Uint8Array>;
  /**
   * The decoded body's chunks as they arrive, without a ReadableStream; the
   * connection closes when they end, fail, or the reader stops early.
   */
  chunks(): AsyncIterable<Uint8Array>;
}

/** Longest status line plus headers accepted, in bytes. */
export const MAX_HEADER_BYTES = 64 * 1024;

/** Buffered reading from an {@link Http1Stream}. */
class Reader {
  #stream: Http1Stream;
  #buf = new Uint8Array(0);
  #eof = false;

  constructor(stream: Http1Stream) {
    this.#stream = stream;
  }

  /** Reads more from the stream; false at its end. */
  async #fill(): Promise<boolean> {
    if (this.#eof) return false;
    const chunk = new Uint8Array(64 * 1024);
    const n = await this.#stream.read(chunk);
    if (n === null) {
      this.#eof = true;
      return false;
    }
    this.#buf = concatBytes(this.#buf, chunk.subarray(0, n));
    return true;
  }

  /** Reads one CRLF-terminated line (without the CRLF). */
  async line(limit: number): Promise<string> {
    while (true) {
      const i = this.#buf.indexOf(0x0a);
      if (i >= 0) {
        const end = i > 0 && this.#buf[i - 1] === 0x0d ? i - 1 : i;
        const text = new TextDecoder().decode(this.#buf.subarray(0, end));
        this.#buf = this.#buf.subarray(i + 1);
        return text;
      }
      if (this.#buf.length > limit) throw protocolError("a header line is too long");
      if (!await this.#fill()) throw protocolError("the connection closed in the headers");
    }
  }

  /** Returns up to `max` bytes that are available (reading if none), or null at the end. */
  async some(max: number): Promise<Uint8Array | null> {
    if (this.#buf.length === 0 && !await this.#fill()) return null;
    const n = Math.min(max, this.#buf.length);
    const out = this.#buf.slice(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }
}

function protocolError(what: string): EnarxError {
  return new EnarxError(
    "http-protocol",
    `Malformed HTTP response: ${what}; the peer is not an enarx keep`,
    {
      exit: "protocol",
    },
  );
}

async function writeAll(stream: Http1Stream, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await stream.write(bytes.subarray(offset));
}

/** The status line and headers of a response. */
interface ResponseHead {
  status: number;
  statusText: string;
  headers: Map<string, string>;
}

/** Reads one status line and its headers (a 1xx response included). */
async function readOneHead(reader: Reader): Promise<ResponseHead> {
  const headers = new Map<string, string>();
  const statusLine = await reader.line(MAX_HEADER_BYTES);
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(statusLine);
  if (m === null) throw protocolError(`bad status line "${statusLine.slice(0, 80)}"`);
  let total = statusLine.length;
  while (true) {
    const line = await reader.line(MAX_HEADER_BYTES);
    if (line === "") break;
    total += line.length;
    if (total > MAX_HEADER_BYTES) throw protocolError("the headers are too long");
    const colon = line.indexOf(":");
    if (colon <= 0) throw protocolError(`bad header line "${line.slice(0, 80)}"`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
  }
  return { status: Number(m[1]), statusText: m[2] ?? "", headers };
}

/** Reads the final status line and headers, skipping 1xx responses (e.g. 100 Continue). */
async function readHead(reader: Reader, first?: ResponseHead): Promise<ResponseHead> {
  let head = first ?? await readOneHead(reader);
  while (head.status >= 100 && head.status < 200) head = await readOneHead(reader);
  return head;
}

/**
 * Streamed bodies ask the peer first (`expect: 100-continue`); a peer that
 * does not answer within this many milliseconds gets the body anyway.
 */
const CONTINUE_WAIT_MS = 2_000;

/** `promise`, or undefined when it has not settled within `ms`. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const waited = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([promise, waited]);
  } finally {
    clearTimeout(timer);
  }
}

/** Writes the body; stops early once `answered()` (the peer replied before reading it all). */
/** Bodies up to this size are sent with the request head. */
const SMALL_BODY = 64 * 1024;

/** A streamed body's bytes in one array (for a small body). */
async function collect(body: Http1StreamedBody): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body.chunks()) chunks.push(chunk);
  const bytes = concatBytes(...chunks);
  if (bytes.length !== body.length) {
    throw new EnarxError(
      "http-body-length",
      `Sent ${bytes.length} bytes of a ${body.length}-byte body`,
      { exit: "internal" },
    );
  }
  return bytes;
}

async function sendBody(
  stream: Http1Stream,
  body: Uint8Array | Http1StreamedBody,
  answered: () => boolean,
): Promise<void> {
  if (body instanceof Uint8Array) {
    if (body.length > 0) await writeAll(stream, body);
    return;
  }
  let sent = 0;
  for await (const chunk of body.chunks()) {
    if (answered()) return;
    await writeAll(stream, chunk);
    sent += chunk.length;
  }
  if (sent !== body.length) {
    throw new EnarxError("http-body-length", `Sent ${sent} bytes of a ${body.length}-byte body`, {
      exit: "internal",
    });
  }
}

/**
 * Sends `request` on `stream` and returns the response once its headers have
 * arrived. The body streams; the stream is closed when the body ends, is
 * cancelled, or fails. A peer that answers before it has read the whole
 * request body (413: too large) gets no more of it, and its answer is
 * returned; a connection that breaks while sending, with no answer, is
 * EnarxError `keep-connection-lost`.
 */
export async function http1Request(
  stream: Http1Stream,
  request: Http1Request,
): Promise<Http1Response> {
  let body = request.body ?? new Uint8Array(0);
  // A small body goes with the head, in one write and without waiting for
  // 100 Continue: a round trip less, and no small write for Nagle's
  // algorithm to hold back behind the peer's delayed ACK.
  if (!(body instanceof Uint8Array) && body.length <= SMALL_BODY) body = await collect(body);
  const small = body instanceof Uint8Array && body.length <= SMALL_BODY;
  const lines = [
    `${request.method} ${request.path} HTTP/1.1`,
    `host: ${request.host}`,
    `content-length: ${body.length}`,
    `connection: close`,
  ];
  const streamed = !(body instanceof Uint8Array);
  if (streamed) lines.push("expect: 100-continue");
  for (const [name, value] of Object.entries(request.headers ?? {})) {
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) {
      throw new EnarxError("http-header-invalid", `The header "${name}" contains a line break`, {
        exit: "internal",
      });
    }
    lines.push(`${name}: ${value}`);
  }
  const head = new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n");
  const reader = new Reader(stream);
  let responseHead: ResponseHead;
  try {
    await writeAll(stream, small ? concatBytes(head, body as Uint8Array) : head);
    if (small) body = new Uint8Array(0);
    // A streamed body may be large: the peer may refuse it (413) before it is
    // sent; a peer that closes on unread bytes would otherwise reset the
    // connection, and its answer with it.
    const firstHead = streamed ? readOneHead(reader) : readHead(reader);
    firstHead.catch(() => {});
    const early = streamed ? await within(firstHead, CONTINUE_WAIT_MS) : undefined;
    if (early !== undefined && (early.status < 100 || early.status >= 200)) {
      responseHead = early;
    } else {
      const reading = streamed ? firstHead.then((h) => readHead(reader, h)) : firstHead;
      responseHead = await sendAndRead(stream, body, reading);
    }
  } catch (error) {
    stream.close();
    throw error;
  }
  const { status, statusText, headers } = responseHead;
  const te = headers.get("transfer-encoding")?.toLowerCase();
  const cl = headers.get("content-length");
  let source: AsyncGenerator<Uint8Array>;
  if (te !== undefined && te !== "identity") {
    if (te !== "chunked") throw protocolError(`unsupported transfer-encoding "${te}"`);
    source = chunkedBody(reader);
  } else if (cl !== undefined) {
    if (!/^\d+$/.test(cl)) throw protocolError(`bad content-length "${cl}"`);
    source = lengthBody(reader, Number(cl));
  } else if (status === 204 || status === 304 || request.method === "HEAD") {
    source = lengthBody(reader, 0);
  } else {
    source = untilCloseBody(reader);
  }
  const chunks = bodyChunks(source, stream);
  let readable: ReadableStream<Uint8Array> | undefined;
  return {
    status,
    statusText,
    headers,
    get body() {
      readable ??= toStream(chunks, stream);
      return readable;
    },
    chunks: () => chunks,
  };
}

/**
 * Sends the body while reading the answer: a peer may answer (and close)
 * before it has read the whole body; then no more is sent and its answer
 * counts, even when sending failed.
 */
async function sendAndRead(
  stream: Http1Stream,
  body: Uint8Array | Http1StreamedBody,
  reading: Promise<ResponseHead>,
): Promise<ResponseHead> {
  let answered = false;
  reading.catch(() => {});
  const sent = sendBody(stream, body, () => answered);
  sent.catch(() => {});
  const first = await Promise.race([
    sent.then(() => undefined, (error) => ({ error })),
    reading.then(() => undefined, () => undefined),
  ]);
  answered = true;
  if (first === undefined) return await reading;
  return await reading.catch(() => {
    throw sendingFailed(first.error);
  });
}

function sendingFailed(error: unknown): EnarxError {
  if (error instanceof EnarxError) return error;
  return new EnarxError(
    "keep-connection-lost",
    `The connection to the keep broke while sending the request: ${
      error instanceof Error ? error.message : String(error)
    }`,
    { exit: "unavailable", cause: error },
  );
}

/**
 * The body's chunks; the connection is closed when they end, fail or are
 * abandoned, and a failure that is not already an EnarxError is
 * `keep-connection-lost`.
 */
async function* bodyChunks(
  source: AsyncGenerator<Uint8Array>,
  stream: Http1Stream,
): AsyncGenerator<Uint8Array> {
  try {
    yield* source;
  } catch (error) {
    throw error instanceof EnarxError ? error : new EnarxError(
      "keep-connection-lost",
      `The connection to the keep broke while reading its reply: ${
        error instanceof Error ? error.message : String(error)
      }`,
      { exit: "unavailable", cause: error },
    );
  } finally {
    try {
      stream.close();
    } catch { /* already closed */ }
  }
}

function toStream(
  chunks: AsyncGenerator<Uint8Array>,
  stream: Http1Stream,
): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = await chunks.next();
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      } catch (error) {
        controller.error(error);
      }
    },
    async cancel() {
      // A generator never started skips its finally: close here as well.
      try {
        stream.close();
      } catch { /* already closed */ }
      await chunks.return(undefined);
    },
  });
}

async function* lengthBody(reader: Reader, length: number): AsyncGenerator<Uint8Array> {
  let left = length;
  while (left > 0) {
    const chunk = await reader.some(left);
    if (chunk === null) throw protocolError(`the body ended ${left} bytes early`);
    left -= chunk.length;
    yield chunk;
  }
}

async function* untilCloseBody(reader: Reader): AsyncGenerator<Uint8Array> {
  while (true) {
    const chunk = await reader.some(64 * 1024);
    if (chunk === null) return;
    yield chunk;
  }
}

async function* chunkedBody(reader: Reader): AsyncGenerator<Uint8Array> {
  while (true) {
    const sizeLine = await reader.line(1024);
    const m = /^([0-9a-fA-F]{1,8})(?:;.*)?$/.exec(sizeLine.trim());
    if (m === null) throw protocolError(`bad chunk size "${sizeLine.slice(0, 40)}"`);
    const size = parseInt(m[1], 16);
    if (size === 0) {
      // Trailers, then the empty line.
      while ((await reader.line(MAX_HEADER_BYTES)) !== "") { /* skip trailer */ }
      return;
    }
    yield* lengthBody(reader, size);
    const crlf = await reader.line(2);
    if (crlf !== "") throw protocolError("a chunk is not followed by CRLF");
  }
}
