/**
 * The client side of the deploy sequence (DESIGN.md, "The deploy sequence";
 * spec/protocol.md): create a keep, verify its evidence before anything else
 * leaves this machine, seal a one-use TLS key and upload token to the keep's
 * attested key, connect pinning that TLS key, upload the workload, stream
 * its output, and return its exit status. Every step is timed and reported
 * through `onStep`; every failure is an EnarxError naming the step.
 *
 * @module
 */
import { EnarxError, ExitStatus, type ExitStatusName } from "../errors.ts";
import { encodeCbor, readCborSequence } from "../protocol/cbor.ts";
import {
  CBOR_MEDIA_TYPE,
  type CreateKeepResponse,
  type Endpoint,
  HPKE_SUITE,
  parseErrorResponse,
  parseServiceKeyResponse,
  parseWorkloadOutput,
} from "../protocol/messages.ts";
import type { ServiceCa, ServiceCertificate } from "./service_ca.ts";
import { KeepmgrClient } from "./keepmgr_client.ts";
import { type EndpointWatch, watchEndpoints } from "./endpoints.ts";
import { computeReportData, freshNonce } from "../protocol/report_data.ts";
import { bytesEqualConstantTime } from "../bytes.ts";
import { sealToKeep } from "../protocol/sealing.ts";
import {
  connectPinned,
  generateTlsKey,
  keepHostname,
  makeKeepCertificate,
  pinningTrustProblem,
} from "../protocol/keep_tls.ts";
import { http1Request } from "./http1_client.ts";
import {
  checkUploadSize,
  describeBytes,
  type ModuleFile,
  type StreamedBody,
  workloadUploadBody,
} from "./workload_upload.ts";
import { MAX_WORKLOAD_REQUEST_SIZE } from "../protocol/messages.ts";

export type { ModuleFile } from "./workload_upload.ts";
import { backendByName } from "../backends/mod.ts";
import { readTrustedSimulator, recordTrustedSimulator } from "./trusted_simulators.ts";
import { DEFAULT_POLICY, type Policy } from "../attestation/policy.ts";
import type { VerificationResult } from "../attestation/result.ts";
import { TCB_NOT_EVALUATED, verifyEvidence } from "../attestation/verify.ts";

/** The client's steps, each covering one or more of DESIGN.md's ten. */
export const DEPLOY_STEPS = [
  { id: "create", design: "1-4", title: "Create a keep (keepmgr starts keepldr, keep, wasmldr)" },
  { id: "verify", design: "5", title: "Verify the keep's evidence against the policy" },
  { id: "seal", design: "6", title: "Make a one-use TLS key and token, seal them to the keep" },
  { id: "deliver", design: "7-8", title: "Deliver the sealed key; the keep opens it and listens" },
  { id: "connect", design: "9", title: "Connect to the keep, pinning the one-use key" },
  {
    id: "certify",
    design: "9",
    title: "Have the keep make its service key; certify it (--ca) or take its self-signed one",
  },
  { id: "upload", design: "9", title: "Upload module, config, arguments, environment, stdin" },
  { id: "run", design: "10", title: "Run the workload, streaming its output and exit status" },
] as const;

/** The id of a client step. */
export type DeployStepId = typeof DEPLOY_STEPS[number]["id"];

/** One finished (or failed) step with its timing. */
export interface DeployStepRecord {
  /** The step's id. */
  id: DeployStepId;
  /** Which of DESIGN.md's ten steps it covers, e.g. "1-4". */
  design: string;
  /** What the step does. */
  title: string;
  /** Milliseconds it took. */
  ms: number;
  /** What it found, for a person (keep id, where to connect, ...). */
  detail?: string;
  /** True when the step failed. */
  failed?: boolean;
}

/** Progress reported while deploying. */
export type DeployEvent =
  | { kind: "step-start"; id: DeployStepId; design: string; title: string }
  | { kind: "step-end"; step: DeployStepRecord }
  | { kind: "warning"; message: string }
  | { kind: "endpoint"; endpoint: DeployEndpoint };

/** An endpoint of a deployed service; a `tls` one with its certificate's fingerprint. */
export interface DeployEndpoint extends Endpoint {
  /**
   * `tls`: SHA-256 of the certificate the keep serves (hex), as the keep told
   * the client over the attested channel (never keepmgr's word).
   */
  fingerprint?: string;
}

/** The keep's service identity (`prot = "tls"` sockets) a deploy asks for. */
export interface DeployTls {
  /** The certificate's names (`--service-name`). */
  names: string[];
  /** The deployer's CA (`--ca`, `--ca-key`); none: the keep's self-signed certificate. */
  ca?: ServiceCa;
  /** How many days the CA's certificate is valid (`--cert-days`; default 7). */
  days?: number;
}

/** What to deploy. */
export interface DeployWorkload {
  /** The module's bytes (binary or text), or its file (read while it is uploaded). */
  module: Uint8Array | ModuleFile;
  /** Enarx.toml text, or null. */
  config: string | null;
  /** Arguments after the program name. */
  args: string[];
  /** Environment variables. */
  env: Record<string, string>;
  /** Standard input. */
  stdin: Uint8Array;
  /** The number of `listen` sockets in its config: their endpoints are awaited. */
  services?: number;
  /**
   * Return once the workload runs (and its endpoints are known), leaving the
   * keep running; its output then goes to keepmgr (`enarx keep logs`).
   */
  detach?: boolean;
  /**
   * Have the keep make a service key for its `prot = "tls"` sockets (before
   * the upload) and certify it with the deployer's CA, or take its self-signed one.
   */
  tls?: DeployTls;
}

/** Options of {@link deploy}. */
export interface DeployOptions {
  /** The keepmgr URL, e.g. https://host:8443. */
  keepmgr: string;
  /** The backend wanted (default `auto`). */
  backend?: string;
  /** The attestation policy (default: refuse debug, trust no simulated root). */
  policy?: Policy;
  /** CRLs (AMD's, Intel's) the keep's certificate chain is checked against; none: not checked. */
  crls?: Uint8Array[];
  /**
   * Intel collateral (TCB Info, QE Identity JSON) for TDX and SGX keeps. A
   * quote without it fails unless the policy says `require_collateral = false`.
   */
  collateral?: Uint8Array[];
  /**
   * Accept evidence from a simulated platform by trust on first use: the
   * root recorded for this keepmgr in the user's config
   * (trusted_simulators.ts), or, when none is, the evidence's root, which is
   * then recorded (with a loud warning). Insecure; warned on every run.
   */
  allowSimulated?: boolean;
  /**
   * The SHA-256 (hex or `sha256:<hex>`) of the simulated platform root to
   * trust, as the keepmgr prints it; overrides {@link allowSimulated}.
   */
  trustSimulated?: string;
  /** The trust-on-first-use file (default: trustedSimulatorsPath()). */
  trustedSimulatorsFile?: string;
  /**
   * The measurement to expect (48 bytes); default: the policy's list, else
   * the one this release computes for the keep's backend.
   */
  measurement?: Uint8Array;
  /** PEM roots that authenticate the keepmgr's TLS; none: not authenticated. */
  keepmgrCaCerts?: string[];
  /** The keepmgr operator's bearer token (creating a keep needs it). */
  keepmgrToken?: string;
  /** Deadline for the whole deploy in milliseconds; past it the keep is deleted, status 124. */
  timeoutMs?: number;
  /** Progress callback. */
  onStep?: (event: DeployEvent) => void;
  /** Told how many creates are ahead while keepmgr queues this one (0: being created). */
  onQueued?: (ahead: number, creating: boolean) => void;
  /** Receives the workload's standard output as it arrives. */
  onStdout?: (chunk: Uint8Array) => void | Promise<void>;
  /** Receives the workload's standard error as it arrives. */
  onStderr?: (chunk: Uint8Array) => void | Promise<void>;
  /** Aborts the deploy (the keep is deleted). */
  signal?: AbortSignal;
  /** The keep's upload limit in bytes (default the protocol's MAX_WORKLOAD_REQUEST_SIZE). */
  maxUploadBytes?: number;
}

/** The outcome of a deploy. */
export interface DeployResult {
  /** The keep's id. */
  keep: string;
  /** The backend that ran it. */
  backend: string;
  /** The verification result of step 5. */
  verification: VerificationResult;
  /** True when the evidence was simulated (and the user allowed it). */
  simulated: boolean;
  /** Warnings shown during the deploy. */
  warnings: string[];
  /**
   * What the verification did not cover, for a person: "no CRLs given:
   * revocation not checked", "TCB not evaluated (no collateral)".
   */
  notices: string[];
  /** Every step with its timing, in order. */
  steps: DeployStepRecord[];
  /** Total milliseconds. */
  totalMs: number;
  /** The workload's exit status (enarx's statuses for traps, timeouts, limits). */
  status: number;
  /** Why it ended: exit, trap, timeout, fuel, memory, error. */
  reason: string;
  /** Detail for a person, when not a plain exit. */
  message?: string;
  /** Where the workload's `listen` sockets are reached (empty: none). */
  endpoints: DeployEndpoint[];
  /** The keep's service certificate, when {@link DeployWorkload.tls} asked for one. */
  certificate?: ServiceCertificate;
  /** True when the deploy returned with the workload still running (`detach`). */
  detached?: boolean;
}

/** A deploy that failed at a step; `step` names it. */
export class DeployError extends EnarxError {
  /** The step that failed. */
  readonly step: DeployStepId;
  /** The steps done so far, the failed one last. */
  steps: DeployStepRecord[] = [];
  /** The failure without the step prefix. */
  readonly reason: string;
  /** Makes an error for `step` with a stable code. */
  constructor(
    step: DeployStepId,
    code: string,
    message: string,
    options: { exit?: ExitStatusName; cause?: unknown } = {},
  ) {
    const design = DEPLOY_STEPS.find((s) => s.id === step)!.design;
    super(code, `Deploy step ${design} (${step}) failed: ${message}`, options);
    this.name = "DeployError";
    this.reason = message;
    this.step = step;
  }
}

/** The loud warning printed on every run that accepted simulated evidence (Enarx #1850). */
export const SIMULATED_WARNING =
  "WARNING: the keep's evidence comes from the SIMULATED SNP platform (snp-sim). It proves " +
  "nothing about hardware: the host can read and change the workload, its key and its " +
  "output. Accepted only because its root's fingerprint was trusted (--trust-simulated, " +
  "trust_simulated_root, or --insecure-allow-simulated on first use). Never deploy secrets " +
  "this way";

function wrap(step: DeployStepId, error: unknown): DeployError {
  if (error instanceof DeployError) return error;
  if (error instanceof EnarxError) {
    const names = Object.entries(ExitStatus) as [ExitStatusName, number][];
    const exit = names.find(([, v]) => v === error.exitStatus)?.[0] ?? "internal";
    return new DeployError(step, error.code, error.message, { exit, cause: error });
  }
  const text = error instanceof Error ? error.message : String(error);
  return new DeployError(step, "internal", text, { exit: "internal", cause: error });
}

/**
 * One deploy in progress: times each step and reports it, collects warnings,
 * and turns the deadline (`timeoutMs`) and the caller's signal into one abort
 * that every network wait is raced against.
 */
class DeployRun {
  readonly options: DeployOptions;
  readonly client: KeepmgrClient;
  readonly started = performance.now();
  readonly steps: DeployStepRecord[] = [];
  readonly warnings: string[] = [];
  readonly abort = new AbortController();
  timedOut = false;
  /** The step under way (the one a failure is blamed on). */
  current: DeployStepId = "create";
  /** The keep, once keepmgr created it (deleted on failure). */
  keep?: string;
  #stepStart = 0;
  #timer?: ReturnType<typeof setTimeout>;
  #onOuterAbort = () => this.abort.abort();

  constructor(options: DeployOptions) {
    this.options = options;
    this.#timer = options.timeoutMs === undefined ? undefined : setTimeout(() => {
      this.timedOut = true;
      this.abort.abort();
    }, options.timeoutMs);
    options.signal?.addEventListener("abort", this.#onOuterAbort, { once: true });
    this.client = new KeepmgrClient(options.keepmgr, {
      caCerts: options.keepmgrCaCerts,
      token: options.keepmgrToken,
    });
  }

  emit(event: DeployEvent): void {
    this.options.onStep?.(event);
  }

  warn(message: string): void {
    this.warnings.push(message);
    this.emit({ kind: "warning", message });
  }

  begin(id: DeployStepId): void {
    const spec = DEPLOY_STEPS.find((s) => s.id === id)!;
    this.current = id;
    this.#stepStart = performance.now();
    this.emit({ kind: "step-start", id, design: spec.design, title: spec.title });
  }

  end(detail?: string, failed = false): void {
    const spec = DEPLOY_STEPS.find((s) => s.id === this.current)!;
    const record: DeployStepRecord = {
      id: this.current,
      design: spec.design,
      title: spec.title,
      ms: performance.now() - this.#stepStart,
    };
    if (detail !== undefined) record.detail = detail;
    if (failed) record.failed = true;
    this.steps.push(record);
    this.emit({ kind: "step-end", step: record });
  }

  /** `work`, or the abort error as soon as the deploy is aborted. */
  async guard<T>(work: Promise<T>): Promise<T> {
    if (this.abort.signal.aborted) throw this.abortError();
    const aborted = new Promise<never>((_, reject) => {
      this.abort.signal.addEventListener("abort", () => reject(this.abortError()), { once: true });
    });
    aborted.catch(() => {});
    return await Promise.race([work, aborted]);
  }

  abortError(): EnarxError {
    return this.timedOut
      ? new EnarxError(
        "deploy-timeout",
        `The deploy did not finish within ${this.options.timeoutMs} ms (--timeout)`,
        { exit: "timeout" },
      )
      : new EnarxError("deploy-aborted", "The deploy was interrupted", { exit: "timeout" });
  }

  /** Stops the deadline and forgets the caller's signal. */
  dispose(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.options.signal?.removeEventListener("abort", this.#onOuterAbort);
  }
}

/**
 * Deploys a workload through a keepmgr and returns how it ended. Throws
 * DeployError naming the failed step; a deploy past its deadline returns
 * status 124 (reason `timeout`) when the workload was running, and throws
 * `deploy-timeout` (exit 124) before that. The keep is deleted on every
 * failure.
 */
export async function deploy(
  workload: DeployWorkload,
  options: DeployOptions,
): Promise<DeployResult> {
  // Before anything leaves the client: a trust store that could vouch for
  // an impostor keep would make the pin meaningless.
  const trustProblem = pinningTrustProblem();
  if (trustProblem !== undefined) {
    throw new EnarxError("tls-trust-store", `Refusing to deploy: ${trustProblem}`, {
      exit: "config",
    });
  }
  // Before a keep is created: a module the keep would refuse costs it nothing.
  let upload = await workloadUploadBody(workload);
  checkUploadSize(upload, options.maxUploadBytes);
  const run = new DeployRun(options);
  let finished = false;
  try {
    const { created, nonce } = await createKeep(run);
    const verification = await verifyStep(run, created, nonce);
    const sealed = await sealStep(run, created, nonce);
    const address = await deliverStep(run, created.keep, sealed.sealed);
    let tls = await connectStep(run, created.keep, address, sealed.anchorPem);
    let certificate: ServiceCertificate | undefined;
    if (workload.tls !== undefined) {
      const pinned = { keepId: created.keep, token: sealed.token, address, sealed };
      ({ tls, certificate } = await certifyStep(run, tls, { pinned, tls: workload.tls }));
      if (certificate.issued) {
        upload = await workloadUploadBody({ ...workload, chain: certificate.chain });
        checkUploadSize(upload, options.maxUploadBytes);
      }
    }
    const keep = { tls, keepId: created.keep, token: sealed.token };
    const response = await uploadStep(run, keep, upload);
    const watcher = endpointWatcher(run, created.keep, {
      count: workload.services ?? 0,
      certificate,
    });
    const exit = workload.detach === true
      ? await detachStep(run, { tls, keepId: created.keep, body: response.chunks() }, watcher)
      : await runStep(run, { tls, keepId: created.keep, body: response.chunks() });
    watcher.stop();
    finished = true;
    const result: DeployResult = {
      keep: created.keep,
      backend: created.backend,
      verification,
      simulated: verification.simulated,
      warnings: run.warnings,
      notices: verificationNotices(verification, options),
      steps: run.steps,
      totalMs: performance.now() - run.started,
      status: exit.status,
      reason: exit.reason,
      endpoints: watcher.endpoints,
    };
    if (certificate !== undefined) result.certificate = certificate;
    if (exit.message !== undefined) result.message = exit.message;
    if (workload.detach === true) result.detached = true;
    return result;
  } catch (error) {
    const failure = wrap(run.current, run.abort.signal.aborted ? run.abortError() : error);
    run.end(failure.reason, true);
    failure.steps = run.steps;
    throw failure;
  } finally {
    run.dispose();
    if (!finished && run.keep !== undefined) {
      await run.client.deleteKeep(run.keep).catch(() => {});
    }
  }
}

/** Steps 1-4 of spec/protocol.md: ask keepmgr for a keep, with a fresh nonce. */
async function createKeep(
  run: DeployRun,
): Promise<{ created: CreateKeepResponse; nonce: Uint8Array }> {
  run.begin("create");
  const nonce = freshNonce();
  const onQueued = run.options.onQueued;
  const created = await run.guard(
    run.client.createKeep(run.options.backend ?? "auto", nonce, {
      onQueued: onQueued && ((q) => onQueued(q.ahead, q.creating)),
    }),
  );
  run.keep = created.keep;
  keepHostname(created.keep); // a keep id must be a DNS label
  if (created.suite !== HPKE_SUITE) {
    throw new EnarxError(
      "suite-unsupported",
      `The keep offers sealing suite "${created.suite}", not "${HPKE_SUITE}"`,
      { exit: "protocol" },
    );
  }
  run.end(`keep ${created.keep} on ${created.backend}`);
  return { created, nonce };
}

/** Step 5 of spec/protocol.md: verify the evidence before anything else leaves this machine. */
async function verifyStep(
  run: DeployRun,
  created: CreateKeepResponse,
  nonce: Uint8Array,
): Promise<VerificationResult> {
  run.begin("verify");
  const verification = await verifyKeep(created, nonce, run);
  if (verification.simulated) run.warn(SIMULATED_WARNING);
  if (verification.claims.debug === true) {
    run.warn("WARNING: the keep allows debugging; the host can read its memory");
  }
  run.end(describeVerification(verification, run.options));
  return verification;
}

/** What step 6 made: the sealed payload, and what the client keeps of it. */
interface SealedDelivery {
  /** The HPKE-sealed TLS key and token. */
  sealed: { enc: Uint8Array; ct: Uint8Array };
  /** The certificate the keep's TLS must chain to (the pin). */
  anchorPem: string;
  /** The one-use upload token. */
  token: Uint8Array;
}

/**
 * Step 6 of spec/protocol.md: a one-use TLS key and upload token, sealed to
 * the attested key and bound to the keep id and the nonce.
 */
async function sealStep(
  run: DeployRun,
  created: CreateKeepResponse,
  nonce: Uint8Array,
): Promise<SealedDelivery> {
  run.begin("seal");
  const keepId = created.keep;
  const tlsKey = await generateTlsKey();
  const anchorPem = await makeKeepCertificate(tlsKey, keepId, { serial: "01" });
  const token = crypto.getRandomValues(new Uint8Array(32));
  const plaintext = encodeCbor({ v: 1, keep: keepId, nonce, tls_key: tlsKey.pkcs8, token });
  const sealed = await sealToKeep(created.sealing_key, plaintext, { keepId, nonce });
  plaintext.fill(0);
  run.end(`HPKE ${HPKE_SUITE}, ${sealed.ct.length} bytes sealed`);
  return { sealed, anchorPem, token };
}

/**
 * Steps 7-8 of spec/protocol.md: deliver the sealed key through keepmgr; the
 * keep opens it, makes its certificate and listens. Returns where to connect.
 */
async function deliverStep(
  run: DeployRun,
  keepId: string,
  sealed: { enc: Uint8Array; ct: Uint8Array },
): Promise<{ host: string; port: number }> {
  run.begin("deliver");
  const delivered = await run.guard(run.client.deliverKey(keepId, sealed));
  const host = connectHost(delivered.connect.host, run.client.url);
  run.end(`keep listens; connect to ${host}:${delivered.connect.port}`);
  return { host, port: delivered.connect.port };
}

/**
 * Step 9 of spec/protocol.md, first half: connect to the keep, pinning the
 * one-use key. The connection is closed as soon as the deploy is aborted.
 */
async function connectStep(
  run: DeployRun,
  keepId: string,
  address: { host: string; port: number },
  anchorPem: string,
): Promise<Deno.TlsConn> {
  run.begin("connect");
  const tls = await run.guard(
    connectPinned(address.host, address.port, { keepId, anchorPem, signal: run.abort.signal }),
  );
  run.end(`TLS to ${keepHostname(keepId)}, certificate signed by the pinned key`);
  run.abort.signal.addEventListener("abort", () => closeQuietly(tls), { once: true });
  return tls;
}

/** Warns (once per endpoint) when a client could not check the endpoint's host by name. */
function warnUnnamedHost(run: DeployRun, endpoint: DeployEndpoint, cert: ServiceCertificate) {
  const host = endpoint.host.toLowerCase();
  const named = cert.names.some((n) =>
    n === host ||
    (n.startsWith("*.") && host.endsWith(n.slice(1)) && !host.slice(0, -n.length + 1).includes("."))
  );
  const message = `The certificate of endpoint "${endpoint.name}" does not name its host ` +
    `"${endpoint.host}" (it names ${cert.names.join(", ")}); clients that check names will ` +
    `refuse it: deploy with --service-name ${endpoint.host}`;
  if (!named && !run.warnings.includes(message)) run.warn(message);
}

/** What {@link certifyStep} needs to reach the keep again. */
interface PinnedKeep {
  keepId: string;
  token: Uint8Array;
  address: { host: string; port: number };
  sealed: { anchorPem: string };
}

/**
 * Step 9, between connecting and uploading (only for tls sockets): ask the
 * keep, over the pinned connection, to make its service key (POST
 * /v1/service-key); check the CSR and self-signed certificate it answers;
 * issue a certificate with the deployer's CA, or take the self-signed one.
 * Returns a fresh pinned connection for the upload (HTTP here is one
 * request per connection) and the certificate the keep will serve.
 */
async function certifyStep(
  run: DeployRun,
  tls: Deno.TlsConn,
  { pinned, tls: wanted }: { pinned: PinnedKeep; tls: DeployTls },
): Promise<{ tls: Deno.TlsConn; certificate: ServiceCertificate }> {
  run.begin("certify");
  const response = await run.guard(http1Request(tls, {
    method: "POST",
    path: "/v1/service-key",
    host: keepHostname(pinned.keepId),
    headers: {
      "authorization": `Bearer ${pinned.token.toHex()}`,
      "content-type": CBOR_MEDIA_TYPE,
    },
    body: encodeCbor({ v: 1, names: wanted.names }),
  }));
  if (response.status !== 200) throw await keepRefusal(response.status, response.body);
  const { decodeCbor } = await import("../protocol/cbor.ts");
  const body = new Uint8Array(await run.guard(new Response(response.body).arrayBuffer()));
  closeQuietly(tls);
  const answer = parseServiceKeyResponse(decodeCbor(body, { what: "service-key response" }));
  // Loaded only here: service_ca.ts makes certificates with @peculiar/x509,
  // ~90 ms of CPU to load, which a deploy without service keys never pays.
  const { checkServiceKeyAnswer, issueServiceCertificate } = await import("./service_ca.ts");
  const { csr } = await checkServiceKeyAnswer(answer);
  const chain = wanted.ca === undefined
    ? [answer.certificate]
    : await issueServiceCertificate(wanted.ca, csr, { names: wanted.names, days: wanted.days });
  const { sha256Fingerprint } = await import("../der_reader.ts");
  // Loaded only here: certificate_names.ts needs node:net (~20 ms of CPU to load).
  const { serviceNames } = await import("../wasm/certificate_names.ts");
  const names = serviceNames(wanted.names).map((n) => n.value);
  const certificate: ServiceCertificate = {
    fingerprint: await sha256Fingerprint(chain[0]),
    names,
    issued: wanted.ca !== undefined,
    chain,
  };
  const next = await connectAgain(run, pinned);
  const how = certificate.issued ? "issued by the deployer's CA" : "self-signed";
  run.end(`${how} for ${names.join(", ")}, sha256 ${certificate.fingerprint}`);
  return { tls: next, certificate };
}

/** A second pinned connection to the keep (the first carried the service-key request). */
async function connectAgain(run: DeployRun, pinned: PinnedKeep): Promise<Deno.TlsConn> {
  const tls = await run.guard(connectPinned(pinned.address.host, pinned.address.port, {
    keepId: pinned.keepId,
    anchorPem: pinned.sealed.anchorPem,
    signal: run.abort.signal,
  }));
  run.abort.signal.addEventListener("abort", () => closeQuietly(tls), { once: true });
  return tls;
}

/** Closes a connection that may be closed already. */
function closeQuietly(tls: Deno.TlsConn): void {
  try {
    tls.close();
  } catch { /* closed */ }
}

/** The keep's connection and what authenticates the client to it. */
interface KeepConnection {
  tls: Deno.TlsConn;
  keepId: string;
  token: Uint8Array;
}

/**
 * Step 9 of spec/protocol.md, second half: upload the module, its
 * configuration, arguments, environment and standard input with the sealed
 * token. Returns the keep's 200 reply, whose body streams the output.
 */
async function uploadStep(
  run: DeployRun,
  keep: KeepConnection,
  body: StreamedBody,
) {
  run.begin("upload");
  const response = await run.guard(http1Request(keep.tls, {
    method: "POST",
    path: "/v1/workload",
    host: keepHostname(keep.keepId),
    headers: {
      "authorization": `Bearer ${keep.token.toHex()}`,
      "content-type": CBOR_MEDIA_TYPE,
      "accept": "application/cbor-seq",
    },
    body,
  }));
  if (response.status !== 200) {
    throw await keepRefusal(response.status, response.body, run.options.maxUploadBytes);
  }
  run.end(`${body.length} bytes accepted`);
  return response;
}

/** How the workload ended. */
interface WorkloadExit {
  status: number;
  reason: string;
  message?: string;
}

/**
 * Step 10 of spec/protocol.md: stream the workload's output until its exit
 * item. Past the deadline the workload counts as timed out (status 124) and
 * its keep is deleted.
 */
async function runStep(
  run: DeployRun,
  keep: { tls: Deno.TlsConn; keepId: string; body: AsyncIterable<Uint8Array> },
): Promise<WorkloadExit> {
  run.begin("run");
  let exit: WorkloadExit | undefined;
  try {
    exit = await readOutput(run, keep.body);
  } catch (error) {
    if (run.abort.signal.aborted && run.timedOut) {
      exit = {
        status: ExitStatus.timeout,
        reason: "timeout",
        message:
          `The workload ran past --timeout (${run.options.timeoutMs} ms); the keep was stopped`,
      };
    } else if (run.abort.signal.aborted) {
      throw run.abortError();
    } else {
      throw await lostWithReason(run.client, keep.keepId, error);
    }
  } finally {
    closeQuietly(keep.tls);
  }
  if (exit === undefined) {
    const why = await keepmgrReason(run.client, keep.keepId);
    throw new EnarxError(
      reasonCode(why) ?? "keep-failed",
      `The keep's output ended without an exit status${why}`,
      { exit: "unavailable" },
    );
  }
  run.end(`status ${exit.status} (${exit.reason})`);
  if (exit.reason === "timeout" && run.timedOut) {
    await run.client.deleteKeep(keep.keepId).catch(() => {});
  }
  return exit;
}

/**
 * Waits for the keep's endpoints, reporting each as an `endpoint` event; a
 * `tls` one carries the fingerprint of `certificate`, and a host the
 * certificate does not name is warned about.
 */
function endpointWatcher(
  run: DeployRun,
  keepId: string,
  { count, certificate }: { count: number; certificate?: ServiceCertificate },
): EndpointWatch {
  // A keepmgr that forwards on all addresses is reached at the host the client used.
  const show = async (id: string) => {
    const shown = await run.client.showKeep(id);
    const endpoints = shown.endpoints?.map((e) => {
      const endpoint: DeployEndpoint = { ...e, host: connectHost(e.host, run.client.url) };
      if (e.prot === "tls" && certificate !== undefined) {
        endpoint.fingerprint = certificate.fingerprint;
        if (certificate.issued) warnUnnamedHost(run, endpoint, certificate);
      }
      return endpoint;
    });
    return endpoints === undefined ? shown : { ...shown, endpoints };
  };
  return watchEndpoints(show, keepId, {
    count,
    onEndpoint: (endpoint) => run.emit({ kind: "endpoint", endpoint }),
  });
}

/**
 * Step 10, detached: read the keep's one `detached` item, then wait until
 * keepmgr lists every endpoint; the keep runs on. A keep that ended first is
 * an error with keepmgr's reason (`no-free-port` when it had no port).
 */
async function detachStep(
  run: DeployRun,
  keep: { tls: Deno.TlsConn; keepId: string; body: AsyncIterable<Uint8Array> },
  watcher: EndpointWatch,
): Promise<WorkloadExit> {
  run.begin("run");
  let exit: WorkloadExit | undefined;
  try {
    exit = await run.guard(readOutput(run, keep.body));
  } finally {
    closeQuietly(keep.tls);
  }
  if (exit?.reason !== "detached") {
    throw new EnarxError(
      "keep-not-detached",
      `The keep did not detach the workload${
        exit === undefined ? "" : ` (it ended: ${exit.reason})`
      }; is it an older enarx?`,
      { exit: "protocol" },
    );
  }
  const outcome = await run.guard(watcher.done);
  if (outcome.kind === "ended") {
    const why = outcome.keep.reason === undefined ? "" : `: keepmgr says "${outcome.keep.reason}"`;
    throw new EnarxError(
      reasonCode(why) ?? "keep-failed",
      `The keep ${outcome.keep.state} before all its services were reachable${why}`,
      { exit: "unavailable" },
    );
  }
  run.end(`detached; ${watcher.endpoints.length} endpoint(s)`);
  return exit;
}

/** Hands stdout and stderr items to the callbacks; returns the exit item, if one came. */
async function readOutput(
  run: DeployRun,
  body: AsyncIterable<Uint8Array>,
): Promise<WorkloadExit | undefined> {
  for await (const value of readCborSequence(body, { what: "keep output" })) {
    const item = parseWorkloadOutput(value);
    if (item.t === "stdout") await run.options.onStdout?.(item.data);
    else if (item.t === "stderr") await run.options.onStderr?.(item.data);
    else if (item.t === "detached") return { status: 0, reason: "detached" };
    else return item;
  }
  return undefined;
}

/**
 * The measurements to expect: the caller's, else the policy's, else the
 * one this release computes for the keep's backend (the registry's
 * `measurement()`, cached by it after the first computation).
 */
async function expectedMeasurements(
  backend: string,
  options: DeployOptions,
): Promise<{ measurements: Uint8Array[]; release: boolean }> {
  if (options.measurement !== undefined) {
    return { measurements: [options.measurement], release: false };
  }
  const listed = options.policy?.measurements;
  if (listed !== undefined) return { measurements: listed, release: false };
  const computed = await backendByName(backend)?.measurement();
  if (computed === undefined) {
    throw new EnarxError(
      "measurement-unknown",
      `This enarx cannot compute the measurement of a ${backend} keep; give it with ` +
        `--measurement HEX or a --policy that lists measurements`,
      { exit: "verificationFailed" },
    );
  }
  return { measurements: [computed], release: true };
}

/** Which simulated roots to trust, and whether the first one seen may be (TOFU). */
async function simulatorTrust(
  options: DeployOptions,
): Promise<{ roots: string[]; firstUse: boolean; recorded?: string }> {
  if (options.trustSimulated !== undefined) {
    return { roots: [options.trustSimulated], firstUse: false };
  }
  if (!options.allowSimulated) return { roots: [], firstUse: false };
  const path = { path: options.trustedSimulatorsFile };
  const recorded = await readTrustedSimulator(options.keepmgr, path);
  return recorded === undefined
    ? { roots: [], firstUse: true }
    : { roots: [recorded], firstUse: false, recorded };
}

/** Runs the verifier; evidence it cannot read is an attestation failure. */
async function verifyOnce(
  evidence: Uint8Array,
  { policy, simulatorRoots, deploy }: {
    policy: Policy;
    simulatorRoots: string[];
    deploy: DeployOptions;
  },
): Promise<VerificationResult> {
  try {
    return await verifyEvidence(evidence, {
      policy,
      at: new Date(),
      simulatorRoots,
      crls: deploy.crls,
      collateral: deploy.collateral,
      requireCollateral: true,
    });
  } catch (cause) {
    const text = cause instanceof Error ? cause.message : String(cause);
    throw new EnarxError(
      "attestation-failed",
      `The keep's evidence cannot be read: ${text}; the keep or the host is broken or hostile`,
      { exit: "verificationFailed", cause },
    );
  }
}

/** The evidence's root fingerprint (hex) when the root check is the only one that failed. */
function onlyRootUntrusted(result: VerificationResult): string | undefined {
  const failed = result.checks.filter((c) => !c.ok);
  const root = (result.claims as { chain?: { rootSha256?: string | null } }).chain?.rootSha256;
  if (failed.length !== 1 || failed[0].id !== "root" || typeof root !== "string") return undefined;
  return root;
}

/** Step 5: the evidence, the report-data binding, the measurement and the policy. */
async function verifyKeep(
  created: CreateKeepResponse,
  nonce: Uint8Array,
  run: DeployRun,
): Promise<VerificationResult> {
  const options = run.options;
  const base = options.policy ?? DEFAULT_POLICY;
  const reportData = await computeReportData(nonce, created.sealing_key);
  const expected = await expectedMeasurements(created.backend, options);
  const policy: Policy = { ...base, reportData, measurements: expected.measurements };
  const trust = await simulatorTrust(options);
  let result = await verifyOnce(created.evidence, {
    policy,
    simulatorRoots: trust.roots,
    deploy: options,
  });
  const seen = onlyRootUntrusted(result);
  if (trust.firstUse && seen !== undefined) {
    result = await verifyOnce(created.evidence, {
      policy,
      simulatorRoots: [seen],
      deploy: options,
    });
    if (result.ok) {
      const file = await recordTrustedSimulator(options.keepmgr, seen, {
        path: options.trustedSimulatorsFile,
      });
      run.warn(
        `WARNING: trusting the simulated platform root sha256:${seen} of ${options.keepmgr} ` +
          `on first use, recorded in "${file}"; from now on only this root is accepted from ` +
          `this keepmgr. Compare it with the fingerprint "enarx keepmgr" printed at start`,
      );
    }
  }
  checkVerification(result, { options, expected, trust, seen, backend: created.backend });
  // Belt and braces: the binding must be exactly ours whatever the verifier did.
  const claimed = result.claims.reportData;
  if (!(claimed instanceof Uint8Array) || !bytesEqualConstantTime(claimed, reportData)) {
    throw new EnarxError(
      "report-data-mismatch",
      "The evidence's report data does not bind this deploy's nonce and the keep's sealing key",
      { exit: "verificationFailed" },
    );
  }
  return result;
}

/** The note a deploy without CRLs prints and records. */
export const NO_CRLS_NOTICE = "no CRLs given: revocation not checked";

/** What the verification did not cover (see {@link DeployResult.notices}). */
export function verificationNotices(
  result: VerificationResult,
  options: { crls?: readonly Uint8Array[] },
): string[] {
  const notices: string[] = [];
  if ((options.crls ?? []).length === 0) notices.push(NO_CRLS_NOTICE);
  const collateral = result.checks.find((c) => c.id === "collateral");
  if (collateral !== undefined) notices.push(TCB_NOT_EVALUATED);
  return notices;
}

/** What {@link checkVerification} explains a failure with. */
interface VerificationContext {
  options: DeployOptions;
  expected: { measurements: Uint8Array[]; release: boolean };
  trust: { roots: string[]; recorded?: string };
  seen: string | undefined;
  backend: string;
}

/** Throws the error a person can act on for the first failed check, if any. */
function checkVerification(result: VerificationResult, context: VerificationContext): void {
  const failed = result.checks.filter((c) => !c.ok);
  if (failed.length === 0 && result.ok) return;
  const first = failed[0];
  if (first === undefined) {
    throw new EnarxError("attestation-failed", "The keep's evidence did not verify", {
      exit: "verificationFailed",
    });
  }
  if (first.id === "root" && context.seen !== undefined) throw rootError(context);
  if (first.id === "measurement") throw measurementError(result, context);
  const code = first.id === "report-data" ? "report-data-mismatch" : "attestation-failed";
  const hint = first.id === "report-data"
    ? "the evidence was made for another nonce or another sealing key; the host may be replaying or swapping keys"
    : "see --json for every check";
  throw new EnarxError(
    code,
    `Attestation check "${first.id}" failed: ${first.detail ?? first.description}; ${hint}`,
    { exit: "verificationFailed" },
  );
}

/** The evidence's root is neither AMD's nor a simulator's the user trusts. */
function rootError(context: VerificationContext): EnarxError {
  const seen = `sha256:${context.seen}`;
  if (context.trust.recorded !== undefined) {
    return new EnarxError(
      "attestation-simulated",
      `The keep's evidence is signed by the root ${seen}, but ${context.trust.recorded} was ` +
        `trusted on first use for ${context.options.keepmgr}; another simulator signed it. If ` +
        `the keepmgr's simulator changed on purpose, remove its entry from the trusted ` +
        `simulators file and deploy again`,
      { exit: "verificationFailed" },
    );
  }
  if (context.trust.roots.length > 0) {
    return new EnarxError(
      "attestation-simulated",
      `The keep's evidence is signed by the root ${seen}, not the trusted simulator ` +
        `${context.trust.roots.join(", ")}; refusing it`,
      { exit: "verificationFailed" },
    );
  }
  return new EnarxError(
    "attestation-simulated",
    `The keep's evidence is signed by ${seen}, which is not AMD's: a simulated SNP platform ` +
      `proves nothing about hardware. For development pass --trust-simulated ${seen} (the ` +
      `fingerprint "enarx keepmgr" prints at start) or --insecure-allow-simulated (trust on ` +
      `first use); else use a TEE backend`,
    { exit: "verificationFailed" },
  );
}

/** The keep measures otherwise than expected: name both values. */
function measurementError(result: VerificationResult, context: VerificationContext): EnarxError {
  const got = (result.claims as { measurement?: unknown }).measurement;
  const actual = got instanceof Uint8Array ? got.toHex() : "none";
  const wanted = context.expected.measurements.map((m) => m.toHex()).join(" or ");
  const why = context.expected.release
    ? `this enarx release computes ${wanted} for a ${context.backend} keep; the keep does not ` +
      `run this release's ${context.backend} image (give --measurement HEX or a --policy to ` +
      `expect another)`
    : `expected ${wanted} (${
      context.options.measurement !== undefined ? "--measurement" : "the policy's measurements"
    })`;
  return new EnarxError(
    "measurement-mismatch",
    `The keep's measurement is ${actual}, but ${why}`,
    { exit: "verificationFailed" },
  );
}

function describeVerification(result: VerificationResult, options: DeployOptions): string {
  const what = result.simulated ? "simulated SNP" : result.format.toUpperCase();
  const notices = verificationNotices(result, options);
  return `${what}: ${result.checks.length} checks passed${
    notices.length === 0 ? "" : `; ${notices.join("; ")}`
  }`;
}

/** The host to connect to: the keepmgr's, when it answers with a wildcard address. */
function connectHost(host: string, keepmgr: URL): string {
  if (host === "" || host === "0.0.0.0" || host === "::" || host === "[::]") {
    return keepmgr.hostname.replace(/^\[|\]$/g, "");
  }
  return host.replace(/^\[|\]$/g, "");
}

/** Refusals that mean "not here, not yet" (exit 69), not a protocol error. */
const UNAVAILABLE_REFUSALS = ["sockets-unsupported-backend", "config-unsupported"];

/** keepmgr's codes that a keep's end reason may start with and that a deploy passes on. */
const KEEPMGR_REASON_CODES = ["no-free-port", "service-forward"];

/** The code that keepmgr's reason (as {@link keepmgrReason} quotes it) starts with, if passed on. */
function reasonCode(why: string): string | undefined {
  return KEEPMGR_REASON_CODES.find((code) => why.includes(`"${code}:`));
}

async function keepRefusal(
  status: number,
  body: ReadableStream<Uint8Array>,
  maxUploadBytes = MAX_WORKLOAD_REQUEST_SIZE,
) {
  let code = "keep-failed";
  let message = `The keep answered the upload with HTTP ${status}`;
  try {
    const bytes = new Uint8Array(await new Response(body).arrayBuffer());
    const { decodeCbor } = await import("../protocol/cbor.ts");
    const error = parseErrorResponse(decodeCbor(bytes, { maxSize: 1 << 20 }));
    code = error.error.code;
    message = `The keep refused the workload: ${error.error.message} (${code})`;
  } catch { /* keep the generic message */ }
  if (UNAVAILABLE_REFUSALS.includes(code)) {
    return new EnarxError(code, message, { exit: "unavailable" });
  }
  if (status === 401) {
    return new EnarxError("keep-refused-token", `${message}; the sealed token did not arrive`, {
      exit: "protocol",
    });
  }
  if (status === 409) {
    return new EnarxError(
      "keep-taken",
      `${message}; another client already uploaded a workload with this deploy's token`,
      { exit: "verificationFailed" },
    );
  }
  if (status === 413) {
    return new EnarxError(
      "workload-too-large",
      `${message}; a keep's upload limit is ${
        describeBytes(maxUploadBytes)
      }, send a smaller module`,
      { exit: "dataError" },
    );
  }
  return new EnarxError(code, message, { exit: "protocol" });
}

/**
 * A connection to the keep that broke (the keep or its keepldr died): the
 * error, with the reason keepmgr gives once it has noticed the keep ended.
 */
async function lostWithReason(
  client: KeepmgrClient,
  keepId: string,
  error: unknown,
): Promise<unknown> {
  if (!(error instanceof EnarxError) || error.code !== "keep-connection-lost") return error;
  const why = await keepmgrReason(client, keepId);
  return new EnarxError(reasonCode(why) ?? error.code, `${error.message}${why}`, {
    exit: "unavailable",
    cause: error,
  });
}

/**
 * Why keepmgr says keep `keepId` ended, as text to append to an error. keepmgr
 * learns of the end a moment after the client does: ask for up to 3 s.
 */
async function keepmgrReason(client: KeepmgrClient, keepId: string): Promise<string> {
  let shown: Awaited<ReturnType<KeepmgrClient["showKeep"]>> | undefined;
  try {
    for (let i = 0; i < 20; i++) {
      shown = await client.showKeep(keepId);
      if (shown.state === "exited" || shown.state === "failed") break;
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
  } catch {
    if (shown === undefined) return "; the keep or the keepmgr stopped";
  }
  return shown!.reason !== undefined ? `: keepmgr says "${shown!.reason}"` : ` (${shown!.state})`;
}
