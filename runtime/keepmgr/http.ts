/**
 * keepmgr's HTTP API (spec/protocol.md, "client ↔ keepmgr"): routes
 * `/v1/...` requests to the {@link KeepManager}, decodes and validates CBOR
 * bodies under a size limit per endpoint, and answers every failure with a
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
  /** The simulated SNP platform's root (`sha256:<hex>`), shown in GET /v1/info. */
  simulatorRoot?: string;
}

/** Returns the `Deno.serve` handler of the keepmgr API over `manager`. */
export function keepmgrHandler(
  manager: KeepManager,
  options: KeepmgrHandlerOptions = {},
): (request: Request) => Promise<Response> {
  const log = options.log ?? (() => {});
  return async (request: Request) => {
    const url = new URL(request.url);
    const started = performance.now();
    let response: Response;
    try {
      response = await route(manager, request, url, options);
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
  options: KeepmgrHandlerOptions,
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
  if (parts.length === 2) {
    allow(method, ["GET", "POST"]);
    if (method === "GET") {
      await expectNoBody(request);
      return cbor(200, { v: 1, keeps: manager.list() });
    }
    const body = parseCreateKeepRequest(await readCbor(request, CREATE_BODY_LIMIT));
    return cbor(201, await manager.create(body));
  }
  let id: string;
  try {
    id = decodeURIComponent(parts[2]);
  } catch {
    throw notFound(url.pathname); // "%zz" is no keep id
  }
  if (parts.length === 3) {
    allow(method, ["GET", "DELETE"]);
    await expectNoBody(request);
    const summary = method === "GET" ? manager.show(id) : await manager.delete(id);
    return cbor(200, { v: 1, ...summary });
  }
  if (parts.length === 4 && parts[3] === "key") {
    allow(method, ["POST"]);
    manager.show(id); // 404 before reading a body for an unknown keep
    const body = parseDeliverKeyRequest(await readCbor(request, KEY_BODY_LIMIT));
    const connectHost = options.publicHost ?? url.hostname.replace(/^\[(.*)\]$/, "$1");
    return cbor(200, await manager.deliverKey(id, body, { connectHost }));
  }
  throw notFound(url.pathname);
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
function cbor(status: number, value: unknown): Response {
  return new Response(encodeCbor(value) as Uint8Array<ArrayBuffer>, {
    status,
    headers: { "content-type": CBOR_MEDIA_TYPE },
  });
}

/** Maps any thrown value to its CBOR error response. */
export function errorToResponse(error: unknown): Response {
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
