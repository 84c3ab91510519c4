/**
 * Every message of the deploy protocol (spec/protocol.md) as a TypeScript
 * type, with a `parse*` validator per message that enforces the CDDL rules:
 * required fields, types, sizes, literal values, and closed maps (a field the
 * CDDL does not name is an error). Validators take a decoded CBOR value
 * (see cbor.ts) and return it typed, or throw {@link MessageError}.
 *
 * @module
 */
import { EnarxError } from "../errors.ts";
import { attestableBackends } from "../backends/mod.ts";

/** The protocol version carried by the first message of every hop. */
export const PROTOCOL_VERSION = 1;

/** The HPKE suite the keep seals to (RFC 9180 names). */
export const HPKE_SUITE = "DHKEM-P256-HKDF-SHA256/HKDF-SHA256/AES-128-GCM";

/** Media type of CBOR bodies. */
export const CBOR_MEDIA_TYPE = "application/cbor";

/** Media type of streamed CBOR sequences (RFC 8742). */
export const CBOR_SEQ_MEDIA_TYPE = "application/cbor-seq";

/**
 * Backends a client may ask for: the registry's backends whose keeps give
 * evidence (nil, kvm and sev, weakest first), and `auto`.
 */
export const BACKEND_NAMES: readonly string[] = [
  ...attestableBackends().map((b) => b.name),
  "auto",
];

/** A backend a client may ask for (one of {@link BACKEND_NAMES}). */
export type BackendName = string;

/** Lifecycle states of a keep, in order. */
export const KEEP_STATES = [
  "created",
  "attesting",
  "waiting-for-key",
  "waiting-for-workload",
  "running",
  "exited",
  "failed",
] as const;

/** A keep's lifecycle state. */
export type KeepState = typeof KEEP_STATES[number];

/**
 * Keep ids: lower-case letters, digits and `-`, 1 to 63 characters, starting
 * with a letter or digit, so that `<id>.keep.enarx.invalid` is a DNS name.
 */
export const KEEP_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** A message that breaks the protocol's rules (code `message-invalid` or `version`). */
export class MessageError extends EnarxError {
  /** Makes an error; `version` errors exit with the protocol status, others with dataError. */
  constructor(code: "message-invalid" | "version", message: string) {
    super(code, message, { exit: code === "version" ? "protocol" : "dataError" });
    this.name = "MessageError";
  }
}

// ---------------------------------------------------------------------------
// Shared parts

/** `{code, message}` inside an error body. */
export interface ErrorDetail {
  /** A stable machine-readable code, e.g. `cbor-malformed`. */
  code: string;
  /** One line a person can act on. */
  message: string;
}

/** Error body of every HTTP endpoint: `{v:1, error:{code, message}}`. */
export interface ErrorResponse {
  /** Protocol version. */
  v: 1;
  /** What went wrong. */
  error: ErrorDetail;
}

/** Resource limits of one keep (hello.limits). */
export interface KeepLimits {
  /** Maximum guest memory in bytes. */
  memory?: number;
  /** Maximum wall-clock time of the keep in milliseconds. */
  timeout_ms?: number;
}

// ---------------------------------------------------------------------------
// client <-> keepmgr (HTTPS)

/** POST /v1/keeps body. */
export interface CreateKeepRequest {
  /** Protocol version. */
  v: 1;
  /** Backend wanted. */
  backend: BackendName;
  /** The client's fresh 32-byte nonce. */
  nonce: Uint8Array;
  /** A place in keepmgr's create queue, from an earlier 202 reply (16 bytes). */
  ticket?: Uint8Array;
}

/** POST /v1/keeps 202 reply: the create waits in keepmgr's queue; poll again with `ticket`. */
export interface CreateKeepQueued {
  /** Protocol version. */
  v: 1;
  /** The create's place in the queue (16 random bytes): send it back in the next POST. */
  ticket: Uint8Array;
  /** Creates queued ahead of this one (0 once it is being created). */
  ahead: number;
  /** Whether its keep is being created now. */
  creating: boolean;
}

/** POST /v1/keeps 201 reply. */
export interface CreateKeepResponse {
  /** Protocol version. */
  v: 1;
  /** The keep's id. */
  keep: string;
  /** The backend that runs it (never `auto`). */
  backend: string;
  /** The CBOR evidence bundle (runtime/attestation/bundle.ts). */
  evidence: Uint8Array;
  /** The keep's HPKE public key: an uncompressed P-256 point (65 bytes). */
  sealing_key: Uint8Array;
  /** The HPKE suite, always {@link HPKE_SUITE}. */
  suite: typeof HPKE_SUITE;
  /**
   * The keep's capability (32 random bytes): sent as `authorization: Bearer
   * <hex>`, it alone (besides the operator's token) may deliver the key to,
   * show, read or delete this keep.
   */
  capability: Uint8Array;
}

/** POST /v1/keeps/{id}/key body: the HPKE-sealed key. */
export interface DeliverKeyRequest {
  /** Protocol version. */
  v: 1;
  /** HPKE encapsulated key. */
  enc: Uint8Array;
  /** HPKE ciphertext of a {@link SealedKeyPlaintext}. */
  ct: Uint8Array;
}

/** Where the client connects to reach the keep's HTTPS listener. */
export interface ConnectAddress {
  /** Host name or address. */
  host: string;
  /** TCP port, 1..65535. */
  port: number;
}

/** POST /v1/keeps/{id}/key 200 reply. */
export interface DeliverKeyResponse {
  /** Protocol version. */
  v: 1;
  /** Where to connect. */
  connect: ConnectAddress;
}

/** One keep as listed and shown. */
export interface KeepSummary {
  /** The keep's id. */
  keep: string;
  /** Its backend. */
  backend: string;
  /** Its state. */
  state: KeepState;
  /** The workload's exit status, once `exited`. */
  status?: number;
  /** Why it exited or failed. */
  reason?: string;
  /** When it was created, RFC 3339 UTC. */
  created: string;
  /** Where keepmgr forwards the workload's `listen` sockets, once it runs. */
  endpoints?: Endpoint[];
}

/** A port that keepmgr forwards to one `listen` socket of a keep's workload. */
export interface Endpoint {
  /** The socket's name in Enarx.toml. */
  name: string;
  /** Its protocol (`tcp`, or `tls`: the keep terminates TLS). */
  prot: string;
  /** The host clients connect to (keepmgr's --public-host, else its forward address). */
  host: string;
  /** The port on that host. */
  port: number;
}

/** GET /v1/keeps/{id}/logs reply: the last output of a detached workload. */
export interface KeepLogsResponse {
  /** Protocol version. */
  v: 1;
  /** The keep's state. */
  state: KeepState;
  /** Offset (bytes of output since the start) just past the last chunk. */
  end: number;
  /** Output chunks from the requested offset on, oldest first. */
  chunks: OutputChunk[];
}

/** A piece of a detached workload's output as keepmgr keeps it. */
export interface OutputChunk {
  /** `stdout` or `stderr`. */
  stream: "stdout" | "stderr";
  /** Offset of its first byte in the keep's whole output. */
  at: number;
  /** The bytes. */
  data: Uint8Array;
}

/** GET /v1/keeps reply. */
export interface ListKeepsResponse {
  /** Protocol version. */
  v: 1;
  /** Every keep known, oldest first. */
  keeps: KeepSummary[];
}

/** GET /v1/keeps/{id} and DELETE /v1/keeps/{id} reply: the keep's summary. */
export interface ShowKeepResponse extends KeepSummary {
  /** Protocol version. */
  v: 1;
}

/** GET /v1/info reply. */
export interface InfoResponse {
  /** Protocol version. */
  v: 1;
  /** The keepmgr's enarx version. */
  version: string;
  /** Backends this keepmgr launches. */
  backends: string[];
  /**
   * `sha256:<hex>` of the simulated SNP platform's root that signs its nil
   * and kvm keeps' evidence; absent when it runs no simulator.
   */
  simulator_root?: string;
}

// ---------------------------------------------------------------------------
// client -> wasmldr (sealed payload, HTTPS end to end)

/** The plaintext that the client seals to the keep (HPKE). */
export interface SealedKeyPlaintext {
  /** Protocol version. */
  v: 1;
  /** The keep id it is meant for. */
  keep: string;
  /** The client's nonce from the create request. */
  nonce: Uint8Array;
  /** PKCS#8 DER of the one-use P-256 TLS private key. */
  tls_key: Uint8Array;
  /** The one-use 32-byte upload credential. */
  token: Uint8Array;
}

/**
 * Most bytes a keep accepts as the POST /v1/workload body (spec/protocol.md):
 * the module with its configuration, arguments, environment and stdin.
 */
export const MAX_WORKLOAD_REQUEST_SIZE = 64 * 1024 * 1024;

/** POST /v1/workload body. */
export interface WorkloadRequest {
  /** Protocol version. */
  v: 1;
  /** The WebAssembly module. */
  module: Uint8Array;
  /** Enarx.toml text, or null. */
  config: string | null;
  /** Arguments after the program name. */
  args: string[];
  /** Environment variables. */
  env: Record<string, string>;
  /** Standard input. */
  stdin: Uint8Array;
  /**
   * Run detached: the keep answers with one `detached` item and goes on;
   * the output goes to keepmgr (in the clear) for GET /v1/keeps/{id}/logs.
   */
  detach?: boolean;
  /**
   * The keep's service certificate chain (DER, the keep's own first), issued
   * by the deployer's CA for the key of POST /v1/service-key; absent: the
   * keep serves its self-signed certificate.
   */
  chain?: Uint8Array[];
}

/** POST /v1/service-key body: the names the keep's service certificate is for. */
export interface ServiceKeyRequest {
  /** Protocol version. */
  v: 1;
  /** DNS names and IP addresses (runtime/wasm/certificate_names.ts), one to 16. */
  names: string[];
}

/** POST /v1/service-key reply: the keep's new service key, as a CSR and a self-signed certificate. */
export interface ServiceKeyResponse {
  /** Protocol version. */
  v: 1;
  /** A PKCS#10 request (DER) for the names, signed by the keep's service key. */
  csr: Uint8Array;
  /** A self-signed certificate (DER) for the same key and names. */
  certificate: Uint8Array;
}

/** One item of the workload's output stream (application/cbor-seq). */
export type WorkloadOutput =
  | { t: "stdout"; data: Uint8Array }
  | { t: "stderr"; data: Uint8Array }
  | { t: "detached" }
  | WorkloadExit;

/** The last item of the output stream. */
export interface WorkloadExit {
  /** Item type. */
  t: "exit";
  /** Exit status (enarx's statuses for traps, timeouts, limits). */
  status: number;
  /** `exit`, `trap`, `timeout`, `fuel`, `memory`, `error`... */
  reason: string;
  /** Detail for a person, e.g. the trap message. */
  message?: string;
}

// ---------------------------------------------------------------------------
// keepmgr <-> keepldr <-> wasmldr (frames)

/** mgr→ldr→wasmldr: the first frame, starting the keep. */
export interface HelloFrame {
  /** Frame type. */
  t: "hello";
  /** Protocol version. */
  v: 1;
  /** The keep's id. */
  keep: string;
  /** The backend launched (never `auto`). */
  backend: string;
  /** The client's nonce. */
  nonce: Uint8Array;
  /** Resource limits. */
  limits: KeepLimits;
}

/** wasmldr→: the evidence and the sealing public key. */
export interface EvidenceFrame {
  /** Frame type. */
  t: "evidence";
  /** The CBOR evidence bundle. */
  evidence: Uint8Array;
  /** HPKE public key, uncompressed P-256 point (65 bytes). */
  sealing_key: Uint8Array;
}

/** mgr→: the sealed key, relayed unread. */
export interface SealedKeyFrame {
  /** Frame type. */
  t: "sealed-key";
  /** HPKE encapsulated key. */
  enc: Uint8Array;
  /** HPKE ciphertext. */
  ct: Uint8Array;
}

/** wasmldr→: HTTPS is listening on 127.0.0.1:port. */
export interface ListeningFrame {
  /** Frame type. */
  t: "listening";
  /** The loopback port. */
  port: number;
}

/** wasmldr→: the workload was accepted and runs. */
export interface RunningFrame {
  /** Frame type. */
  t: "running";
}

/** wasmldr→: the workload ended. */
export interface ExitedFrame {
  /** Frame type. */
  t: "exited";
  /** Exit status. */
  status: number;
  /** Why it ended. */
  reason: string;
}

/** wasmldr→: the workload's `listen` sockets, open on the keep's loopback. */
export interface ServicesFrame {
  /** Frame type. */
  t: "services";
  /** One per `listen` socket, in Enarx.toml order. */
  services: ServiceSocket[];
}

/** One `listen` socket of a workload, as the keep reports it. */
export interface ServiceSocket {
  /** Its name in Enarx.toml. */
  name: string;
  /** `tcp`, or `tls` (the keep terminates TLS; keepmgr relays ciphertext). */
  prot: string;
  /** The keep's loopback port it listens on. */
  port: number;
  /** The port Enarx.toml asks for (keepmgr uses it if it is free and in range). */
  asked: number;
}

/** wasmldr→: output of a detached workload (keepmgr keeps the last of it). */
export interface OutputFrame {
  /** Frame type. */
  t: "output";
  /** Which stream. */
  stream: "stdout" | "stderr";
  /** The bytes. */
  data: Uint8Array;
}

/** any→: a failure, after which the sender stops. */
export interface ErrorFrame {
  /** Frame type. */
  t: "error";
  /** Stable code. */
  code: string;
  /** One line a person can act on. */
  message: string;
}

/**
 * wasmldr→keepldr: asks the platform for a report, as a guest writes
 * configfs-tsm's `inblob` or issues SNP_GET_EXT_REPORT (keepldr answers for
 * the simulated platform; the frame never reaches keepmgr).
 */
export interface ReportRequestFrame {
  /** Frame type. */
  t: "report-request";
  /** REPORT_DATA, exactly 64 bytes. */
  report_data: Uint8Array;
}

/** keepldr→wasmldr: the platform's report and its certificate chain. */
export interface ReportResponseFrame {
  /** Frame type. */
  t: "report-response";
  /** The 1184-byte SNP ATTESTATION_REPORT. */
  report: Uint8Array;
  /** DER certificates: ARK, ASK, VCEK. */
  certs: Uint8Array[];
}

/** Frames that travel towards the keep. */
export type DownstreamFrame = HelloFrame | SealedKeyFrame | ErrorFrame;

/** Frames that travel from the keep towards keepmgr. */
export type UpstreamFrame =
  | EvidenceFrame
  | ListeningFrame
  | RunningFrame
  | ExitedFrame
  | ErrorFrame
  | ServicesFrame
  | OutputFrame;

// ---------------------------------------------------------------------------
// Validation helpers

type CborMap = Record<string, unknown>;

function fail(what: string, detail: string): never {
  throw new MessageError("message-invalid", `Invalid ${what}: ${detail}; see spec/protocol.md`);
}

/** Checks `value` is a map with all `required` keys and no keys outside `required`/`optional`. */
function closedMap(
  value: unknown,
  what: string,
  required: readonly string[],
  optional: readonly string[] = [],
): CborMap {
  if (typeof value !== "object" || value === null || Array.isArray(value) || isBytes(value)) {
    fail(what, `expected a map, got ${describe(value)}`);
  }
  const map = value as CborMap;
  for (const key of required) {
    if (!Object.hasOwn(map, key)) fail(what, `missing field "${key}"`);
  }
  for (const key of Object.keys(map)) {
    if (!required.includes(key) && !optional.includes(key)) fail(what, `unknown field "${key}"`);
  }
  return map;
}

function checkVersion(map: CborMap, what: string): 1 {
  const v = map.v;
  if (typeof v !== "number" || !Number.isInteger(v)) fail(what, `"v" must be an unsigned integer`);
  if (v !== PROTOCOL_VERSION) {
    throw new MessageError(
      "version",
      `The peer speaks protocol version ${v}, this enarx speaks version ${PROTOCOL_VERSION}; ` +
        `use matching enarx versions`,
    );
  }
  return 1;
}

function isBytes(value: unknown): value is Uint8Array {
  return value instanceof Uint8Array;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (isBytes(value)) return "a byte string";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "string") return "a text string";
  if (typeof value === "number" || typeof value === "bigint") return "a number";
  if (typeof value === "boolean") return "a boolean";
  return `a ${typeof value === "object" ? "map" : typeof value}`;
}

function text(map: CborMap, key: string, what: string, pattern?: RegExp): string {
  const value = map[key];
  if (typeof value !== "string") {
    fail(what, `"${key}" must be a text string, got ${describe(value)}`);
  }
  if (pattern !== undefined && !pattern.test(value)) {
    fail(what, `"${key}" is "${value.slice(0, 80)}", which does not match ${pattern}`);
  }
  return value;
}

function optionalText(map: CborMap, key: string, what: string): string | undefined {
  return Object.hasOwn(map, key) ? text(map, key, what) : undefined;
}

function bytes(map: CborMap, key: string, what: string, size?: number): Uint8Array {
  const value = map[key];
  if (!isBytes(value)) fail(what, `"${key}" must be a byte string, got ${describe(value)}`);
  if (size !== undefined && value.length !== size) {
    fail(what, `"${key}" must be ${size} bytes, got ${value.length}`);
  }
  return value;
}

function uint(map: CborMap, key: string, what: string, max = Number.MAX_SAFE_INTEGER): number {
  const value = map[key];
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0 || value > max) {
    fail(what, `"${key}" must be an unsigned integer up to ${max}`);
  }
  return value;
}

function optionalUint(map: CborMap, key: string, what: string): number | undefined {
  return Object.hasOwn(map, key) ? uint(map, key, what) : undefined;
}

function literal<T extends string>(
  map: CborMap,
  key: string,
  what: string,
  allowed: readonly T[],
): T {
  const value = text(map, key, what);
  if (!(allowed as readonly string[]).includes(value)) {
    fail(what, `"${key}" is "${value.slice(0, 80)}", expected one of ${allowed.join(", ")}`);
  }
  return value as T;
}

function frameType(value: unknown, what: string): string {
  if (typeof value !== "object" || value === null || Array.isArray(value) || isBytes(value)) {
    fail(what, `expected a map, got ${describe(value)}`);
  }
  const t = (value as CborMap).t;
  if (typeof t !== "string") fail(what, `"t" must be a text string`);
  return t;
}

// ---------------------------------------------------------------------------
// Validators: shared

/** Validates an error body `{v:1, error:{code, message}}`. */
export function parseErrorResponse(value: unknown): ErrorResponse {
  const what = "error response";
  const map = closedMap(value, what, ["v", "error"]);
  checkVersion(map, what);
  const detail = closedMap(map.error, `${what} "error"`, ["code", "message"]);
  return {
    v: 1,
    error: {
      code: text(detail, "code", what),
      message: text(detail, "message", what),
    },
  };
}

function parseLimits(value: unknown, what: string): KeepLimits {
  const map = closedMap(value, `${what} "limits"`, [], ["memory", "timeout_ms"]);
  const limits: KeepLimits = {};
  const memory = optionalUint(map, "memory", what);
  const timeout = optionalUint(map, "timeout_ms", what);
  if (memory !== undefined) limits.memory = memory;
  if (timeout !== undefined) limits.timeout_ms = timeout;
  return limits;
}

// ---------------------------------------------------------------------------
// Validators: client <-> keepmgr

/** Validates a POST /v1/keeps body. */
export function parseCreateKeepRequest(value: unknown): CreateKeepRequest {
  const what = "create-keep request";
  const map = closedMap(value, what, ["v", "backend", "nonce"], ["ticket"]);
  checkVersion(map, what);
  const request: CreateKeepRequest = {
    v: 1,
    backend: literal(map, "backend", what, BACKEND_NAMES),
    nonce: bytes(map, "nonce", what, 32),
  };
  if (Object.hasOwn(map, "ticket")) request.ticket = bytes(map, "ticket", what, 16);
  return request;
}

/** Validates a POST /v1/keeps 202 reply (the create is queued). */
export function parseCreateKeepQueued(value: unknown): CreateKeepQueued {
  const what = "create-keep queued reply";
  const map = closedMap(value, what, ["v", "ticket", "ahead", "creating"]);
  checkVersion(map, what);
  const creating = map.creating;
  if (typeof creating !== "boolean") fail(what, `"creating" is ${describe(creating)}, not a bool`);
  return {
    v: 1,
    ticket: bytes(map, "ticket", what, 16),
    ahead: uint(map, "ahead", what),
    creating,
  };
}

/** Validates a POST /v1/keeps reply. */
export function parseCreateKeepResponse(value: unknown): CreateKeepResponse {
  const what = "create-keep response";
  const map = closedMap(value, what, [
    "v",
    "keep",
    "backend",
    "evidence",
    "sealing_key",
    "suite",
    "capability",
  ]);
  checkVersion(map, what);
  return {
    v: 1,
    keep: text(map, "keep", what, KEEP_ID_PATTERN),
    backend: text(map, "backend", what),
    evidence: bytes(map, "evidence", what),
    sealing_key: bytes(map, "sealing_key", what, 65),
    suite: literal(map, "suite", what, [HPKE_SUITE]),
    capability: bytes(map, "capability", what, 32),
  };
}

/** Validates a POST /v1/keeps/{id}/key body. */
export function parseDeliverKeyRequest(value: unknown): DeliverKeyRequest {
  const what = "deliver-key request";
  const map = closedMap(value, what, ["v", "enc", "ct"]);
  checkVersion(map, what);
  return { v: 1, enc: bytes(map, "enc", what), ct: bytes(map, "ct", what) };
}

/** Validates a POST /v1/keeps/{id}/key reply. */
export function parseDeliverKeyResponse(value: unknown): DeliverKeyResponse {
  const what = "deliver-key response";
  const map = closedMap(value, what, ["v", "connect"]);
  checkVersion(map, what);
  const connect = closedMap(map.connect, `${what} "connect"`, ["host", "port"]);
  const port = uint(connect, "port", what, 65535);
  if (port === 0) fail(what, `"port" must be 1 to 65535`);
  return { v: 1, connect: { host: text(connect, "host", what), port } };
}

function parseKeepSummaryFields(map: CborMap, what: string): KeepSummary {
  const summary: KeepSummary = {
    keep: text(map, "keep", what, KEEP_ID_PATTERN),
    backend: text(map, "backend", what),
    state: literal(map, "state", what, KEEP_STATES),
    created: text(map, "created", what),
  };
  const status = optionalUint(map, "status", what);
  const reason = optionalText(map, "reason", what);
  if (status !== undefined) summary.status = status;
  if (reason !== undefined) summary.reason = reason;
  if (Object.hasOwn(map, "endpoints")) summary.endpoints = parseEndpoints(map.endpoints, what);
  return summary;
}

function parseEndpoints(value: unknown, what: string): Endpoint[] {
  if (!Array.isArray(value)) fail(what, `"endpoints" must be an array`);
  return value.map((item) => {
    const map = closedMap(item, `${what} endpoint`, ["name", "prot", "host", "port"]);
    const port = uint(map, "port", what, 65535);
    if (port === 0) fail(what, `endpoint "port" must be 1 to 65535`);
    return {
      name: text(map, "name", what),
      prot: text(map, "prot", what),
      host: text(map, "host", what),
      port,
    };
  });
}

/** Validates a GET /v1/keeps/{id}/logs reply. */
export function parseKeepLogsResponse(value: unknown): KeepLogsResponse {
  const what = "keep-logs response";
  const map = closedMap(value, what, ["v", "state", "end", "chunks"]);
  checkVersion(map, what);
  if (!Array.isArray(map.chunks)) fail(what, `"chunks" must be an array`);
  const chunks = map.chunks.map((item) => {
    const chunk = closedMap(item, `${what} chunk`, ["stream", "at", "data"]);
    return {
      stream: literal(chunk, "stream", what, ["stdout", "stderr"]),
      at: uint(chunk, "at", what),
      data: bytes(chunk, "data", what),
    };
  });
  return {
    v: 1,
    state: literal(map, "state", what, KEEP_STATES),
    end: uint(map, "end", what),
    chunks,
  };
}

const SUMMARY_REQUIRED = ["keep", "backend", "state", "created"] as const;
const SUMMARY_OPTIONAL = ["status", "reason", "endpoints"] as const;

/** Validates one keep summary (an element of the list reply). */
export function parseKeepSummary(value: unknown): KeepSummary {
  const what = "keep summary";
  return parseKeepSummaryFields(closedMap(value, what, SUMMARY_REQUIRED, SUMMARY_OPTIONAL), what);
}

/** Validates a GET /v1/keeps reply. */
export function parseListKeepsResponse(value: unknown): ListKeepsResponse {
  const what = "list-keeps response";
  const map = closedMap(value, what, ["v", "keeps"]);
  checkVersion(map, what);
  if (!Array.isArray(map.keeps)) fail(what, `"keeps" must be an array`);
  return { v: 1, keeps: map.keeps.map(parseKeepSummary) };
}

/** Validates a GET or DELETE /v1/keeps/{id} reply. */
export function parseShowKeepResponse(value: unknown): ShowKeepResponse {
  const what = "show-keep response";
  const map = closedMap(value, what, ["v", ...SUMMARY_REQUIRED], SUMMARY_OPTIONAL);
  checkVersion(map, what);
  return { v: 1, ...parseKeepSummaryFields(map, what) };
}

/** Validates a GET /v1/info reply. */
export function parseInfoResponse(value: unknown): InfoResponse {
  const what = "info response";
  const map = closedMap(value, what, ["v", "version", "backends"], ["simulator_root"]);
  checkVersion(map, what);
  const backends = map.backends;
  if (!Array.isArray(backends) || !backends.every((b) => typeof b === "string")) {
    fail(what, `"backends" must be an array of text strings`);
  }
  const info: InfoResponse = {
    v: 1,
    version: text(map, "version", what),
    backends: backends as string[],
  };
  const root = optionalText(map, "simulator_root", what);
  if (root !== undefined) {
    if (!/^sha256:[0-9a-f]{64}$/.test(root)) {
      fail(what, `"simulator_root" must be "sha256:" and 64 lower-case hex digits`);
    }
    info.simulator_root = root;
  }
  return info;
}

// ---------------------------------------------------------------------------
// Validators: client -> wasmldr

/** Validates the plaintext of the sealed key (after HPKE open). */
export function parseSealedKeyPlaintext(value: unknown): SealedKeyPlaintext {
  const what = "sealed-key plaintext";
  const map = closedMap(value, what, ["v", "keep", "nonce", "tls_key", "token"]);
  checkVersion(map, what);
  return {
    v: 1,
    keep: text(map, "keep", what, KEEP_ID_PATTERN),
    nonce: bytes(map, "nonce", what, 32),
    tls_key: bytes(map, "tls_key", what),
    token: bytes(map, "token", what, 32),
  };
}

/** Validates a POST /v1/workload body. */
export function parseWorkloadRequest(value: unknown): WorkloadRequest {
  const what = "workload request";
  const map = closedMap(value, what, ["v", "module", "config", "args", "env", "stdin"], [
    "detach",
    "chain",
  ]);
  checkVersion(map, what);
  const config = map.config;
  if (config !== null && typeof config !== "string") {
    fail(what, `"config" must be a text string or null`);
  }
  const args = map.args;
  if (!Array.isArray(args) || !args.every((a) => typeof a === "string")) {
    fail(what, `"args" must be an array of text strings`);
  }
  const env = map.env;
  if (typeof env !== "object" || env === null || Array.isArray(env) || isBytes(env)) {
    fail(what, `"env" must be a map of text strings, got ${describe(env)}`);
  }
  for (const [key, val] of Object.entries(env)) {
    if (typeof val !== "string") fail(what, `"env" value of "${key}" must be a text string`);
  }
  const request: WorkloadRequest = {
    v: 1,
    module: bytes(map, "module", what),
    config,
    args: args as string[],
    env: env as Record<string, string>,
    stdin: bytes(map, "stdin", what),
  };
  if (Object.hasOwn(map, "detach")) {
    if (typeof map.detach !== "boolean") fail(what, `"detach" must be true or false`);
    request.detach = map.detach;
  }
  if (Object.hasOwn(map, "chain")) request.chain = certificateList(map, what);
  return request;
}

/** `chain`: one to 8 DER certificates. */
function certificateList(map: CborMap, what: string): Uint8Array[] {
  const list = map.chain;
  if (!Array.isArray(list) || list.length < 1 || list.length > 8 || !list.every(isBytes)) {
    fail(what, `"chain" must be an array of one to 8 byte strings`);
  }
  return list as Uint8Array[];
}

/** Validates a POST /v1/service-key body. */
export function parseServiceKeyRequest(value: unknown): ServiceKeyRequest {
  const what = "service-key request";
  const map = closedMap(value, what, ["v", "names"]);
  checkVersion(map, what);
  const names = map.names;
  if (
    !Array.isArray(names) || names.length < 1 || names.length > 16 ||
    !names.every((n) => typeof n === "string" && n.length > 0 && n.length <= 253)
  ) {
    fail(what, `"names" must be an array of one to 16 text strings of 1 to 253 characters`);
  }
  return { v: 1, names: names as string[] };
}

/** Validates a POST /v1/service-key reply. */
export function parseServiceKeyResponse(value: unknown): ServiceKeyResponse {
  const what = "service-key response";
  const map = closedMap(value, what, ["v", "csr", "certificate"]);
  checkVersion(map, what);
  return { v: 1, csr: bytes(map, "csr", what), certificate: bytes(map, "certificate", what) };
}

/** Validates one item of the workload's output stream. */
export function parseWorkloadOutput(value: unknown): WorkloadOutput {
  const what = "workload output item";
  const t = frameType(value, what);
  if (t === "stdout" || t === "stderr") {
    const map = closedMap(value, `${t} ${what}`, ["t", "data"]);
    return { t, data: bytes(map, "data", what) };
  }
  if (t === "detached") {
    closedMap(value, `detached ${what}`, ["t"]);
    return { t };
  }
  if (t === "exit") {
    const map = closedMap(value, `exit ${what}`, ["t", "status", "reason"], ["message"]);
    const exit: WorkloadExit = {
      t,
      status: uint(map, "status", what, 255),
      reason: text(map, "reason", what),
    };
    const message = optionalText(map, "message", what);
    if (message !== undefined) exit.message = message;
    return exit;
  }
  fail(what, `unknown item type "${t.slice(0, 40)}"`);
}

// ---------------------------------------------------------------------------
// Validators: frames

/** Validates a hello frame (checks the version first: a mismatch is a `version` error). */
export function parseHelloFrame(value: unknown): HelloFrame {
  const what = "hello frame";
  const map = closedMap(value, what, ["t", "v", "keep", "backend", "nonce", "limits"]);
  literal(map, "t", what, ["hello"]);
  checkVersion(map, what);
  return {
    t: "hello",
    v: 1,
    keep: text(map, "keep", what, KEEP_ID_PATTERN),
    backend: text(map, "backend", what),
    nonce: bytes(map, "nonce", what, 32),
    limits: parseLimits(map.limits, what),
  };
}

/** Validates an evidence frame. */
export function parseEvidenceFrame(value: unknown): EvidenceFrame {
  const what = "evidence frame";
  const map = closedMap(value, what, ["t", "evidence", "sealing_key"]);
  literal(map, "t", what, ["evidence"]);
  return {
    t: "evidence",
    evidence: bytes(map, "evidence", what),
    sealing_key: bytes(map, "sealing_key", what, 65),
  };
}

/** Validates a sealed-key frame. */
export function parseSealedKeyFrame(value: unknown): SealedKeyFrame {
  const what = "sealed-key frame";
  const map = closedMap(value, what, ["t", "enc", "ct"]);
  literal(map, "t", what, ["sealed-key"]);
  return { t: "sealed-key", enc: bytes(map, "enc", what), ct: bytes(map, "ct", what) };
}

/** Validates a listening frame. */
export function parseListeningFrame(value: unknown): ListeningFrame {
  const what = "listening frame";
  const map = closedMap(value, what, ["t", "port"]);
  literal(map, "t", what, ["listening"]);
  const port = uint(map, "port", what, 65535);
  if (port === 0) fail(what, `"port" must be 1 to 65535`);
  return { t: "listening", port };
}

/** Validates a running frame. */
export function parseRunningFrame(value: unknown): RunningFrame {
  const what = "running frame";
  const map = closedMap(value, what, ["t"]);
  literal(map, "t", what, ["running"]);
  return { t: "running" };
}

/** Validates an exited frame. */
export function parseExitedFrame(value: unknown): ExitedFrame {
  const what = "exited frame";
  const map = closedMap(value, what, ["t", "status", "reason"]);
  literal(map, "t", what, ["exited"]);
  return {
    t: "exited",
    status: uint(map, "status", what, 255),
    reason: text(map, "reason", what),
  };
}

/** Validates an error frame. */
export function parseErrorFrame(value: unknown): ErrorFrame {
  const what = "error frame";
  const map = closedMap(value, what, ["t", "code", "message"]);
  literal(map, "t", what, ["error"]);
  return { t: "error", code: text(map, "code", what), message: text(map, "message", what) };
}

/** Validates a services frame: one to 64 sockets with distinct names. */
export function parseServicesFrame(value: unknown): ServicesFrame {
  const what = "services frame";
  const map = closedMap(value, what, ["t", "services"]);
  literal(map, "t", what, ["services"]);
  const list = map.services;
  if (!Array.isArray(list) || list.length < 1 || list.length > 64) {
    fail(what, `"services" must be an array of one to 64 maps`);
  }
  const services = list.map((item) => {
    const entry = closedMap(item, `${what} service`, ["name", "prot", "port", "asked"]);
    const port = uint(entry, "port", what, 65535);
    if (port === 0) fail(what, `"port" must be 1 to 65535`);
    return {
      name: text(entry, "name", what),
      prot: literal(entry, "prot", what, ["tcp", "tls"]),
      port,
      asked: uint(entry, "asked", what, 65535),
    };
  });
  if (new Set(services.map((s) => s.name)).size !== services.length) {
    fail(what, `two services have the same "name"`);
  }
  return { t: "services", services };
}

/** Validates an output frame. */
export function parseOutputFrame(value: unknown): OutputFrame {
  const what = "output frame";
  const map = closedMap(value, what, ["t", "stream", "data"]);
  literal(map, "t", what, ["output"]);
  return {
    t: "output",
    stream: literal(map, "stream", what, ["stdout", "stderr"]),
    data: bytes(map, "data", what),
  };
}

/** Validates a report-request frame. */
export function parseReportRequestFrame(value: unknown): ReportRequestFrame {
  const what = "report-request frame";
  const map = closedMap(value, what, ["t", "report_data"]);
  literal(map, "t", what, ["report-request"]);
  return { t: "report-request", report_data: bytes(map, "report_data", what, 64) };
}

/** Validates a report-response frame: a report and one to eight DER certificates. */
export function parseReportResponseFrame(value: unknown): ReportResponseFrame {
  const what = "report-response frame";
  const map = closedMap(value, what, ["t", "report", "certs"]);
  literal(map, "t", what, ["report-response"]);
  const certs = map.certs;
  if (
    !Array.isArray(certs) || certs.length < 1 || certs.length > 8 ||
    !certs.every((c) => c instanceof Uint8Array)
  ) {
    fail(what, `"certs" must be an array of one to eight byte strings`);
  }
  return { t: "report-response", report: bytes(map, "report", what, 1184), certs };
}

/**
 * Validates a frame that keepldr reads from the keep: any upstream frame,
 * or a report request (which keepldr answers itself).
 */
export function parseKeepFrame(value: unknown): UpstreamFrame | ReportRequestFrame {
  if (frameType(value, "frame from the keep") === "report-request") {
    return parseReportRequestFrame(value);
  }
  return parseUpstreamFrame(value);
}

/** Validates a frame that wasmldr reads while it waits for a report. */
export function parseReportReplyFrame(value: unknown): ReportResponseFrame | ErrorFrame {
  const t = frameType(value, "frame to the keep");
  if (t === "error") return parseErrorFrame(value);
  if (t === "report-response") return parseReportResponseFrame(value);
  fail("frame to the keep", `expected "report-response" or "error", got "${t.slice(0, 40)}"`);
}

/** Validates any frame that travels towards the keep, by its `t`. */
export function parseDownstreamFrame(value: unknown): DownstreamFrame {
  const t = frameType(value, "frame to the keep");
  switch (t) {
    case "hello":
      return parseHelloFrame(value);
    case "sealed-key":
      return parseSealedKeyFrame(value);
    case "error":
      return parseErrorFrame(value);
  }
  fail("frame to the keep", `unexpected frame type "${t.slice(0, 40)}"`);
}

/** Validates any frame that travels from the keep, by its `t`. */
export function parseUpstreamFrame(value: unknown): UpstreamFrame {
  const t = frameType(value, "frame from the keep");
  switch (t) {
    case "evidence":
      return parseEvidenceFrame(value);
    case "listening":
      return parseListeningFrame(value);
    case "running":
      return parseRunningFrame(value);
    case "exited":
      return parseExitedFrame(value);
    case "error":
      return parseErrorFrame(value);
    case "services":
      return parseServicesFrame(value);
    case "output":
      return parseOutputFrame(value);
  }
  fail("frame from the keep", `unexpected frame type "${t.slice(0, 40)}"`);
}

/** Makes an error body. */
export function errorResponse(code: string, message: string): ErrorResponse {
  return { v: 1, error: { code, message } };
}
