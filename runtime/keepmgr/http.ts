/**
 * keepmgr's HTTP API (spec/protocol.md, "client ↔ keepmgr"): routes
 * `/v1/...` requests to the {@link KeepManager}, decodes and validates CBOR
 * bodies under a size limit per endpoint, checks who may call each endpoint
 * (api/auth.ts: the operator's token, or a keep's capability), admits creates
 * through the rate gate (api/limits.ts), and answers every failure with a
 * CBOR error body `{v:1, error:{code, message}}` and a matching status.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import { CborError, decodeCbor, encodeCbor } from "../protocol/cbor.ts";
import { readLimitedBody } from "../protocol/http_body.ts";
import {
  CBOR_MEDIA_TYPE,
  errorResponse,
  MessageError,
  parseCreateKeepRequest,
  parseDeliverKeyRequest,
} from "../protocol/messages.ts";
import type { KeepManager } from "./keep_manager.ts";
import { KeepError } from "./keep_table.ts";
import type { KeepLog } from "./keep_supervisor.ts";
import { ENARX_VERSION } from "../version.ts";
import type { KeepmgrAuth } from "./api/auth.ts";
import { CreateGate, RetryLaterError } from "./api/limits.ts";
import { CreateQueue, type Ticket } from "./api/create_queue.ts";
import type { CreateKeepResponse } from "../protocol/messages.ts";

/** What a create yields before its capability is granted (the create queue's results). */
export type Created = Omit<CreateKeepResponse, "capability">;

/** How long a poll of a queued create is held before keepmgr answers 202 again, ms. */
export const QUEUE_HOLD_MS = 5_000;

/** How long a create that started at once is held before keepmgr answers 202, ms. */
export const CREATE_HOLD_MS = 20_000;

/** Body limit of POST /v1/keeps (a nonce and a backend name). */
export const CREATE_BODY_LIMIT = 4 * 1024;

/** Body limit of POST /v1/keeps/{id}/key (an HPKE-sealed key and token). */
export const KEY_BODY_LIMIT = 64 * 1024;

/** Options of {@link keepmgrHandler}. */
export interface KeepmgrHandlerOptions {
  /** Host name returned to clients in `connect.host` (default: the request's Host). */
  publicHost?: string;
  /** Structured log. */
  log?: KeepLog;
  /** Who may call what: the operator's token and the keeps' capabilities. */
  auth: KeepmgrAuth;
  /** Admits creates (default: {@link CreateGate}'s defaults). */
  gate?: CreateGate;
  /** Orders creates (default: {@link CreateQueue}'s defaults). */
  queue?: CreateQueue<Created>;
  /** How long a poll of a queued create is held (default {@link QUEUE_HOLD_MS}). */
  queueHoldMs?: number;
  /** The simulated SNP platform's root (`sha256:<hex>`), shown in GET /v1/info. */
  simulatorRoot?: string;
}

/** The client of one request, as the server saw it. */
export interface RequestInfo {
  /** The client's address. */
  remoteAddr: Deno.NetAddr;
}

/** What {@link route} needs besides the manager and the request. */
interface RouteContext extends KeepmgrHandlerOptions {
  gate: CreateGate;
  queue: CreateQueue<Created>;
  client: string;
}

/** Returns the handler of the keepmgr API over `manager` (for api/http1_server.ts). */
export function keepmgrHandler(
  manager: KeepManager,
  options: KeepmgrHandlerOptions,
): (request: Request, info?: RequestInfo) => Promise<Response> {
  const log = options.log ?? (() => {});
  const gate = options.gate ?? new CreateGate();
  const queue = options.queue ?? new CreateQueue<Created>();
  return async (request: Request, info?: RequestInfo) => {
    const url = new URL(request.url);
    const started = performance.now();
    const client = info?.remoteAddr.hostname ?? "unknown";
    let response: Response;
    try {
      response = await route(manager, request, url, { ...options, gate, queue, client });
    } catch (error) {
      response = errorToResponse(error);
      if (!(error instanceof EnarxError)) {
        log("error", "internal error", { error: String(error), path: url.pathname });
      }
    }
    log("info", "request", {
      method: request.method,
      path: url.pathname,
      status: response.status,
      ms: Math.round(performance.now() - started),
    });
    return response;
  };
}

async function route(
  manager: KeepManager,
  request: Request,
  url: URL,
  options: RouteContext,
): Promise<Response> {
  const parts = url.pathname.split("/").filter((p) => p !== "");
  if (parts[0] !== "v1") throw notFound(url.pathname);
  const method = request.method;
  if (parts.length === 2 && parts[1] === "info") {
    allow(method, ["GET"]);
    await expectNoBody(request);
    const sim = options.simulatorRoot ? { simulator_root: options.simulatorRoot } : {};
    return cbor(200, { v: 1, version: ENARX_VERSION, backends: manager.backends, ...sim });
  }
  if (parts[1] !== "keeps") throw notFound(url.pathname);
  const { auth } = options;
  if (parts.length === 2) {
    allow(method, ["GET", "POST"]);
    auth.requireOperator(request, method === "GET" ? "Listing keeps" : "Creating a keep");
    if (method === "GET") {
      await expectNoBody(request);
      return cbor(200, { v: 1, keeps: manager.list() });
    }
    const reply = await createKeep(manager, request, options);
    return cbor("ticket" in reply ? 202 : 201, reply);
  }
  let id: string;
  try {
    id = decodeURIComponent(parts[2]);
  } catch {
    throw notFound(url.pathname); // "%zz" is no keep id
  }
  if (parts.length === 3) {
    allow(method, ["GET", "DELETE"]);
    auth.requireKeep(request, id, method === "GET" ? "Showing a keep" : "Deleting a keep");
    await expectNoBody(request);
    const summary = method === "GET" ? manager.show(id) : await manager.delete(id);
    if (method === "DELETE") auth.revoke(id);
    if (summary.endpoints !== undefined && options.publicHost !== undefined) {
      for (const endpoint of summary.endpoints) endpoint.host = options.publicHost;
    }
    return cbor(200, { v: 1, ...summary });
  }
  if (parts.length === 4 && parts[3] === "logs") {
    allow(method, ["GET"]);
    auth.requireKeep(request, id, "Reading a keep's output");
    await expectNoBody(request);
    return cbor(200, manager.logs(id, logsOffset(url)));
  }
  if (parts.length === 4 && parts[3] === "key") {
    allow(method, ["POST"]);
    auth.requireKeep(request, id, "Delivering a keep's key");
    manager.show(id); // 404 before reading a body for an unknown keep
    const body = parseDeliverKeyRequest(await readCbor(request, KEY_BODY_LIMIT));
    const connectHost = options.publicHost ?? url.hostname.replace(/^\[(.*)\]$/, "$1");
    return cbor(200, await manager.deliverKey(id, body, { connectHost }));
  }
  throw notFound(url.pathname);
}

/** The `from` query parameter of GET /v1/keeps/{id}/logs (default 0). */
function logsOffset(url: URL): number {
  const from = url.searchParams.get("from");
  if (from === null) return 0;
  if (!/^\d{1,15}$/.test(from)) {
    throw new KeepError(
      "bad-request",
      `"from" is "${from.slice(0, 40)}", not an offset; use a byte offset such as a reply's "end"`,
      400,
    );
  }
  return Number(from);
}

/**
 * POST /v1/keeps past the auth check: a new create passes the rate gate and
 * joins the queue (api/limits.ts, api/create_queue.ts); a poll names its ticket.
 * Answers the created keep with its capability, or 202 with the create's
 * place while it still waits (a first request at once, a poll after holding
 * it up to `queueHoldMs`).
 */
async function createKeep(
  manager: KeepManager,
  request: Request,
  options: RouteContext,
): Promise<CreateKeepResponse | Record<string, unknown>> {
  const body = parseCreateKeepRequest(await readCbor(request, CREATE_BODY_LIMIT));
  const { queue } = options;
  let ticket: Ticket<Created>;
  let holdMs = options.queueHoldMs ?? QUEUE_HOLD_MS;
  if (body.ticket !== undefined) {
    ticket = queue.get(body.ticket.toHex());
  } else {
    options.gate.admit(options.client);
    ticket = queue.enter(
      () => manager.create(body),
      (created) => void manager.delete(created.keep).catch(() => {}),
    );
    // Not queued: wait for the keep as before (but answer before a client's
    // 30 s request timeout); queued: tell the place now.
    holdMs = ticket.state === "queued" ? 0 : CREATE_HOLD_MS;
  }
  await hold(ticket, holdMs);
  const outcome = ticket.outcome;
  if (outcome === undefined) {
    return {
      v: 1,
      ticket: Uint8Array.fromHex(ticket.id),
      ahead: queue.ahead(ticket),
      creating: ticket.state !== "queued",
    };
  }
  queue.collect(ticket);
  if ("error" in outcome) throw outcome.error;
  options.auth.retain(manager.list().map((k) => k.keep));
  return { ...outcome.value, capability: options.auth.grant(outcome.value.keep) };
}

/** Waits until `ticket`'s create ended or `ms` passed, holding it against abandonment. */
async function hold(ticket: Ticket<Created>, ms: number): Promise<void> {
  ticket.holders++;
  let id: ReturnType<typeof setTimeout> | undefined;
  try {
    if (ms > 0) {
      await Promise.race([ticket.ended, new Promise<void>((r) => id = setTimeout(r, ms))]);
    }
  } finally {
    clearTimeout(id);
    ticket.holders--;
    ticket.seen = performance.now();
  }
}

/**
 * Reads a request body of at most `limit` bytes (checking Content-Length
 * first, then counting while reading) and decodes it as strict CBOR.
 */
export async function readCbor(request: Request, limit: number): Promise<unknown> {
  const type = request.headers.get("content-type");
  if (type !== null && type.split(";")[0].trim().toLowerCase() !== CBOR_MEDIA_TYPE) {
    throw new KeepError(
      "media-type",
      `The body is "${type.slice(0, 80)}", not ${CBOR_MEDIA_TYPE}; send CBOR`,
      415,
    );
  }
  const bytes = await readBody(request, limit);
  return decodeCbor(bytes, { maxSize: limit, what: "request body" });
}

/** Reads a body of at most `limit` bytes; `cbor-too-large` (413) past it. */
export function readBody(request: Request, limit: number): Promise<Uint8Array> {
  return readLimitedBody(request, { limit });
}

async function expectNoBody(request: Request): Promise<void> {
  const body = await readBody(request, 0).catch(() => {
    throw new KeepError("body-unexpected", `${request.method} takes no body; send none`, 400);
  });
  if (body.length > 0) {
    throw new KeepError("body-unexpected", `${request.method} takes no body; send none`, 400);
  }
}

function allow(method: string, methods: string[]): void {
  if (!methods.includes(method)) {
    throw new KeepError(
      "method-not-allowed",
      `Method "${method}" is not allowed here; use ${methods.join(" or ")}`,
      405,
    );
  }
}

function notFound(path: string): KeepError {
  return new KeepError(
    "not-found",
    `No endpoint "${path.slice(0, 100)}"; see spec/protocol.md for the /v1 API`,
    404,
  );
}

/** A CBOR response. */
function cbor(status: number, value: unknown, headers: Record<string, string> = {}): Response {
  return new Response(encodeCbor(value) as Uint8Array<ArrayBuffer>, {
    status,
    headers: { "content-type": CBOR_MEDIA_TYPE, ...headers },
  });
}

/** A CBOR error response `{v:1, error:{code, message}}`. */
export function errorReply(status: number, code: string, message: string): Response {
  return cbor(status, errorResponse(code, message));
}

/** Maps any thrown value to its CBOR error response. */
export function errorToResponse(error: unknown): Response {
  if (error instanceof RetryLaterError) {
    return cbor(error.httpStatus, errorResponse(error.code, error.message), {
      "retry-after": String(error.retryAfter),
    });
  }
  if (error instanceof KeepError && error.httpStatus === 401) {
    return cbor(401, errorResponse(error.code, error.message), {
      "www-authenticate": 'Bearer realm="enarx-keepmgr"',
    });
  }
  if (error instanceof KeepError) {
    return cbor(error.httpStatus, errorResponse(error.code, error.message));
  }
  if (error instanceof CborError) {
    const status = error.code === "cbor-too-large" ? 413 : 400;
    return cbor(status, errorResponse(error.code, error.message));
  }
  if (error instanceof MessageError) {
    return cbor(400, errorResponse(error.code, error.message));
  }
  return cbor(
    500,
    errorResponse("internal", "The keepmgr hit an internal error; see its log"),
  );
}
