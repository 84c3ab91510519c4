/**
 * Reading one HTTP/1.1 request from a connection, strictly and within limits
 * (runtime/keepmgr/api/limits.ts): the head up to its blank line (size and
 * header count bounded), then a body of exactly Content-Length bytes. What
 * request smuggling needs is refused: Transfer-Encoding (411), a malformed or
 * repeated Content-Length, folded or malformed header lines, other versions.
 * keepmgr answers one request per connection, so no second request is read.
 *
 * @module
 */
import type { ServerLimits } from "./limits.ts";

/** A request refused before it reached the API: status, stable code, message. */
export class HttpRefusal extends Error {
  /** The HTTP status to answer. */
  readonly status: number;
  /** The stable error code. */
  readonly code: string;
  /** Makes a refusal. */
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = "HttpRefusal";
    this.status = status;
    this.code = code;
  }
}

/** The connection a request is read from (a Deno.Conn, or api/socket_conn.ts). */
export interface ByteConn {
  /** Reads into `buffer`; the count, or null at the end. */
  read(buffer: Uint8Array): Promise<number | null>;
}

/** A parsed request head and the bytes read past it. */
export interface RequestHead {
  /** The method, upper case. */
  method: string;
  /** The request target (origin form, starting with `/`). */
  target: string;
  /** The header fields. */
  headers: Headers;
  /** The body length (Content-Length, 0 when absent). */
  length: number;
  /** Bytes read after the head (the start of the body). */
  rest: Uint8Array;
}

const CRLFCRLF = [13, 10, 13, 10];
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const REQUEST_LINE = /^([A-Z]{1,20}) (\/[\x21-\x7e]*) HTTP\/1\.([01])$/;
const HOST = /^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** Reads and parses the head of one request; throws HttpRefusal, or the read's error. */
export async function readRequestHead(conn: ByteConn, limits: ServerLimits): Promise<RequestHead> {
  const buffer = new Uint8Array(limits.maxHeadBytes + 4);
  let length = 0;
  let end = -1;
  while (end < 0) {
    if (length >= buffer.length) {
      throw new HttpRefusal(
        431,
        "headers-too-large",
        `The request head is over ${limits.maxHeadBytes} bytes; send shorter headers`,
      );
    }
    const n = await conn.read(buffer.subarray(length));
    if (n === null) throw new HttpRefusal(400, "request-malformed", "The request head ended early");
    const from = Math.max(0, length - 3);
    length += n;
    end = findHeadEnd(buffer.subarray(0, length), from);
  }
  const text = new TextDecoder("latin1").decode(buffer.subarray(0, end));
  const head = parseHead(text, limits);
  return { ...head, rest: buffer.slice(end + 4, length) };
}

function findHeadEnd(bytes: Uint8Array, from: number): number {
  outer: for (let i = from; i + 4 <= bytes.length; i++) {
    for (let j = 0; j < 4; j++) if (bytes[i + j] !== CRLFCRLF[j]) continue outer;
    return i;
  }
  return -1;
}

function parseHead(text: string, limits: ServerLimits): Omit<RequestHead, "rest"> {
  const [line, ...fields] = text.split("\r\n");
  const request = REQUEST_LINE.exec(line);
  if (request === null) {
    throw /^\S+ \S+ HTTP\/\d/.test(line) && !/ HTTP\/1\.[01]$/.test(line)
      ? new HttpRefusal(505, "http-version", "Only HTTP/1.1 is served here")
      : new HttpRefusal(400, "request-malformed", "The request line is not METHOD /PATH HTTP/1.1");
  }
  if (fields.length > limits.maxHeaders) {
    throw new HttpRefusal(
      431,
      "headers-too-many",
      `The request has ${fields.length} header fields, over the limit of ${limits.maxHeaders}`,
    );
  }
  const headers = new Headers();
  for (const field of fields) {
    const colon = field.indexOf(":");
    const name = colon > 0 ? field.slice(0, colon) : "";
    const value = field.slice(colon + 1).trim();
    if (!TOKEN.test(name) || /[\0\r\n]/.test(value)) {
      throw new HttpRefusal(400, "request-malformed", "A header line is malformed or folded");
    }
    if (headers.has(name) && /^(content-length|host|authorization)$/i.test(name)) {
      throw new HttpRefusal(400, "request-malformed", `The header "${name}" is repeated`);
    }
    headers.append(name, value);
  }
  return { method: request[1], target: request[2], headers, length: bodyLength(headers, limits) };
}

function bodyLength(headers: Headers, limits: ServerLimits): number {
  if (headers.has("transfer-encoding")) {
    throw new HttpRefusal(
      411,
      "length-required",
      "Transfer-Encoding is not accepted here; send the body with Content-Length",
    );
  }
  const host = headers.get("host");
  if (host !== null && !HOST.test(host)) {
    throw new HttpRefusal(400, "request-malformed", "The Host header is not HOST[:PORT]");
  }
  const declared = headers.get("content-length");
  if (declared === null) return 0;
  if (!/^\d{1,12}$/.test(declared)) {
    throw new HttpRefusal(400, "request-malformed", "Content-Length is not a number");
  }
  const length = Number(declared);
  if (length > limits.maxBodyBytes) {
    throw new HttpRefusal(
      413,
      "cbor-too-large",
      `The request body is ${length} bytes, over the limit of ${limits.maxBodyBytes} bytes`,
    );
  }
  return length;
}

/** Reads the rest of a body of `head.length` bytes. */
export async function readRequestBody(conn: ByteConn, head: RequestHead): Promise<Uint8Array> {
  const body = new Uint8Array(head.length);
  let at = Math.min(head.rest.length, head.length);
  body.set(head.rest.subarray(0, at));
  while (at < body.length) {
    const n = await conn.read(body.subarray(at));
    if (n === null) throw new HttpRefusal(400, "request-malformed", "The request body ended early");
    at += n;
  }
  return body;
}

/** The Request object the API handler takes, for a head and its body. */
export function toRequest(head: RequestHead, body: Uint8Array, local: Deno.NetAddr): Request {
  const fallback = local.hostname.includes(":") ? `[${local.hostname}]` : local.hostname;
  const host = head.headers.get("host") ?? `${fallback}:${local.port}`;
  if (body.length > 0 && (head.method === "GET" || head.method === "HEAD")) {
    throw new HttpRefusal(400, "body-unexpected", `${head.method} takes no body; send none`);
  }
  try {
    return new Request(`https://${host}${head.target}`, {
      method: head.method,
      headers: head.headers,
      body: body.length > 0 ? body as Uint8Array<ArrayBuffer> : undefined,
    });
  } catch {
    throw new HttpRefusal(400, "request-malformed", "The request cannot be served");
  }
}
