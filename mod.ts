/**
 * enarx as a library: what a TypeScript program on Deno needs to verify
 * attestation evidence against a policy, run a WebAssembly workload, and
 * deploy one into an attested keep. The `enarx` command (cli/main.ts) is
 * built on the same modules; their other exports are internal and may
 * change.
 *
 * Verify evidence:
 *
 * ```ts
 * import { readPolicyFile, verifyEvidence } from "./mod.ts";
 * const policy = await readPolicyFile("policy.toml");
 * const result = await verifyEvidence(await Deno.readFile("report.bin"), { policy });
 * if (!result.ok) console.log(result.checks.filter((c) => !c.ok));
 * ```
 *
 * Run a workload:
 *
 * ```ts
 * import { runWorkload } from "./mod.ts";
 * const result = await runWorkload({ module: await Deno.readFile("app.wasm") });
 * console.log(result.status);
 * ```
 *
 * @module
 */

export { ENARX_VERSION, WASMTIME_VERSION } from "./runtime/version.ts";
export {
  EnarxError,
  ExitStatus,
  exitStatusFor,
  type ExitStatusName,
  UsageError,
} from "./runtime/errors.ts";

// Verifying evidence (enarx attest verify).
export {
  type Check,
  type ClaimMap,
  type Claims,
  claimsToJson,
  type ClaimValue,
  decodeEvidenceBundle,
  DEFAULT_POLICY,
  type DetectedEvidence,
  detectEvidence,
  encodeEvidenceBundle,
  type EvidenceBundle,
  type EvidenceFormat,
  type EvidenceInputPaths,
  type EvidenceInputs,
  type IntelCollateral,
  type JsonClaim,
  MalformedEvidenceError,
  type MinimumTcb,
  type NitroClaims,
  parsePolicy,
  type Policy,
  PolicyError,
  readEvidenceInputs,
  readPolicyFile,
  type ServiceCaFiles,
  type SevClaims,
  type SgxClaims,
  type SnpClaims,
  type SnpVerifyOptions,
  type TdxClaims,
  type VerificationResult,
  verifyEvidence,
  type VerifyEvidenceOptions,
} from "./runtime/attestation/mod.ts";

export type {
  EnclaveIdentity,
  IsvSvnLevel,
  SignedCollateral,
  TcbInfo,
  TcbLevel,
  TdxModuleIdentity,
} from "./runtime/attestation/intel/intel_collateral.ts";

export { TCB_STATUSES, type TcbStatus } from "./runtime/attestation/intel/intel_tcb_status.ts";

// Running workloads (enarx run).
export {
  type EndReason,
  type OutputCallback,
  type OutputSink,
  type Preopen,
  type RunOptions,
  runWorkload,
  type StdinSource,
  type Workload,
  type WorkloadLimits,
  type WorkloadResult,
} from "./runtime/wasm/workload.ts";
export type { GuestSocket, SocketTlsOptions } from "./runtime/wasm/sockets.ts";
export type {
  CertificateIssuer,
  CertificateRequest,
  KeepIdentity,
} from "./runtime/wasm/keep_identity.ts";
export type { ServiceName } from "./runtime/wasm/certificate_names.ts";
export {
  ConfigError,
  ConfigUnsupportedError,
  defaultConfig,
  type DirEntry,
  type EnarxConfig,
  type FileEntry,
  type FileKind,
  loadEnarxConfig,
  parseEnarxConfig,
  type TrustAnchorSource,
} from "./runtime/wasm/config.ts";

// Deploying into an attested keep (enarx deploy).
export {
  deploy,
  DEPLOY_STEPS,
  type DeployEndpoint,
  DeployError,
  type DeployEvent,
  type DeployOptions,
  type DeployResult,
  type DeployStepId,
  type DeployStepRecord,
  type DeployTls,
  type DeployWorkload,
  type ModuleFile,
} from "./runtime/client/deploy.ts";
export {
  loadServiceCa,
  type ServiceCa,
  type ServiceCaLabels,
  type ServiceCertificate,
} from "./runtime/client/service_ca.ts";
export type { Endpoint } from "./runtime/protocol/messages.ts";

// What this host can run (enarx platform info).
export { backendNames, type EvidenceKind } from "./runtime/backends/mod.ts";
export {
  type BackendInfo,
  type EvaluatePlatformOptions,
  type PlatformCheck,
  type PlatformInfo,
  probePlatform,
  type Remedy,
} from "./runtime/platform/info.ts";
export {
  GUEST_INTERFACES,
  type GuestInterfaceInfo,
  type GuestInterfaceName,
} from "./runtime/platform/guest_interfaces.ts";
