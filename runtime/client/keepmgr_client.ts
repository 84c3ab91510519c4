/**
 * The client's side of the client↔keepmgr hop (spec/protocol.md): CBOR over
 * HTTPS to `/v1/...`. The keepmgr is untrusted (DESIGN.md): nothing secret
 * crosses this channel unsealed, so by default its TLS certificate is not
 * authenticated (the connection is still encrypted). With `caCerts` the
 * client verifies it against those roots, which protects the keep id and
 * evidence from a network attacker's denial of service, not the workload,
 * which the attested keep's own TLS protects.
 *
 * Creating and listing keeps needs the operator's bearer token (`token`);
 * a created keep's capability, returned by keepmgr, is kept here and sent
 * for that keep's key delivery, show and delete (spec/protocol.md,
 * "Authorization").
 *
 * @module
 */
import { decodeCbor, encodeCbor } from "../protocol/cbor.ts";
import {
  CBOR_MEDIA_TYPE,
  type CreateKeepQueued,
  type CreateKeepResponse,
  type DeliverKeyResponse,
  type InfoResponse,
  type KeepLogsResponse,
  type ListKeepsResponse,
  parseCreateKeepQueued,
  parseCreateKeepResponse,
  parseDeliverKeyResponse,
  parseErrorResponse,
  parseInfoResponse,
  parseKeepLogsResponse,
  parseListKeepsResponse,
  parseShowKeepResponse,
  type ShowKeepResponse,
} from "../protocol/messages.ts";
import { EnarxError } from "../errors.ts";
import { concatBytes } from "../bytes.ts";
import { http1Request } from "./http1_client.ts";
import { keepmgrCertCacheDir, readKeepmgrCert, recordKeepmgrCert } from "./keepmgr_cert_cache.ts";

/** Largest keepmgr reply accepted: 16 MiB (evidence with certificates is a few KiB). */
export const MAX_KEEPMGR_REPLY = 16 * 1024 * 1024;

/** Options of {@link KeepmgrClient}. */
export interface KeepmgrClientOptions {
  /** PEM roots that the keepmgr's certificate must chain to; none: not authenticated. */
  caCerts?: string[];
  /** Time allowed for one request, in milliseconds (default 30 s). */
  timeoutMs?: number;
  /** The keepmgr operator's bearer token (needed to create and list keeps). */
  token?: string;
  /**
   * Where the keepmgr certificates seen are cached (keepmgr_cert_cache.ts):
   * default `keepmgr-certs` in the user's cache; `false`: none, every
   * connection through Node's TLS.
   */
  certCache?: string | false;
}

/** What a 401 from keepmgr tells the user to do. */
export const TOKEN_REMEDY = "pass the keepmgr's token file with --keepmgr-token FILE " +
  "(or $ENARX_KEEPMGR_TOKEN_FILE); keepmgr keeps it in <its state dir>/token, " +
  "e.g. /var/lib/enarx-keepmgr/token";

/** A keepmgr's error reply, with its stable code. */
export class KeepmgrError extends EnarxError {
  /** The HTTP status of the reply. */
  readonly httpStatus: number;
  /** Makes an error carrying the keepmgr's code and message. */
  constructor(httpStatus: number, code: string, message: string) {
    super(code, message, {
      exit: httpStatus === 401
        ? "permission"
        : httpStatus >= 500 || httpStatus === 429
        ? "unavailable"
        : "protocol",
    });
    this.name = "KeepmgrError";
    this.httpStatus = httpStatus;
  }
}

/** Talks CBOR to one keepmgr. */
export class KeepmgrClient {
  /** The keepmgr's base URL. */
  readonly url: URL;
  readonly #ca?: string[];
  readonly #timeoutMs: number;
  readonly #token?: string;
  readonly #certCache?: string;
  readonly #capabilities = new Map<string, string>();

  /** Makes a client for `url` (https:, or http: for a loopback keepmgr in tests). */
  constructor(url: string, options: KeepmgrClientOptions = {}) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new EnarxError(
        "keepmgr-url-invalid",
        `The keepmgr URL "${url}" is not a URL; use https://HOST:PORT`,
        { exit: "usage" },
      );
    }
    if (parsed.protocol !== "https:" && parsed.protocol !== "http:") {
      throw new EnarxError(
        "keepmgr-url-invalid",
        `The keepmgr URL "${url}" is not https; use https://HOST:PORT`,
        { exit: "usage" },
      );
    }
    this.url = parsed;
    this.#ca = options.caCerts;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#token = options.token;
    this.#certCache = options.certCache === false
      ? undefined
      : options.certCache ?? keepmgrCertCacheDir();
  }

  /** The credential for keep `id`: its capability when this client created it, else the token. */
  #credential(keepId: string): string | undefined {
    return this.#capabilities.get(keepId) ?? this.#token;
  }

  /** GET /v1/info. */
  async info(): Promise<InfoResponse> {
    return parseInfoResponse(await this.#call("GET", "/v1/info"));
  }

  /**
   * POST /v1/keeps: create a keep for `backend` with the client's nonce.
   * While keepmgr queues the create (202), polls with its ticket and tells
   * `onQueued` how many creates are ahead; each poll is one request under
   * the request timeout, so waiting in the queue never times out here.
   */
  async createKeep(
    backend: string,
    nonce: Uint8Array,
    options: { onQueued?: (queued: CreateKeepQueued) => void } = {},
  ): Promise<CreateKeepResponse> {
    const body: Record<string, unknown> = { v: 1, backend, nonce };
    let reply = await this.#callStatus("POST", "/v1/keeps", body, this.#token);
    while (reply.status === 202) {
      const queued = parseCreateKeepQueued(reply.value);
      options.onQueued?.(queued);
      body.ticket = queued.ticket;
      reply = await this.#callStatus("POST", "/v1/keeps", body, this.#token);
    }
    const created = parseCreateKeepResponse(reply.value);
    this.#capabilities.set(created.keep, created.capability.toHex());
    return created;
  }

  /** POST /v1/keeps/{id}/key: deliver the sealed key; returns where to connect. */
  async deliverKey(
    keepId: string,
    sealed: { enc: Uint8Array; ct: Uint8Array },
  ): Promise<DeliverKeyResponse> {
    const reply = await this.#call(
      "POST",
      `/v1/keeps/${encodeURIComponent(keepId)}/key`,
      { v: 1, enc: sealed.enc, ct: sealed.ct },
      this.#credential(keepId),
    );
    return parseDeliverKeyResponse(reply) as DeliverKeyResponse;
  }

  /** GET /v1/keeps. */
  async listKeeps(): Promise<ListKeepsResponse> {
    return parseListKeepsResponse(await this.#call("GET", "/v1/keeps", undefined, this.#token));
  }

  /** GET /v1/keeps/{id}. */
  async showKeep(keepId: string): Promise<ShowKeepResponse> {
    return parseShowKeepResponse(
      await this.#call(
        "GET",
        `/v1/keeps/${encodeURIComponent(keepId)}`,
        undefined,
        this.#credential(keepId),
      ),
    );
  }

  /** GET /v1/keeps/{id}/logs: a detached workload's output from offset `from` on. */
  async keepLogs(keepId: string, from = 0): Promise<KeepLogsResponse> {
    return parseKeepLogsResponse(
      await this.#call(
        "GET",
        `/v1/keeps/${encodeURIComponent(keepId)}/logs?from=${from}`,
        undefined,
        this.#credential(keepId),
      ),
    );
  }

  /** DELETE /v1/keeps/{id}: stop the keep and free what it holds; returns its last summary. */
  async deleteKeep(keepId: string): Promise<ShowKeepResponse> {
    const path = `/v1/keeps/${encodeURIComponent(keepId)}`;
    const reply = await this.#call("DELETE", path, undefined, this.#credential(keepId));
    this.#capabilities.delete(keepId);
    return parseShowKeepResponse(reply);
  }

  async #call(
    method: string,
    path: string,
    body?: unknown,
    credential?: string,
  ): Promise<unknown> {
    return (await this.#callStatus(method, path, body, credential)).value;
  }

  async #callStatus(
    method: string,
    path: string,
    body?: unknown,
    credential?: string,
  ): Promise<{ status: number; value: unknown }> {
    const payload = body === undefined ? undefined : encodeCbor(body);
    const target = new URL(path, this.url);
    let reply: { status: number; body: Uint8Array };
    try {
      reply = await this.#request(method, target, { payload, credential });
    } catch (cause) {
      if (cause instanceof EnarxError) throw cause;
      const text = cause instanceof Error ? cause.message : String(cause);
      throw new EnarxError(
        "keepmgr-unreachable",
        `Cannot reach the keepmgr at "${this.url.origin}" (${method} ${path}): ${text}; check --keepmgr and that the keepmgr runs`,
        { exit: "unavailable", cause },
      );
    }
    let value: unknown;
    try {
      value = reply.body.length === 0 && reply.status < 300
        ? {}
        : decodeCbor(reply.body, { what: `keepmgr reply to ${method} ${path}` });
    } catch (cause) {
      throw new EnarxError(
        "keepmgr-protocol",
        `The keepmgr's reply to ${method} ${path} (HTTP ${reply.status}) is not CBOR; is "${this.url.origin}" an enarx keepmgr?`,
        { exit: "protocol", cause },
      );
    }
    if (reply.status >= 200 && reply.status < 300) return { status: reply.status, value };
    let code = "keepmgr-error";
    let message = `The keepmgr answered ${method} ${path} with HTTP ${reply.status}`;
    try {
      const error = parseErrorResponse(value);
      code = error.error.code;
      message = `The keepmgr refused ${method} ${path}: ${error.error.message} (${code})`;
    } catch { /* keep the generic message */ }
    if (reply.status === 401) message += `; ${TOKEN_REMEDY}`;
    throw new KeepmgrError(reply.status, code, message);
  }

  /**
   * One request. http: and a keepmgr whose certificate this user's cache
   * holds go through Deno's own TCP and TLS (keepmgr_cert_cache.ts); a
   * certificate that no longer verifies, a first contact, and `--keepmgr-ca`
   * go through Node's TLS layer, loaded only then.
   */
  async #request(
    method: string,
    target: URL,
    { payload, credential }: { payload?: Uint8Array; credential?: string },
  ): Promise<{ status: number; body: Uint8Array }> {
    const headers: Record<string, string> = { accept: CBOR_MEDIA_TYPE };
    if (credential !== undefined) headers["authorization"] = `Bearer ${credential}`;
    if (payload !== undefined) headers["content-type"] = CBOR_MEDIA_TYPE;
    const request = { method, target, headers, payload };
    if (target.protocol === "http:") return await this.#requestDeno(request);
    if (this.#ca !== undefined) return await this.#requestNode(request, { ca: this.#ca });
    const cache = this.#certCache;
    const seen = cache === undefined ? undefined : readKeepmgrCert(cache, this.url.origin);
    if (seen !== undefined) {
      try {
        return await this.#requestDeno(request, seen);
      } catch (error) {
        if (!(error instanceof CertificateNotVerified)) throw error;
      }
    }
    return await this.#requestNode(request, { record: cache });
  }

  /** `request` over Deno.connect, or Deno.startTls with `seenCert` as the added root. */
  async #requestDeno(request: KeepmgrRequest, seenCert?: string) {
    const { method, target, headers, payload } = request;
    const hostname = target.hostname.replace(/^\[|\]$/g, "");
    const port = target.port === "" ? (seenCert ? 443 : 80) : Number(target.port);
    // AbortSignal.timeout rather than setTimeout: Deno's global setTimeout
    // loads node:timers (~5 ms of CPU), which nothing else here needs.
    const deadline = AbortSignal.timeout(this.#timeoutMs);
    let conn: Deno.Conn | undefined;
    const onTimeout = () => {
      try {
        conn?.close();
      } catch { /* closed */ }
    };
    deadline.addEventListener("abort", onTimeout, { once: true });
    try {
      const tcp = await Deno.connect({ hostname, port });
      conn = tcp;
      tcp.setNoDelay(true);
      let stream: Deno.Conn = tcp;
      if (seenCert !== undefined) {
        // The name is not checked: the only root added is the certificate
        // itself, and the default path checks nothing (keepmgr_cert_cache.ts).
        const tls = await Deno.startTls(tcp, {
          hostname,
          caCerts: [seenCert],
          unsafelyDisableHostnameVerification: true,
        });
        conn = stream = tls;
        await handshakeWithCachedCert(tls);
      }
      const response = await http1Request(stream, {
        method,
        path: target.pathname + target.search,
        host: target.host,
        headers,
        body: payload,
      });
      return { status: response.status, body: await readLimited(response.chunks()) };
    } catch (error) {
      if (deadline.aborted) throw new Error(`no reply within ${this.#timeoutMs} ms`);
      throw keepmgrTransportError(error);
    } finally {
      deadline.removeEventListener("abort", onTimeout);
    }
  }

  /**
   * `request` through node:https; with `ca`, verified against
   * those roots; else unverified, and with `record` (a cache directory) the
   * certificate seen is kept there for the next connection
   * (keepmgr_cert_cache.ts).
   */
  async #requestNode(
    request: KeepmgrRequest,
    { ca, record }: { ca?: string[]; record?: string },
  ): Promise<{ status: number; body: Uint8Array }> {
    const { method, target, headers, payload } = request;
    const https = (await import("node:https")).default;
    const options = {
      method,
      host: target.hostname.replace(/^\[|\]$/g, ""),
      port: target.port === "" ? 443 : Number(target.port),
      path: target.pathname + target.search,
      headers: payload === undefined
        ? headers
        : { ...headers, "content-length": String(payload.length) },
      ...(ca === undefined ? { rejectUnauthorized: false } : { rejectUnauthorized: true, ca }),
    };
    let seen: Uint8Array | undefined;
    // A deadline for the whole request. Not Node's `timeout` option: that is
    // the socket's idle time, and Deno's node:https starts it again once
    // connected, so a server that accepts and never answers held the
    // request twice as long (60 s for 30).
    let deadline: ReturnType<typeof setTimeout> | undefined;
    const reply = await new Promise<{ status: number; body: Uint8Array }>((resolve, reject) => {
      const req = https.request(options, (res) => {
        if (record !== undefined) seen = peerCertificate(res.socket);
        const chunks: Uint8Array[] = [];
        let size = 0;
        res.on("data", (chunk: Uint8Array) => {
          size += chunk.length;
          if (size > MAX_KEEPMGR_REPLY) {
            req.destroy();
            reject(replyTooLarge());
            return;
          }
          chunks.push(new Uint8Array(chunk));
        });
        res.on("end", () => {
          resolve({ status: res.statusCode ?? 0, body: concatBytes(...chunks) });
        });
        res.on("error", reject);
      });
      deadline = setTimeout(
        () => req.destroy(new Error(`no reply within ${this.#timeoutMs} ms`)),
        this.#timeoutMs,
      );
      req.on("error", reject);
      req.end(payload);
    }).finally(() => clearTimeout(deadline));
    if (record !== undefined && seen !== undefined) {
      await recordKeepmgrCert(record, this.url.origin, seen);
    }
    return reply;
  }
}

/** A request to keepmgr as #request takes it. */
interface KeepmgrRequest {
  method: string;
  target: URL;
  headers: Record<string, string>;
  payload?: Uint8Array;
}

/** The cached certificate did not verify (or the handshake failed): take Node's path. */
class CertificateNotVerified extends Error {
  constructor(cause: unknown) {
    super("the keepmgr's certificate is not the one cached", { cause });
  }
}

/** Completes the TLS handshake; a failed one is {@link CertificateNotVerified}. */
async function handshakeWithCachedCert(tls: Deno.TlsConn): Promise<void> {
  try {
    await tls.handshake();
  } catch (cause) {
    try {
      tls.close();
    } catch { /* closed */ }
    throw new CertificateNotVerified(cause);
  }
}

/** The DER of the certificate a node:tls socket's peer presented, if any. */
function peerCertificate(socket: unknown): Uint8Array | undefined {
  const s = socket as { getPeerCertificate?: (detailed: boolean) => { raw?: Uint8Array } };
  const raw = s.getPeerCertificate?.(true)?.raw;
  return raw instanceof Uint8Array && raw.length > 0 ? new Uint8Array(raw) : undefined;
}

function replyTooLarge(): EnarxError {
  return new EnarxError(
    "keepmgr-protocol",
    `The keepmgr's reply is over ${MAX_KEEPMGR_REPLY} bytes; is it an enarx keepmgr?`,
    { exit: "protocol" },
  );
}

/** Reads a reply body whole, refusing one over {@link MAX_KEEPMGR_REPLY}. */
async function readLimited(body: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > MAX_KEEPMGR_REPLY) throw replyTooLarge();
    chunks.push(chunk);
  }
  return concatBytes(...chunks);
}

/**
 * http1_client's errors speak of a keep; on this hop they are the keepmgr's
 * (a malformed reply) or the connection's (left for #callStatus to word).
 */
function keepmgrTransportError(error: unknown): unknown {
  if (!(error instanceof EnarxError)) return error;
  if (error.code === "http-protocol") {
    return new EnarxError(
      "keepmgr-protocol",
      `${error.message.replace(/; the peer is not an enarx keep$/, "")}; is it an enarx keepmgr?`,
      { exit: "protocol", cause: error },
    );
  }
  if (error.code === "keep-connection-lost") return new Error(error.message, { cause: error });
  return error;
}
