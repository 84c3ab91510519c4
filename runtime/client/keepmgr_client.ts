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
import https from "node:https";
import http from "node:http";
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

  #request(
    method: string,
    target: URL,
    { payload, credential }: { payload?: Uint8Array; credential?: string },
  ): Promise<{ status: number; body: Uint8Array }> {
    const secure = target.protocol === "https:";
    const headers: Record<string, string> = { accept: CBOR_MEDIA_TYPE };
    if (credential !== undefined) headers["authorization"] = `Bearer ${credential}`;
    if (payload !== undefined) {
      headers["content-type"] = CBOR_MEDIA_TYPE;
      headers["content-length"] = String(payload.length);
    }
    const options = {
      method,
      host: target.hostname.replace(/^\[|\]$/g, ""),
      port: target.port === "" ? (secure ? 443 : 80) : Number(target.port),
      path: target.pathname + target.search,
      headers,
      timeout: this.#timeoutMs,
      ...(secure
        ? (this.#ca === undefined
          ? { rejectUnauthorized: false }
          : { rejectUnauthorized: true, ca: this.#ca })
        : {}),
    };
    return new Promise((resolve, reject) => {
      const onResponse = (res: http.IncomingMessage) => {
        const chunks: Uint8Array[] = [];
        let size = 0;
        res.on("data", (chunk: Uint8Array) => {
          size += chunk.length;
          if (size > MAX_KEEPMGR_REPLY) {
            req.destroy();
            reject(
              new EnarxError(
                "keepmgr-protocol",
                `The keepmgr's reply is over ${MAX_KEEPMGR_REPLY} bytes; is it an enarx keepmgr?`,
                { exit: "protocol" },
              ),
            );
            return;
          }
          chunks.push(new Uint8Array(chunk));
        });
        res.on("end", () => {
          resolve({ status: res.statusCode ?? 0, body: concatBytes(...chunks) });
        });
        res.on("error", reject);
      };
      const req = secure ? https.request(options, onResponse) : http.request(options, onResponse);
      req.on("timeout", () => {
        req.destroy(new Error(`no reply within ${this.#timeoutMs} ms`));
      });
      req.on("error", reject);
      req.end(payload);
    });
  }
}
