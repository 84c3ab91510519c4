/**
 * wasmldr, the app loader inside a keep (deploy steps 4, 7, 8 and 10). It
 * talks frames with keepldr on one channel (spec/protocol.md, "Frames"):
 *
 * 1. makes an ephemeral HPKE key pair while it reads `hello` (keep id,
 *    backend, the client's nonce, limits);
 * 2. asks the platform for evidence whose
 *    report data binds the nonce and that public key (report_data.ts), and
 *    sends `evidence`;
 * 3. reads `sealed-key`, opens it (only this keep can), checks that it names
 *    this keep and this nonce, makes its own certificate for the client's
 *    one-use TLS key (keep_tls.ts) and serves HTTPS on 127.0.0.1, sending
 *    `listening`;
 * 4. accepts exactly one workload, over a request that carries the sealed
 *    upload token (others get 401; after the one, 409), sends `running`,
 *    runs it with runtime/wasm/workload.ts, streams its output as a CBOR sequence
 *    and sends `exited`; then it stops. Its `listen` sockets open where
 *    its HTTPS does (127.0.0.1; a VM keep's interface) and are reported in a
 *    `services` frame (deployed_sockets.ts).
 *    A detached workload (`detach: true`) gets one `detached` item; its output
 *    goes to keepmgr in `output` frames instead, and it runs on without a client.
 *
 * It ends early, with an `error` frame where it still can, when a frame is
 * wrong, the channel closes (keepldr died), or keepldr sends `error`.
 *
 * @module
 */
import { EnarxError, ExitStatus } from "../errors.ts";
import { decodeCbor, encodeCbor } from "../protocol/cbor.ts";
import { FrameReader, FrameWriter } from "../protocol/frames.ts";
import { readLimitedBody } from "../protocol/http_body.ts";
import {
  CBOR_MEDIA_TYPE,
  CBOR_SEQ_MEDIA_TYPE,
  errorResponse,
  type HelloFrame,
  MAX_WORKLOAD_REQUEST_SIZE,
  parseDownstreamFrame,
  parseHelloFrame,
  parseSealedKeyPlaintext,
  parseServiceKeyRequest,
  parseWorkloadRequest,
  type WorkloadRequest,
} from "../protocol/messages.ts";
import { SealingKeyPair } from "../protocol/sealing.ts";
import { bytesEqual, computeReportData } from "../protocol/report_data.ts";
import { importTlsKey, makeKeepCertificate, pemFromDer } from "../protocol/keep_tls.ts";
import type { RunOptions, Workload, WorkloadResult } from "../wasm/workload.ts";
import type { EnarxConfig } from "../wasm/config.ts";
import { type GuestReportDevice, hostReportChannel } from "./report_device.ts";
import { checkDeployedSockets, keepLocalListens, servicesReporter } from "./deployed_sockets.ts";
import { ServiceKey } from "./service_key.ts";
import type { KeepIdentity } from "../wasm/keep_identity.ts";

/** What an {@link EvidenceProvider} may use besides the report data and hello. */
export interface EvidenceContext {
  /** The host channel as a report device (report_device.ts). */
  host: GuestReportDevice;
}

/** Makes the platform's evidence bundle for 64 bytes of report data. */
export type EvidenceProvider = (
  reportData: Uint8Array,
  hello: HelloFrame,
  context?: EvidenceContext,
) => Promise<Uint8Array>;

/** Runs a workload (runtime/wasm/workload.ts `runWorkload`, or a stand-in in tests). */
export type WorkloadRunner = (workload: Workload, options: RunOptions) => Promise<WorkloadResult>;

/** Options of {@link runWasmldr}. */
export interface WasmldrOptions {
  /** Frames from keepldr. */
  input: ReadableStream<Uint8Array>;
  /** Frames to keepldr. */
  output: WritableStream<Uint8Array>;
  /** Makes the evidence (through the guest report device: the TEE's, or the host channel). */
  evidence: EvidenceProvider;
  /** Runs the workload. */
  run: WorkloadRunner;
  /** Parses Enarx.toml text (runtime/wasm/config.ts `parseEnarxConfig`). */
  parseConfig?: (text: string) => EnarxConfig | Promise<EnarxConfig>;
  /** Directory of the compiled-module cache, if any. */
  cacheDir?: string;
  /**
   * Address to serve HTTPS on (default 127.0.0.1, port 0: any free one). A
   * kvm keep listens on 0.0.0.0:8443 inside its VM, reached through QEMU's
   * port forward.
   */
  listen?: { hostname: string; port: number };
  /** Writes a diagnostic line (default: standard error). */
  log?: (line: string) => void;
}

/** Why wasmldr stopped, and the workload's result when one ran. */
export interface WasmldrOutcome {
  /** The process exit status of wasmldr itself: 0 when a workload was served. */
  exitStatus: number;
  /** The workload's result, when one ran. */
  result?: WorkloadResult;
}

/** Bytes of output queued for the client before the workload's writes wait. */
export const OUTPUT_BUFFER = 1024 * 1024;

/** Run-time limit of a workload when keepmgr sets none: one day. */
export const DEFAULT_KEEP_TIMEOUT_MS = 24 * 60 * 60 * 1000;

const BEARER_RE = /^Bearer ([0-9a-fA-F]{64})$/;

/**
 * Starts making the keep's sealing key pair at once, while it waits for its
 * hello (a warm keep waits long). The pair is this keep's own and fresh;
 * the evidence binds it to the client's nonce only once hello has arrived.
 *
 * It also seeds Deno's TLS random generator now: aws-lc, which Deno's TLS
 * and WebCrypto use, gathers CPU jitter entropy the first time a process
 * asks it for randomness (about 30 ms of CPU, once), and the first to ask
 * would otherwise be the TLS handshake with the client, on the deploy's
 * critical path. A throwaway HMAC key (WebCrypto draws it from aws-lc; a
 * P-256 key pair from p256_keys.ts does not) asks first.
 */
function generateAhead(): Promise<SealingKeyPair> {
  crypto.subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, false, ["sign"]).catch(() => {});
  const generating = SealingKeyPair.generate();
  generating.catch(() => {}); // awaited by the caller
  return generating;
}

/** Step 4: reads hello from `first`, gets evidence over the nonce and `keys`, and sends it. */
async function attest(
  first: unknown,
  keys: SealingKeyPair,
  reader: FrameReader,
  writer: FrameWriter,
  options: WasmldrOptions,
): Promise<{ hello: HelloFrame; keys: SealingKeyPair }> {
  const hello = parseHelloFrame(first);
  const reportData = await computeReportData(hello.nonce, keys.publicKey);
  const evidence = await options.evidence(reportData, hello, {
    host: hostReportChannel(reader, writer),
  });
  await writer.write({ t: "evidence", evidence, sealing_key: keys.publicKey });
  return { hello, keys };
}

/** Runs wasmldr to completion over the frame channel; see the module comment. */
export async function runWasmldr(options: WasmldrOptions): Promise<WasmldrOutcome> {
  const log = options.log ?? ((line: string) => console.error(`wasmldr: ${line}`));
  const reader = new FrameReader(options.input, { peer: "keepldr" });
  const writer = new FrameWriter(options.output);
  const stop = new AbortController();
  let server: Deno.HttpServer | undefined;
  const generating = generateAhead();
  try {
    // Step 4: hello, key pair, evidence.
    const first = await reader.read();
    if (first === null) return { exitStatus: 0 }; // keepldr went away first
    const { hello, keys } = await attest(first, await generating, reader, writer, options);

    // Step 7: the sealed key.
    const { certPem, keyPem, token } = await receiveSealedKey(reader, keys, hello);

    // Step 8: HTTPS, one workload.
    const upload = new UploadGate(token);
    const serviceKey = new ServiceKey();
    const served = Promise.withResolvers<WorkloadResult>();
    // Settles when the one workload's response has reached the client (or failed to).
    const delivered = Promise.withResolvers<void>();
    const handler = (request: Request, info: Deno.ServeHandlerInfo) =>
      handleRequest(request, info.completed, {
        hello,
        upload,
        served,
        delivered,
        writer,
        options,
        stop: stop.signal,
        log,
        serviceKey,
      });
    server = serveTls(handler, { listen: options.listen, certPem, keyPem, log });
    await writer.write({ t: "listening", port: (server.addr as Deno.NetAddr).port });

    // Until the workload ends, a closed channel or an error frame stops the keep.
    const watch = watchChannel(reader);
    const ended = await Promise.race([served.promise, watch]);
    if (ended === "closed") {
      log("keepldr closed the channel; stopping");
      stop.abort();
      return { exitStatus: ExitStatus.unavailable };
    }
    const result = ended;
    // keepmgr may stop the keep as soon as it hears "exited": say it only once
    // the client has the whole output (or has gone), however slowly it reads;
    // only the keep's own time limit bounds the wait.
    await Promise.race([
      delivered.promise,
      delay(hello.limits.timeout_ms ?? DEFAULT_KEEP_TIMEOUT_MS),
    ]);
    // And once our end of the connection is closed, so that a forward that
    // keepmgr tears down on "exited" has already seen everything.
    await Promise.race([server.shutdown(), delay(2_000)]);
    await writer.write({ t: "exited", status: result.status, reason: result.reason });
    return { exitStatus: 0, result };
  } catch (error) {
    const code = error instanceof EnarxError ? error.code : "internal";
    const message = error instanceof Error ? error.message : String(error);
    log(message);
    await writer.write({ t: "error", code, message }).catch(() => {});
    return { exitStatus: error instanceof EnarxError ? error.exitStatus : ExitStatus.internal };
  } finally {
    stop.abort();
    // Let the last response (output stream or error) reach the client, but
    // not forever: the caller exits the process after this returns.
    if (server !== undefined) await Promise.race([server.shutdown(), delay(5_000)]);
    await writer.close();
    reader.close();
  }
}

/**
 * Step 7: reads the sealed-key frame, opens it with the keep's sealing key,
 * checks it was made for this keep and nonce, and returns the TLS
 * certificate and key it makes (PEM) with the client's upload token.
 */
async function receiveSealedKey(reader: FrameReader, keys: SealingKeyPair, hello: HelloFrame) {
  const frame = await nextFrame(reader);
  if (frame.t === "error") {
    throw new EnarxError(frame.code, `keepldr stopped the keep: ${frame.message}`, {
      exit: "unavailable",
    });
  }
  if (frame.t !== "sealed-key") {
    throw new EnarxError(
      "message-invalid",
      `Expected a "sealed-key" frame, got "${frame.t}"; see spec/protocol.md`,
      { exit: "protocol" },
    );
  }
  const plaintext = await keys.open(frame, { keepId: hello.keep, nonce: hello.nonce });
  const sealed = parseSealedKeyPlaintext(
    decodeCbor(plaintext, { what: "sealed-key plaintext" }),
  );
  plaintext.fill(0);
  if (sealed.keep !== hello.keep || !bytesEqual(sealed.nonce, hello.nonce)) {
    throw new EnarxError(
      "sealed-key-mismatch",
      `The sealed key names keep "${sealed.keep}" and another nonce, not this keep "${hello.keep}"; it was made for another deploy`,
      { exit: "verificationFailed" },
    );
  }
  const tlsKey = await importTlsKey(sealed.tls_key);
  const certPem = await makeKeepCertificate(tlsKey, hello.keep);
  const keyPem = pemFromDer(sealed.tls_key, "PRIVATE KEY");
  sealed.tls_key.fill(0);
  return { certPem, keyPem, token: sealed.token };
}

/** Step 8: serves HTTPS with the keep's certificate; a failed request is a CBOR 500. */
function serveTls(
  handler: Deno.ServeHandler,
  options: {
    listen?: { hostname: string; port: number };
    certPem: string;
    keyPem: string;
    log: (line: string) => void;
  },
): Deno.HttpServer {
  return Deno.serve({
    hostname: options.listen?.hostname ?? "127.0.0.1",
    port: options.listen?.port ?? 0,
    cert: options.certPem,
    key: options.keyPem,
    onListen() {},
    onError(error) {
      options.log(`request failed: ${error instanceof Error ? error.message : error}`);
      return new Response(
        new Uint8Array(encodeCbor(errorResponse("internal", "The keep failed"))),
        {
          status: 500,
          headers: { "content-type": CBOR_MEDIA_TYPE },
        },
      );
    },
  }, handler);
}

async function nextFrame(reader: FrameReader) {
  const value = await reader.read();
  if (value === null) {
    throw new EnarxError("channel-closed", "keepldr closed the channel before sending the key", {
      exit: "unavailable",
    });
  }
  return parseDownstreamFrame(value);
}

/** Resolves "closed" when the channel ends or carries an error frame. */
async function watchChannel(reader: FrameReader): Promise<"closed"> {
  try {
    while (true) {
      const value = await reader.read();
      if (value === null) return "closed";
      if (parseDownstreamFrame(value).t === "error") return "closed";
    }
  } catch {
    return "closed";
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const id = setTimeout(resolve, ms);
    Deno.unrefTimer(id);
  });
}

/** Admits exactly one request that presents the sealed token. */
class UploadGate {
  readonly #token: Uint8Array;
  #taken = false;

  constructor(token: Uint8Array) {
    this.#token = token;
  }

  /** "ok" once, for the right token; "unauthorized" or "taken" otherwise. */
  admit(authorization: string | null): "ok" | "unauthorized" | "taken" {
    const checked = this.check(authorization);
    if (checked === "ok") this.#taken = true;
    return checked;
  }

  /** What {@link admit} would answer, without taking the one upload. */
  check(authorization: string | null): "ok" | "unauthorized" | "taken" {
    if (this.#taken) return "taken";
    const match = BEARER_RE.exec(authorization ?? "");
    if (match === null) return "unauthorized";
    const presented = new Uint8Array(32);
    for (let i = 0; i < 32; i++) presented[i] = parseInt(match[1].slice(2 * i, 2 * i + 2), 16);
    if (!bytesEqual(presented, this.#token)) return "unauthorized";
    return "ok";
  }
}

function cborResponse(status: number, code: string, message: string): Response {
  return new Response(new Uint8Array(encodeCbor(errorResponse(code, message))), {
    status,
    headers: { "content-type": CBOR_MEDIA_TYPE },
  });
}

interface HandlerContext {
  hello: HelloFrame;
  upload: UploadGate;
  served: PromiseWithResolvers<WorkloadResult>;
  delivered: PromiseWithResolvers<void>;
  writer: FrameWriter;
  options: WasmldrOptions;
  stop: AbortSignal;
  log: (line: string) => void;
  /** The service key the client may ask for before its upload. */
  serviceKey: ServiceKey;
  /** The identity of the workload's tls sockets, once the upload chose it. */
  identity?: KeepIdentity;
}

async function handleRequest(
  request: Request,
  completed: Promise<void>,
  context: HandlerContext,
): Promise<Response> {
  const url = new URL(request.url);
  if (url.pathname === "/v1/service-key" && request.method === "POST") {
    return await serviceKeyResponse(request, context);
  }
  if (url.pathname !== "/v1/workload") {
    return cborResponse(404, "not-found", `No endpoint "${url.pathname}"; use POST /v1/workload`);
  }
  if (request.method !== "POST") {
    return cborResponse(405, "method-not-allowed", `Use POST /v1/workload, not ${request.method}`);
  }
  const admitted = context.upload.admit(request.headers.get("authorization"));
  if (admitted === "unauthorized") {
    await request.body?.cancel().catch(() => {});
    context.log("refused an upload without the sealed token");
    return cborResponse(
      401,
      "unauthorized",
      "This keep accepts a workload only with the upload token sealed to it",
    );
  }
  if (admitted === "taken") {
    await request.body?.cancel().catch(() => {});
    return cborResponse(409, "workload-taken", "This keep has already accepted its one workload");
  }

  // The one authenticated request: whatever happens now ends the keep.
  let workload: WorkloadRequest;
  try {
    const body = await readLimitedBody(request, {
      limit: MAX_WORKLOAD_REQUEST_SIZE,
      what: "The workload request",
      remedy: "send a smaller module",
    });
    workload = parseWorkloadRequest(decodeCbor(body, { what: "workload request" }));
  } catch (error) {
    const e = error instanceof EnarxError
      ? error
      : new EnarxError("workload-invalid", String(error), { exit: "dataError" });
    // The keep ends on this, and keepmgr then cuts the client's connection:
    // only once the client has the answer (413 names the upload limit).
    const end = () => context.served.reject(forHost(e));
    completed.then(end, end);
    return cborResponse(e.code === "cbor-too-large" ? 413 : 400, e.code, e.message);
  }
  let config: EnarxConfig | undefined;
  try {
    config = await acceptedConfig(workload, context);
  } catch (error) {
    const e = error instanceof EnarxError
      ? error
      : new EnarxError("config-invalid", String(error), { exit: "config" });
    context.served.reject(forHost(e));
    return cborResponse(400, e.code, e.message);
  }
  // Not awaited: the frame channel may be slower than the client, and the
  // writer keeps frames in order ("running" before "exited").
  context.writer.write({ t: "running" }).catch(() => {});
  if (workload.detach === true) return detachedResponse(workload, config, completed, context);
  // `completed` rejects when the client disconnects before the output has
  // all been delivered, even while the workload writes nothing: stop it then.
  const gone = new AbortController();
  completed.then(() => context.delivered.resolve(), () => {
    gone.abort();
    context.delivered.resolve();
  });
  return new Response(outputStream(workload, config, gone.signal, context), {
    status: 200,
    headers: { "content-type": CBOR_SEQ_MEDIA_TYPE },
  });
}

/**
 * The upload's Enarx.toml, checked as the keep must (sockets on nil keeps
 * only), and the service identity its tls sockets serve (`chain`).
 */
async function acceptedConfig(
  workload: WorkloadRequest,
  context: HandlerContext,
): Promise<EnarxConfig | undefined> {
  let config: EnarxConfig | undefined;
  if (workload.config !== null) {
    if (context.options.parseConfig === undefined) {
      throw new EnarxError("config-unsupported", "This keep cannot read Enarx.toml", {
        exit: "config",
      });
    }
    config = await context.options.parseConfig(workload.config);
    checkDeployedSockets(config, context.hello.backend);
  }
  context.identity = await context.serviceKey.identity(workload.chain);
  return config;
}

/**
 * POST /v1/service-key (with the sealed token, before the upload): makes the
 * keep's service key and answers its CSR and self-signed certificate
 * (service_key.ts). Bad names are 400; a second request 409.
 */
async function serviceKeyResponse(request: Request, context: HandlerContext): Promise<Response> {
  const checked = context.upload.check(request.headers.get("authorization"));
  if (checked !== "ok") {
    await request.body?.cancel().catch(() => {});
    return checked === "taken"
      ? cborResponse(409, "workload-taken", "This keep has already accepted its one workload")
      : cborResponse(401, "unauthorized", "A service key is made only for the sealed token");
  }
  try {
    const body = await readLimitedBody(request, {
      limit: 16 * 1024,
      what: "The service-key request",
      remedy: "send fewer names",
    });
    const asked = parseServiceKeyRequest(decodeCbor(body, { what: "service-key request" }));
    const made = await context.serviceKey.make(asked.names);
    return new Response(new Uint8Array(encodeCbor({ v: 1, ...made })), {
      status: 200,
      headers: { "content-type": CBOR_MEDIA_TYPE },
    });
  } catch (error) {
    const e = error instanceof EnarxError
      ? error
      : new EnarxError("service-key-invalid", String(error), { exit: "dataError" });
    return cborResponse(e.code === "service-key-taken" ? 409 : 400, e.code, e.message);
  }
}

/** Runs the requested workload; a workload that does not start ends as an `error` result. */
async function runRequested(
  request: WorkloadRequest,
  config: EnarxConfig | undefined,
  context: HandlerContext,
  io: { emit: (item: unknown, wait: boolean) => Promise<void>; signal: AbortSignal },
): Promise<WorkloadResult> {
  const limits = context.hello.limits;
  // listen sockets bind where wasmldr's HTTPS does (the keep's loopback; in a VM keep
  // the guest's interface, which only QEMU's forwards reach); keepmgr forwards host ports to them.
  const local = config === undefined
    ? undefined
    : keepLocalListens(config, { host: context.options.listen?.hostname });
  const onSocket = local === undefined || local.asked.size === 0
    ? undefined
    : servicesReporter(local.asked, (frame) => {
      context.writer.write(frame).catch(() => {});
    });
  try {
    return await context.options.run({
      module: request.module,
      name: "main.wasm",
      args: request.args,
      env: request.env,
      config: local?.config,
      limits: {
        // Always a deadline: it also arms the epoch interruption that
        // lets a disconnect or a stop end a workload that never yields.
        timeoutMs: limits.timeout_ms ?? DEFAULT_KEEP_TIMEOUT_MS,
        maxMemoryBytes: limits.memory,
        memoryLimitName: "keepmgr --keep-memory",
      },
    }, {
      stdin: request.stdin,
      stdout: (chunk) => io.emit({ t: "stdout", data: chunk.slice() }, true),
      stderr: (chunk) => io.emit({ t: "stderr", data: chunk.slice() }, true),
      cacheDir: context.options.cacheDir,
      signal: io.signal,
      onSocket,
      tls: context.identity === undefined ? undefined : { identity: context.identity },
    });
  } catch (error) {
    const e = error instanceof EnarxError ? error : undefined;
    // The message may quote the deployed module or Enarx.toml: it goes to the
    // client inside the keep's TLS, and the host's log gets only its code.
    context.log(`the workload did not start (${e?.code ?? "internal"}); the client has the reason`);
    return {
      status: e?.exitStatus ?? ExitStatus.internal,
      reason: "error" as WorkloadResult["reason"],
      message: error instanceof Error ? error.message : String(error),
    };
  }
}

/**
 * A detached workload: the client gets one `detached` item at once and may
 * go; the workload runs on, its output going to keepmgr in `output` frames
 * (awaited, so a chatty workload waits for the channel), until it ends or
 * keepldr stops the keep.
 */
function detachedResponse(
  request: WorkloadRequest,
  config: EnarxConfig | undefined,
  completed: Promise<void>,
  context: HandlerContext,
): Response {
  const settle = () => context.delivered.resolve();
  completed.then(settle, settle);
  const abort = new AbortController();
  const onStop = () => abort.abort();
  context.stop.addEventListener("abort", onStop, { once: true });
  const emit = async (item: unknown) => {
    const { t, data } = item as { t: "stdout" | "stderr"; data: Uint8Array };
    if (abort.signal.aborted) return;
    await context.writer.write({ t: "output", stream: t, data }).catch(() => abort.abort());
  };
  void (async () => {
    const result = await runRequested(request, config, context, { emit, signal: abort.signal });
    // Nobody else can tell the deployer why it did not start: the log can.
    if (result.message !== undefined && result.reason === ("error" as WorkloadResult["reason"])) {
      const line = new TextEncoder().encode(`enarx: ${result.message}\n`);
      await emit({ t: "stderr", data: line });
    }
    context.stop.removeEventListener("abort", onStop);
    context.served.resolve(result);
  })();
  return new Response(new Uint8Array(encodeCbor({ t: "detached" })), {
    status: 200,
    headers: { "content-type": CBOR_SEQ_MEDIA_TYPE },
  });
}

/** The last item of the output stream: how the workload ended. */
function exitItem(result: WorkloadResult): Record<string, unknown> {
  const exit: Record<string, unknown> = {
    t: "exit",
    status: result.status,
    reason: result.reason,
  };
  if (result.message !== undefined) exit.message = result.message;
  return exit;
}

/** Runs the workload, yielding its output as CBOR sequence items, then the exit item. */
function outputStream(
  request: WorkloadRequest,
  config: EnarxConfig | undefined,
  gone: AbortSignal,
  context: HandlerContext,
): ReadableStream<Uint8Array> {
  const abort = new AbortController();
  let open = true;
  let waiter: (() => void) | undefined;
  const wake = () => {
    const w = waiter;
    waiter = undefined;
    w?.();
  };
  const onStop = () => {
    abort.abort();
    wake();
  };
  context.stop.addEventListener("abort", onStop, { once: true });
  gone.addEventListener("abort", onStop, { once: true });
  // Output waits while more than OUTPUT_BUFFER bytes are queued for a slow
  // client (the runtime awaits each chunk), so a chatty workload cannot fill
  // the keep's memory.
  return new ReadableStream<Uint8Array>({
    start(controller) {
      const emit = async (item: unknown, wait: boolean) => {
        if (!open) return;
        try {
          controller.enqueue(encodeCbor(item));
        } catch {
          open = false;
          return;
        }
        while (wait && open && !abort.signal.aborted && (controller.desiredSize ?? 1) <= 0) {
          await new Promise<void>((resolve) => waiter = resolve);
        }
      };
      // Not awaited: the stream must be pulled while the workload runs.
      void (async () => {
        const result = await runRequested(request, config, context, {
          emit,
          signal: abort.signal,
        });
        // Stopped by the host (keepldr closed the channel): the workload did
        // not end by itself, so no exit status; the client asks keepmgr why.
        if (!context.stop.aborted) await emit(exitItem(result), false);
        context.stop.removeEventListener("abort", onStop);
        gone.removeEventListener("abort", onStop);
        if (open) {
          try {
            controller.close();
          } catch { /* cancelled */ }
        }
        context.served.resolve(result);
      })();
    },
    pull() {
      wake();
    },
    cancel() {
      // The client went away: stop the workload; its result still ends the keep.
      open = false;
      abort.abort();
      wake();
    },
  }, { highWaterMark: OUTPUT_BUFFER, size: (chunk) => chunk.byteLength });
}

/**
 * The error the host hears (log, error frame, keepmgr's listing) about a
 * refused workload: its code only. The message may quote the deployed
 * module or Enarx.toml, so it goes to the client alone, inside the keep's TLS.
 */
function forHost(error: EnarxError): EnarxError {
  return new EnarxError(
    error.code,
    `The client's workload was refused (${error.code}); the client was told why`,
    { exit: error.exitStatus === ExitStatus.config ? "config" : "dataError" },
  );
}
