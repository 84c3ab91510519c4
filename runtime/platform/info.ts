/**
 * Which keep backends this machine can use, and why: every check behind each
 * answer, with a remedy that is a correct command where a command can fix it
 * (or says which firmware setting to change where none can). Also which TEE
 * guest interfaces this machine has for `enarx attest report`. Each
 * backend's checks are its own (runtime/backends/); this module runs them
 * for every backend in the registry.
 *
 * The result is the documented, schema-stable JSON of `enarx platform info
 * --json` (spec/platform-info.md); change {@link PLATFORM_INFO_VERSION} when
 * a field changes meaning or disappears.
 *
 * @module
 */
import { gatherHostFacts, type HostFacts } from "./host_facts.ts";
import { ENARX_VERSION } from "../version.ts";
import { backendNames, backends, type EvidenceKind } from "../backends/mod.ts";
import { Judge } from "./judge.ts";
import {
  type GuestInterfaceInfo,
  type GuestInterfaceName,
  guestInterfaces,
} from "./guest_interfaces.ts";
import type { PlatformCheck } from "./check_list.ts";

export type { PlatformCheck, Remedy } from "./check_list.ts";
export {
  GUEST_INTERFACES,
  type GuestInterfaceInfo,
  type GuestInterfaceName,
} from "./guest_interfaces.ts";

/** The version of the platform-info JSON schema. */
export const PLATFORM_INFO_VERSION = 1;

/** Backends, strongest first: the order `--backend auto` tries them in (the registry's). */
export const BACKENDS: readonly string[] = backendNames();

/**
 * Backends that every host can launch keeps on, without probing it: those
 * with an in-process keep (nil). Others are launchable where their
 * `launchable()` says so ({@link probePlatform}).
 */
export const LAUNCHABLE_BACKENDS: readonly string[] = backends()
  .filter((b) => b.launchLocal !== undefined).map((b) => b.name);

/** One backend's verdict. */
export interface BackendInfo {
  /** The backend's name. */
  name: string;
  /** What a keep is on this backend. */
  description: string;
  /** The evidence its keeps produce: `snp-sim` (simulated), `sev-snp`, `tdx`, `sgx`. */
  evidence: EvidenceKind;
  /** Every required check passed. */
  usable: boolean;
  /** Usable, and enarx can launch keeps on it today. */
  launchable: boolean;
  /** Every check, in order. */
  checks: PlatformCheck[];
}

/** The whole report: `enarx platform info --json`. */
export interface PlatformInfo {
  /** Always `enarx-platform-info`. */
  schema: "enarx-platform-info";
  /** {@link PLATFORM_INFO_VERSION}. */
  version: number;
  /** The enarx version that made the report. */
  enarx: string;
  /** The machine. */
  system: {
    kernel: string;
    arch: string;
    cpuVendor: string | null;
    cpuModel: string | null;
    cpuFamily: number | null;
    cpuModelNumber: number | null;
    virtualMachine: boolean;
    user: string;
  };
  /** Every backend, strongest first. */
  backends: BackendInfo[];
  /** The strongest usable backend, and the strongest launchable one (`--backend auto`). */
  best: { usable: string; launchable: string };
  /** This machine as a TEE guest: interfaces for `enarx attest report`. */
  guest: { interfaces: GuestInterfaceInfo[]; preferred: GuestInterfaceName | null };
}

/** Options of {@link evaluatePlatform} and {@link probePlatform}. */
export interface EvaluatePlatformOptions {
  /** The backends enarx can launch here (default {@link LAUNCHABLE_BACKENDS}). */
  launchable?: readonly string[];
}

/** The system part of the report. */
function systemInfo(facts: HostFacts, judge: Judge): PlatformInfo["system"] {
  return {
    kernel: facts.kernelRelease,
    arch: facts.arch,
    cpuVendor: facts.cpu.vendor,
    cpuModel: facts.cpu.modelName,
    cpuFamily: facts.cpu.family,
    cpuModelNumber: facts.cpu.model,
    virtualMachine: judge.hasFlag("hypervisor"),
    user: facts.user.name,
  };
}

/**
 * Judges `facts` (from {@link gatherHostFacts}, or made up in a test).
 * `launchable` names the backends enarx can launch (default
 * {@link LAUNCHABLE_BACKENDS}).
 */
export function evaluatePlatform(
  facts: HostFacts,
  options: EvaluatePlatformOptions = {},
): PlatformInfo {
  const judge = new Judge(facts);
  const launchable = new Set(options.launchable ?? LAUNCHABLE_BACKENDS);
  const judged: BackendInfo[] = backends().map((b) => {
    const checks = b.checks(judge);
    const usable = checks.every((c) => !c.required || c.status === "pass");
    return {
      name: b.name,
      description: b.description,
      evidence: b.evidence,
      usable,
      launchable: usable && launchable.has(b.name),
      checks,
    };
  });
  const interfaces = guestInterfaces(judge);
  const info: PlatformInfo = {
    schema: "enarx-platform-info",
    version: PLATFORM_INFO_VERSION,
    enarx: ENARX_VERSION,
    system: systemInfo(facts, judge),
    backends: judged,
    best: { usable: "nil", launchable: "nil" },
    guest: {
      interfaces,
      preferred: interfaces.find((i) => i.usable)?.name ?? null,
    },
  };
  info.best = {
    usable: bestBackend(info, { launchable: false }),
    launchable: bestBackend(info, { launchable: true }),
  };
  return info;
}

/**
 * Probes this machine and judges it: what `enarx platform info` shows. By
 * default the launchable backends are those whose `launchable()` is true
 * here (nil always; kvm where QEMU and a keep kernel are found: keepmgr
 * launches kvm keeps).
 */
export function probePlatform(options: EvaluatePlatformOptions = {}): PlatformInfo {
  const facts = gatherHostFacts();
  const launchable = options.launchable ??
    backends().filter((b) => b.launchable(facts)).map((b) => b.name);
  return evaluatePlatform(facts, { launchable });
}

/**
 * The strongest backend for `--backend auto`: sev > tdx > sgx > kvm > nil.
 * With `launchable: true` (the default) only backends enarx can launch
 * today count; nil is always both usable and launchable.
 */
export function bestBackend(
  info: PlatformInfo,
  options: { launchable?: boolean } = {},
): string {
  const wantLaunchable = options.launchable ?? true;
  for (const name of BACKENDS) {
    const b = info.backends.find((x) => x.name === name);
    if (b !== undefined && (wantLaunchable ? b.launchable : b.usable)) return name;
  }
  return "nil";
}
