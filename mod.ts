/**
 * enarx as a library: the public surface for programs that run workloads,
 * verify attestation evidence, speak the deploy protocol or drive a
 * keepmgr from TypeScript on Deno. The `enarx` command (cli/main.ts) is built
 * on exactly these exports.
 *
 * @module
 */

export { ENARX_VERSION, WASMTIME_VERSION } from "./runtime/version.ts";
export {
  EnarxError,
  errorCode,
  ExitStatus,
  exitStatusFor,
  type ExitStatusName,
  UsageError,
} from "./runtime/errors.ts";

// Running workloads locally (enarx run).
export {
  type EndReason,
  type OutputSink,
  type Preopen,
  type RunOptions,
  runWorkload,
  type StdinSource,
  type Workload,
  type WorkloadLimits,
  type WorkloadResult,
} from "./runtime/wasm/workload.ts";
export {
  ConfigError,
  ConfigUnsupportedError,
  defaultConfig,
  type EnarxConfig,
  loadEnarxConfig,
  parseEnarxConfig,
} from "./runtime/wasm/config.ts";

// Attestation: verifying evidence, policies, the simulated SNP platform.
export * from "./runtime/attestation/mod.ts";

// The host's TEE platforms (enarx platform info).
export {
  type BackendInfo,
  BACKENDS,
  bestBackend,
  type PlatformCheck,
  type PlatformInfo,
  probePlatform,
} from "./runtime/platform/info.ts";

// The deploy protocol and its two trusted ends.
export * from "./runtime/protocol/mod.ts";
export {
  deploy,
  DeployError,
  type DeployOptions,
  type DeployResult,
  type DeployWorkload,
} from "./runtime/client/deploy.ts";
export { KeepManager, type KeepManagerOptions } from "./runtime/keepmgr/keep_manager.ts";
export { KeepmgrClient } from "./runtime/client/keepmgr_client.ts";
export { SealingKeyPair, sealToKeep } from "./runtime/protocol/sealing.ts";
