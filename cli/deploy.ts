/**
 * `enarx deploy`: deploy a module to a keep on a host, after attestation
 * (runtime/client/deploy.ts does the work; this file parses and prints).
 *
 * @module
 */
import {
  type Command,
  type OptionSpec,
  parseCommandArgs,
  type ParsedValues,
  printErr,
  printJson,
  printOut,
} from "./_command.ts";
import { EnarxError, UsageError } from "../runtime/errors.ts";
import { parseDuration, UNITS_HELP } from "../runtime/units.ts";
import {
  deploy,
  DeployError,
  type DeployEvent,
  type DeployOptions,
  type DeployResult,
  type DeployStepRecord,
  type DeployTls,
  type DeployWorkload,
} from "../runtime/client/deploy.ts";
import { concatBytes } from "../runtime/bytes.ts";
import { DEFAULT_POLICY, type Policy, readPolicyFile } from "../runtime/attestation/policy.ts";
import { claimsToJson } from "../runtime/attestation/claims_json.ts";
import { BACKEND_NAMES } from "../runtime/protocol/messages.ts";
import { readToken } from "../runtime/keepmgr/api/auth.ts";
import type { EnarxConfig } from "../runtime/wasm/config.ts";

const HELP = `Usage: enarx deploy --keepmgr URL [OPTIONS] MODULE.wasm [-- ARGS...]

Deploys a WebAssembly (WASI) module to a keep on the host that runs the
keepmgr at URL. The keep proves what it is first: the evidence is verified
against the policy (signature chain, measurement, TCB, debug off, and that it
binds this deploy's nonce and the keep's sealing key) before anything else is
sent. Then a one-use TLS key and upload token are sealed to the keep, the
client connects pinning that key, uploads the workload, and prints its
standard output and error as they arrive. Exits with the workload's status.

Options:
  --keepmgr URL               The host's keepmgr, e.g. https://host:8443 (required)
  --backend NAME              nil, kvm, sev or auto (default auto: the keepmgr's choice)
  --policy FILE               Attestation policy (TOML); default: refuse debug and
                              migration, trust no simulated root, expect the
                              measurement this enarx release computes for the
                              keep's backend ("enarx measure --backend NAME")
  --measurement HEX           Expect this measurement (48 bytes of hex) instead
  --wasmcfgfile FILE          Enarx.toml to send with the module
  --env K=V                   Environment variable for the workload (repeatable)
  --stdin FILE                Standard input for the workload ("-": this one's);
                              default: empty
  --crl FILE                  An AMD or Intel CRL (DER or PEM); a revoked certificate
                              in the keep's chain fails. Repeatable. Without any,
                              the output says "no CRLs given: revocation not checked"
  --crl-dir DIR               A directory of cached CRLs (other files are skipped)
  --collateral-dir DIR        Cached Intel collateral for TDX and SGX keeps: TCB Info
                              and QE Identity JSON and CRLs as Intel's PCS serves
                              them. Without TCB Info a TDX or SGX keep is refused
                              ("TCB not evaluated (no collateral)") unless the
                              policy says require_collateral = false
  --trust-simulated FINGERPRINT
                              Accept evidence from the simulated SNP platform
                              (nil and kvm keeps) whose root has this SHA-256
                              ("sha256:<hex>", printed by "enarx keepmgr" at
                              start). It proves nothing about hardware; a
                              warning is printed on every run
  --insecure-allow-simulated  Trust on first use: accept the simulated root this
                              keepmgr shows the first time and record it in
                              $XDG_CONFIG_HOME/enarx/trusted-simulators.toml
                              (loudly); later, accept only that root from it
  --keepmgr-ca FILE           Verify the keepmgr's TLS certificate against these
                              PEM roots (default: not verified; see docs/security.md)
  --keepmgr-token FILE        The keepmgr operator's bearer token, needed to create
                              a keep (default: $ENARX_KEEPMGR_TOKEN_FILE; keepmgr
                              keeps it in <its state dir>/token)
  --ca FILE                   The CA (PEM certificate, P-256 ECDSA or RSA) that issues
                              the certificate of the keep's prot = "tls" sockets,
                              after the evidence is verified; needs --ca-key
  --ca-key FILE               The CA's private key (PKCS#8 PEM); it never leaves
                              this machine. Checked against --ca before a keep is made.
                              A policy's [service_ca] (cert, key) does the same;
                              --ca/--ca-key override it
  --cert-days N               Days the certificate the CA issues is valid: 1 to 200
                              (default 7; never past the CA's own end). It is not
                              renewed: a keep that outlives it serves an expired one
  --service-name NAME         A DNS name or IP address the keep's certificate is
                              for (repeatable; default localhost, 127.0.0.1 and
                              the keepmgr URL's host)
  --detach                    Return once the workload runs (and its services are
                              reachable), printing the keep id and endpoints; the
                              keep runs on. Its output then goes to the keepmgr in
                              the clear ("enarx keep logs KEEP"; the last 256 KiB)
  --timeout DURATION          Give up after this long (e.g. 30s, 5m): the keep is
                              deleted and the status is 124
  --json                      Print one JSON record (keep, backend, verified claims,
                              checks, timings, exit status, base64 output)
  -q, --quiet                 Do not print the steps on standard error, nor
                              "waiting for keepmgr: N ahead" while the keepmgr
                              queues the create (it creates a few keeps at once)
  -h, --help                  Show this help

${UNITS_HELP}

Each [[files]] kind = "listen" socket of the Enarx.toml (nil, kvm and sev
keeps) is reached through a port the keepmgr forwards: "enarx deploy: endpoint
NAME: tcp://HOST:PORT" is printed for each; a prot = "tls" one (TLS ends in
the keep, with a key made there) as "tls://HOST:PORT (certificate sha256 HEX)"
(an HTTP service there is https://HOST:PORT). Without --ca its certificate is
self-signed: pin that fingerprint.

Exit status: the workload's own (0 with --detach); 1 attestation failed; 64 usage; 65/66 bad or
missing input; 69 keepmgr or keep unavailable; 76 protocol error; 77 the
keepmgr refused the token (or none was given); 78 bad policy; 124 timed out;
130 interrupted (Ctrl-C; the keep is deleted).
`;

/**
 * The CRLs of `--crl` and `--crl-dir` and the Intel collateral of
 * `--collateral-dir` (with the CRLs it holds). evidence_input.ts is loaded
 * only when one is given: most deploys give none.
 */
async function readRevocationInputs(
  crlFiles: string[],
  crlDirs: string[],
  { collateralDirs }: { collateralDirs: string[] },
): Promise<{ crls: Uint8Array[]; collateral: Uint8Array[] }> {
  if (crlFiles.length + crlDirs.length + collateralDirs.length === 0) {
    return { crls: [], collateral: [] };
  }
  const { readCollateralFiles, readCrlFiles } = await import(
    "../runtime/attestation/evidence_input.ts"
  );
  const collateral = await readCollateralFiles(collateralDirs);
  const crls = [...await readCrlFiles(crlFiles, crlDirs), ...collateral.crls];
  return { crls, collateral: collateral.json };
}

/** Largest workload output kept for --json, per stream. */
const JSON_OUTPUT_LIMIT = 16 * 1024 * 1024;

const OPTIONS = {
  keepmgr: { type: "string" },
  backend: { type: "string" },
  policy: { type: "string" },
  wasmcfgfile: { type: "string" },
  env: { type: "string", multiple: true },
  stdin: { type: "string" },
  crl: { type: "string", multiple: true },
  "crl-dir": { type: "string", multiple: true },
  "collateral-dir": { type: "string", multiple: true },
  "insecure-allow-simulated": { type: "boolean" },
  "trust-simulated": { type: "string" },
  measurement: { type: "string" },
  "keepmgr-ca": { type: "string" },
  "keepmgr-token": { type: "string" },
  timeout: { type: "string" },
  detach: { type: "boolean" },
  ca: { type: "string" },
  "ca-key": { type: "string" },
  "cert-days": { type: "string" },
  "service-name": { type: "string", multiple: true },
  json: { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
  help: { type: "boolean", short: "h" },
} as const satisfies OptionSpec;

type DeployValues = ParsedValues<typeof OPTIONS>;

/** `enarx deploy`. */
export const command: Command = {
  name: "deploy",
  summary: "Deploy a module to a keep on a host, after attestation",
  async run(args: string[]): Promise<number> {
    const { values, positionals } = parseCommandArgs("deploy", args, { options: OPTIONS });
    if (values.help) {
      await printOut(HELP);
      return 0;
    }
    const plan = await planDeploy(values, positionals);
    return await deployAndReport(plan, values.json === true, values.quiet === true);
  },
};

/** A deploy ready to start: what to send, and where and how. */
interface DeployPlan {
  workload: DeployWorkload;
  options: DeployOptions;
}

/** Checks the arguments and reads every input, before anything is sent. */
async function planDeploy(values: DeployValues, positionals: string[]): Promise<DeployPlan> {
  if (values.keepmgr === undefined) {
    throw new UsageError(`Missing --keepmgr URL; see "enarx deploy --help"`);
  }
  const [modulePath, ...workloadArgs] = positionals;
  if (modulePath === undefined) {
    throw new UsageError(`Missing the module to deploy; see "enarx deploy --help"`);
  }
  const backend = values.backend ?? "auto";
  if (!(BACKEND_NAMES as readonly string[]).includes(backend)) {
    throw new UsageError(
      `Unknown backend "${backend}"; use one of ${BACKEND_NAMES.join(", ")}`,
    );
  }
  const env = parseEnv(values.env ?? []);
  const timeoutMs = values.timeout === undefined
    ? undefined
    : parseDuration(values.timeout, "--timeout");
  const policy: Policy = values.policy === undefined
    ? DEFAULT_POLICY
    : await readPolicyFile(values.policy);
  const trustSimulated = values["trust-simulated"];
  if (trustSimulated !== undefined && !/^(sha256:)?[0-9a-fA-F]{64}$/.test(trustSimulated)) {
    throw new UsageError(
      `--trust-simulated "${trustSimulated}" is not a SHA-256 fingerprint; use "sha256:<64 hex ` +
        `digits>" as "enarx keepmgr" prints it`,
    );
  }
  const measurement = values.measurement === undefined
    ? undefined
    : parseMeasurement(values.measurement);
  const keepmgrCaCerts = values["keepmgr-ca"] === undefined
    ? undefined
    : [await readKeepmgrCa(values["keepmgr-ca"])];
  const tokenFile = values["keepmgr-token"] ?? Deno.env.get("ENARX_KEEPMGR_TOKEN_FILE");
  const keepmgrToken = tokenFile === undefined || tokenFile === ""
    ? undefined
    : await readToken(tokenFile);
  const { crls, collateral } = await readRevocationInputs(
    values.crl ?? [],
    values["crl-dir"] ?? [],
    { collateralDirs: values["collateral-dir"] ?? [] },
  );
  // Streamed from the file while it is uploaded; a file that cannot be opened fails here.
  const module = await openableFile(modulePath, "module");
  const config = values.wasmcfgfile === undefined ? null : await readConfig(values.wasmcfgfile);
  const services = config === null ? 0 : await checkSockets(config, backend);
  const tls = await planTls(values, config?.config, policy);
  const stdin = values.stdin === undefined
    ? new Uint8Array(0)
    : values.stdin === "-"
    ? new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer())
    : await readBytes(values.stdin, "--stdin");
  return {
    workload: {
      module,
      config: config?.text ?? null,
      args: workloadArgs,
      env,
      stdin,
      services,
      detach: values.detach === true,
      ...(tls === undefined ? {} : { tls }),
    },
    options: {
      keepmgr: values.keepmgr,
      backend,
      policy,
      crls,
      collateral,
      allowSimulated: values["insecure-allow-simulated"] === true,
      trustSimulated,
      measurement,
      keepmgrCaCerts,
      keepmgrToken,
      timeoutMs,
    },
  };
}

/** Whether the keep presents a certificate: a tls listen socket, or a tls connect with mtls. */
function presentsCertificate(config: EnarxConfig | undefined): boolean {
  return (config?.files ?? []).some((f) =>
    f.prot === "tls" && (f.kind === "listen" || (f.kind === "connect" && f.mtls === true))
  );
}

/**
 * The keep's service identity: its names (checked) and the deployer's CA
 * (--ca/--ca-key, else the policy's [service_ca]; read and checked against
 * its key), before anything is sent; none when the config has no socket
 * that presents the keep's certificate (a policy's CA is then not read).
 */
async function planTls(
  values: DeployValues,
  config: EnarxConfig | undefined,
  policy: Policy,
): Promise<DeployTls | undefined> {
  const ca = values.ca;
  const caKey = values["ca-key"];
  if ((ca === undefined) !== (caKey === undefined)) {
    throw new UsageError(`--ca and --ca-key go together; give both, or neither`);
  }
  const given = values["service-name"] ?? [];
  if (!presentsCertificate(config)) {
    const flag = ca !== undefined
      ? "ca"
      : given.length > 0
      ? "service-name"
      : values["cert-days"] !== undefined
      ? "cert-days"
      : undefined;
    if (flag !== undefined) {
      throw new UsageError(
        `--${flag} needs a [[files]] socket with ` +
          `prot = "tls" (kind = "listen", or "connect" with mtls = true) in --wasmcfgfile`,
      );
    }
    return undefined;
  }
  const { serviceNames } = await import("../runtime/wasm/certificate_names.ts");
  const host = URL.parse(values.keepmgr ?? "")?.hostname.replace(/^\[|\]$/g, "");
  const defaults = ["localhost", "127.0.0.1", ...(host ? [host] : [])];
  const names = serviceNames(given.length > 0 ? given : defaults).map((n) => n.value);
  const { checkCertDays, loadServiceCa } = await import("../runtime/client/service_ca.ts");
  const days = values["cert-days"] === undefined ? undefined : checkCertDays(values["cert-days"]);
  if (ca !== undefined) return { names, days, ca: await loadServiceCa(ca, caKey!) };
  const files = policy.serviceCa;
  if (files === undefined) {
    if (days !== undefined) {
      throw new UsageError(
        `--cert-days sets the lifetime of the certificate your CA issues; give --ca and ` +
          `--ca-key (or a policy with [service_ca]); a self-signed keep certificate is valid 30 days`,
      );
    }
    return { names };
  }
  const labels = {
    cert: "service_ca.cert",
    key: "service_ca.key",
    origin: ` (policy "${values.policy}")`,
  };
  return { names, days, ca: await loadServiceCa(files.cert, files.key, { labels }) };
}

/** Parses --measurement: 48 bytes of hex (SNP MEASUREMENT, or a kvm/nil keep digest). */
function parseMeasurement(hex: string): Uint8Array {
  if (!/^[0-9a-fA-F]{96}$/.test(hex)) {
    throw new UsageError(
      `--measurement "${hex.slice(0, 100)}" is not 48 bytes of hex (96 digits); ` +
        `"enarx measure" prints it`,
    );
  }
  return Uint8Array.fromHex(hex.toLowerCase());
}

function parseEnv(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new UsageError(`--env "${pair}" is not K=V`);
    env[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return env;
}

async function readKeepmgrCa(path: string): Promise<string> {
  const pem = await readText(path, "--keepmgr-ca");
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
    // An empty or non-PEM file would authenticate nothing: refuse it rather than connect.
    throw new EnarxError(
      "keepmgr-ca-invalid",
      `--keepmgr-ca "${path}" holds no PEM certificate; ` +
        `pass the keepmgr's cert.pem (or its CA)`,
      { exit: "dataError" },
    );
  }
  return pem;
}

/** Reads Enarx.toml and refuses a configuration the keep would refuse. */
async function readConfig(path: string): Promise<{ text: string; config: EnarxConfig }> {
  const text = await readText(path, "--wasmcfgfile");
  const { parseDeployedConfig } = await import("../runtime/wasm/config.ts");
  return { text, config: parseDeployedConfig(text, path) };
}

/**
 * Refuses sockets on a backend that cannot have them yet (as the keep
 * would, but before a keep is made); returns the number of `listen` sockets.
 */
async function checkSockets(read: { config: EnarxConfig }, backend: string): Promise<number> {
  const { checkListenNames, checkSocketBackend } = await import(
    "../runtime/keep/deployed_sockets.ts"
  );
  if (backend !== "auto") checkSocketBackend(read.config, backend);
  checkListenNames(read.config);
  return read.config.files.filter((f) => f.kind === "listen").length;
}

/**
 * Runs the deploy, printing its steps (unless quiet or JSON) and the
 * workload's output as it arrives; returns the exit status.
 */
async function deployAndReport(plan: DeployPlan, json: boolean, quiet: boolean): Promise<number> {
  const progress = !json && !quiet;
  const captured = { stdout: new Capture(), stderr: new Capture() };
  const onStep = (event: DeployEvent) => {
    // The simulated-evidence warning is printed on every run, whatever the flags.
    if (event.kind === "warning") {
      Deno.stderr.writeSync(new TextEncoder().encode(`enarx deploy: ${event.message}\n`));
    } else if (event.kind === "endpoint" && !json) {
      // Printed even with --quiet: it is how the service is reached.
      const { name, prot, host, port, fingerprint } = event.endpoint;
      const shown = host.includes(":") ? `[${host}]` : host;
      const cert = fingerprint === undefined ? "" : ` (certificate sha256 ${fingerprint})`;
      Deno.stderr.writeSync(
        new TextEncoder().encode(
          `enarx deploy: endpoint ${name}: ${prot}://${shown}:${port}${cert}\n`,
        ),
      );
    } else if (progress && event.kind === "step-end") {
      Deno.stderr.writeSync(new TextEncoder().encode(formatStep(event.step)));
    }
  };
  const onQueued = queueReporter(progress);
  // Ctrl-C: stop, delete the keep, exit 130 (as a shell does for SIGINT).
  const interrupt = new AbortController();
  const onInterrupt = () => interrupt.abort();
  Deno.addSignalListener("SIGINT", onInterrupt);
  let result: DeployResult;
  try {
    result = await deploy(plan.workload, {
      signal: interrupt.signal,
      ...plan.options,
      onStep,
      onQueued,
      onStdout: json ? (c) => captured.stdout.add(c) : (c) => writeAll(Deno.stdout, c),
      onStderr: json ? (c) => captured.stderr.add(c) : (c) => writeAll(Deno.stderr, c),
    });
  } catch (error) {
    if (interrupt.signal.aborted) {
      await printErr("enarx deploy: interrupted; the keep was deleted\n");
      return 130;
    }
    if (json && error instanceof EnarxError) {
      await printJson({
        ok: false,
        error: {
          code: error.code,
          message: error.message,
          step: error instanceof DeployError ? error.step : undefined,
        },
        steps: error instanceof DeployError ? error.steps.map(stepJson) : [],
      });
      return error.exitStatus;
    }
    throw error;
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
  }
  if (json) {
    await printJson(resultJson(result, captured));
  } else {
    if (result.message !== undefined) await printErr(`enarx deploy: ${result.message}\n`);
    if (result.detached) {
      // The keep id goes to stdout, for scripts: KEEP=$(enarx deploy --detach ...).
      await printOut(`${result.keep}\n`);
      await printErr(
        `enarx deploy: keep ${result.keep} runs detached; "enarx keep logs ${result.keep}" ` +
          `shows its output, "enarx keep stop ${result.keep}" stops it\n`,
      );
    } else if (progress) {
      await printErr(
        `enarx deploy: keep ${result.keep} exited with status ${result.status} (${result.reason}) in ${
          round(result.totalMs)
        } ms\n`,
      );
    }
  }
  return result.status;
}

/** Prints "waiting for keepmgr: N ahead" when the place changes (only with `progress`). */
function queueReporter(progress: boolean): (ahead: number, creating: boolean) => void {
  let lastAhead = -1;
  return (ahead, creating) => {
    if (!progress || creating || ahead === lastAhead) return;
    lastAhead = ahead;
    Deno.stderr.writeSync(
      new TextEncoder().encode(`enarx deploy: waiting for keepmgr: ${ahead} ahead\n`),
    );
  };
}

/** The `--json` record of a deploy that ran. */
function resultJson(result: DeployResult, captured: { stdout: Capture; stderr: Capture }) {
  return {
    ok: true,
    keep: result.keep,
    backend: result.backend,
    simulated: result.simulated,
    warnings: result.warnings,
    verification: {
      format: result.verification.format,
      ok: result.verification.ok,
      notices: result.notices,
      claims: claimsToJson(result.verification.claims),
      checks: result.verification.checks,
    },
    steps: result.steps.map(stepJson),
    total_ms: round(result.totalMs),
    status: result.status,
    reason: result.reason,
    message: result.message,
    detached: result.detached === true,
    endpoints: result.endpoints.map((e) => ({
      ...e,
      url: `${e.prot}://${e.host.includes(":") ? `[${e.host}]` : e.host}:${e.port}`,
    })),
    certificate: result.certificate === undefined ? undefined : {
      fingerprint: result.certificate.fingerprint,
      names: result.certificate.names,
      issued: result.certificate.issued,
    },
    stdout: captured.stdout.base64(),
    stderr: captured.stderr.base64(),
    output_truncated: captured.stdout.truncated || captured.stderr.truncated,
  };
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function stepJson(step: DeployStepRecord) {
  return { ...step, ms: round(step.ms) };
}

/** One progress line: `[1-4] title: detail (12.3 ms)`. */
export function formatStep(step: DeployStepRecord): string {
  const mark = step.failed ? "FAILED " : "";
  const detail = step.detail === undefined ? "" : `: ${step.detail}`;
  return `enarx deploy: [${step.design}] ${mark}${step.title}${detail} (${round(step.ms)} ms)\n`;
}

class Capture {
  #chunks: Uint8Array[] = [];
  #size = 0;
  truncated = false;

  add(chunk: Uint8Array): void {
    const room = JSON_OUTPUT_LIMIT - this.#size;
    if (chunk.length > room) this.truncated = true;
    const kept = chunk.subarray(0, Math.max(0, room));
    if (kept.length > 0) {
      this.#chunks.push(kept.slice());
      this.#size += kept.length;
    }
  }

  base64(): string {
    return concatBytes(...this.#chunks).toBase64();
  }
}

async function writeAll(file: { write(p: Uint8Array): Promise<number> }, bytes: Uint8Array) {
  let at = 0;
  while (at < bytes.length) at += await file.write(bytes.subarray(at));
}

async function readBytes(path: string, what: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (cause) {
    throw new EnarxError(
      "input-unreadable",
      `Cannot read the ${what} "${path}": ${cause instanceof Error ? cause.message : cause}`,
      { exit: "noInput", cause },
    );
  }
}

async function openableFile(path: string, what: string): Promise<{ path: string }> {
  try {
    (await Deno.open(path, { read: true })).close();
    return { path };
  } catch (cause) {
    throw new EnarxError(
      "input-unreadable",
      `Cannot read the ${what} "${path}": ${cause instanceof Error ? cause.message : cause}`,
      { exit: "noInput", cause },
    );
  }
}

async function readText(path: string, what: string): Promise<string> {
  return new TextDecoder().decode(await readBytes(path, what));
}
