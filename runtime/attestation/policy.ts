/**
 * An attestation policy: what a verifier accepts beyond a valid signature
 * chain. Written in TOML; every key is optional and unknown keys are errors,
 * so that a typo never silently weakens a policy. The defaults refuse debug
 * and migration and trust no simulated root.
 *
 * ```toml
 * platforms = ["snp"]                  # evidence formats accepted
 * products = ["Milan", "Genoa"]        # SNP products accepted
 * measurements = ["7a1e5c26…"]         # accept any of these launch digests
 * report_data = "d447b55d…"            # exact; shorter values are zero-padded
 * host_data = "00…"                    # SNP HOST_DATA, exact
 * allow_debug = false
 * allow_migration = false
 * max_age_seconds = 300                # where the format carries a time (Nitro)
 * trust_simulated_root = "sha256:…"   # the one simulated platform root to trust
 * allowed_tcb_statuses = ["SWHardeningNeeded"]  # Intel TCB statuses accepted beyond UpToDate
 * require_collateral = true            # TDX/SGX: refuse a quote whose TCB was not evaluated
 * max_vmpl = 0                         # SNP: highest VMPL accepted (default 0)
 *
 * [min_tcb]                            # minimum SNP REPORTED_TCB, every product
 * bootloader = 3
 * tee = 0
 * snp = 8
 * microcode = 115
 * fmc = 0                              # Turin only
 *
 * [min_tcb.Genoa]                      # for Genoa: replaces the components it names
 * snp = 22
 *
 * [service_ca]                         # enarx deploy only: the CA of prot = "tls" services
 * cert = "ca.pem"                      # relative to the policy file's folder
 * key = "ca.key"                       # PKCS#8 PEM; never leaves the client
 * ```
 *
 * `require_collateral` left out takes the caller's default: true for
 * `enarx deploy`, false for `enarx attest verify` (which still says "TCB not
 * evaluated (no collateral)").
 *
 * @module
 */
import { parse as parseToml, TomlError } from "smol-toml";
import { EnarxError } from "../errors.ts";

import type { EvidenceFormat } from "./result.ts";
import { TCB_STATUSES } from "./intel/intel_tcb_status.ts";

/** Minimum security patch levels, per component. */
export interface MinimumTcb {
  /** FMC SPL (Turin). */
  fmc?: number;
  /** Boot loader SPL. */
  bootloader?: number;
  /** TEE SPL. */
  tee?: number;
  /** SNP firmware SPL. */
  snp?: number;
  /** Microcode SPL. */
  microcode?: number;
}

/** A parsed policy. */
export interface Policy {
  /** Evidence formats accepted; undefined accepts every format. */
  platforms?: EvidenceFormat[];
  /** SNP products accepted ("Milan", "Genoa", "Turin"); undefined accepts all. */
  products?: string[];
  /** Accepted measurements (any of); undefined accepts any. */
  measurements?: Uint8Array[];
  /** Expected report data (zero-padded to the field's size). */
  reportData?: Uint8Array;
  /** Expected SNP HOST_DATA. */
  hostData?: Uint8Array;
  /** Accept evidence from a guest that allows debugging. Default false. */
  allowDebug: boolean;
  /** Accept an SNP guest that may have a migration agent. Default false. */
  allowMigration: boolean;
  /** Minimum TCB per component, for every product. */
  minTcb?: MinimumTcb;
  /** Minimum TCB per SNP product ("Milan", "Genoa", "Turin"), over {@link minTcb}. */
  minTcbByProduct?: Record<string, MinimumTcb>;
  /** Highest SNP VMPL accepted; undefined is 0 (only the most privileged level). */
  maxVmpl?: number;
  /**
   * Refuse TDX and SGX quotes whose TCB no Intel collateral evaluated;
   * undefined takes the caller's default (deploy: true; attest verify: false).
   */
  requireCollateral?: boolean;
  /** Maximum age in seconds, for formats that carry a time. */
  maxAgeSeconds?: number;
  /**
   * The SHA-256 (lower-case hex) of the one simulated platform root to
   * trust, or false for none (default). Trust is by fingerprint only, never
   * by a certificate's name. Simulated evidence proves nothing about hardware.
   */
  trustSimulatedRoot: false | string;
  /**
   * Intel TCB statuses (from TCB Info collateral) accepted besides
   * "UpToDate", e.g. "SWHardeningNeeded". Default none.
   */
  allowedTcbStatuses?: string[];
  /**
   * `[service_ca]`: the CA certificate and key files with which
   * `enarx deploy` certifies a keep's `prot = "tls"` services (as `--ca`
   * and `--ca-key`, which override it); paths resolved against the policy
   * file's folder. Only read when a deploy needs them.
   */
  serviceCa?: ServiceCaFiles;
}

/** The files of a policy's `[service_ca]`. */
export interface ServiceCaFiles {
  /** The CA's certificate (PEM), `cert`. */
  cert: string;
  /** Its PKCS#8 private key (PEM), `key`. */
  key: string;
}

/** The policy used when none is given: refuse debug and migration, trust no simulated root. */
export const DEFAULT_POLICY: Policy = Object.freeze({
  allowDebug: false,
  allowMigration: false,
  trustSimulatedRoot: false,
});

/** A policy that cannot be read: bad TOML, an unknown key, a bad value. Exit status 78. */
export class PolicyError extends EnarxError {
  /** Makes an error with code `policy-invalid`. */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("policy-invalid", message, { exit: "config", cause: options.cause });
    this.name = "PolicyError";
  }
}

const FORMATS: readonly EvidenceFormat[] = ["snp", "tdx", "sgx", "nitro", "sev"];
const PRODUCTS = ["Milan", "Genoa", "Turin"];
const TOP_KEYS = [
  "platforms",
  "products",
  "measurements",
  "report_data",
  "host_data",
  "allow_debug",
  "allow_migration",
  "min_tcb",
  "max_age_seconds",
  "trust_simulated_root",
  "allowed_tcb_statuses",
  "require_collateral",
  "max_vmpl",
  "service_ca",
];
const TCB_KEYS = ["fmc", "bootloader", "tee", "snp", "microcode"];

function fail(source: string, message: string): never {
  throw new PolicyError(`Policy ${source}: ${message}`);
}

function hexValue(source: string, key: string, value: unknown, max: number): Uint8Array {
  if (typeof value !== "string") fail(source, `"${key}" must be a hex string`);
  try {
    const bytes = Uint8Array.fromHex(value.replace(/^0x/, ""));
    if (bytes.length === 0 || bytes.length > max) {
      fail(source, `"${key}" must be 1 to ${max} bytes, got ${bytes.length}`);
    }
    return bytes;
  } catch (error) {
    if (error instanceof PolicyError) throw error;
    fail(source, `"${key}" is not hexadecimal: "${value}"`);
  }
}

function boolValue(source: string, key: string, value: unknown): boolean {
  if (typeof value !== "boolean") fail(source, `"${key}" must be true or false`);
  return value;
}

function stringList(source: string, key: string, value: unknown, allowed: readonly string[]) {
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string")) {
    fail(source, `"${key}" must be a list of strings`);
  }
  for (const v of value as string[]) {
    if (!allowed.includes(v)) {
      fail(source, `"${key}" has "${v}"; expected one of ${allowed.join(", ")}`);
    }
  }
  return value as string[];
}

function spl(source: string, key: string, value: unknown): number {
  const n = typeof value === "bigint" ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 255) {
    fail(source, `"min_tcb.${key}" must be an integer from 0 to 255`);
  }
  return n;
}

function positiveInteger(source: string, key: string, value: unknown): number {
  const v = typeof value === "bigint" ? Number(value) : value;
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
    fail(source, `"${key}" must be a positive integer`);
  }
  return v;
}

/** `[min_tcb]`: components for every product, and `[min_tcb.<Product>]` tables. */
function minTcbValue(
  source: string,
  t: unknown,
): { all?: MinimumTcb; byProduct?: Record<string, MinimumTcb> } {
  if (typeof t !== "object" || t === null || Array.isArray(t)) {
    fail(source, `"min_tcb" must be a table`);
  }
  const all: MinimumTcb = {};
  const byProduct: Record<string, MinimumTcb> = {};
  for (const [k, v] of Object.entries(t)) {
    if (PRODUCTS.includes(k)) {
      if (typeof v !== "object" || v === null || Array.isArray(v)) {
        fail(source, `"min_tcb.${k}" must be a table`);
      }
      byProduct[k] = {};
      for (const [c, n] of Object.entries(v)) {
        if (!TCB_KEYS.includes(c)) {
          fail(source, `unknown key "min_tcb.${k}.${c}"; known keys are ${TCB_KEYS.join(", ")}`);
        }
        byProduct[k][c as keyof MinimumTcb] = spl(source, `${k}.${c}`, n);
      }
      continue;
    }
    if (!TCB_KEYS.includes(k)) {
      fail(
        source,
        `unknown key "min_tcb.${k}"; known keys are ${TCB_KEYS.join(", ")} and the tables ${
          PRODUCTS.join(", ")
        }`,
      );
    }
    all[k as keyof MinimumTcb] = spl(source, k, v);
  }
  return {
    ...(Object.keys(all).length > 0 ? { all } : {}),
    ...(Object.keys(byProduct).length > 0 ? { byProduct } : {}),
  };
}

function vmplValue(source: string, value: unknown): number {
  const n = typeof value === "bigint" ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 0 || n > 3) {
    fail(source, `"max_vmpl" must be an integer from 0 to 3`);
  }
  return n;
}

function simulatedRootValue(source: string, v: unknown): false | string {
  if (v === false) return false;
  if (v === true) {
    fail(
      source,
      `"trust_simulated_root = true" (any simulated root) is no longer accepted: name the one ` +
        `root to trust, trust_simulated_root = "sha256:<hex>", with the fingerprint that ` +
        `"enarx keepmgr" prints at start`,
    );
  }
  const hex = typeof v === "string" ? v.replace(/^sha256:/i, "").replaceAll(":", "") : "";
  if (/^[0-9a-fA-F]{64}$/.test(hex)) return hex.toLowerCase();
  fail(source, `"trust_simulated_root" must be a SHA-256 fingerprint, "sha256:<64 hex digits>"`);
}

/** `[service_ca]`: `cert` and `key`, both file paths, resolved against `base` when given. */
function serviceCaValue(source: string, t: unknown, base: string | undefined): ServiceCaFiles {
  if (typeof t !== "object" || t === null || Array.isArray(t)) {
    fail(source, `"service_ca" must be a table with cert = "ca.pem" and key = "ca.key"`);
  }
  const table = t as Record<string, unknown>;
  for (const key of Object.keys(table)) {
    if (key !== "cert" && key !== "key") {
      fail(source, `unknown key "service_ca.${key}"; known keys are cert, key`);
    }
  }
  const path = (key: "cert" | "key"): string => {
    const value = table[key];
    if (typeof value !== "string" || value === "") {
      fail(source, `"service_ca.${key}" must be a file path (the CA's ${key}, PEM)`);
    }
    if (base === undefined || base === "." || value.startsWith("/")) return value;
    return `${base.replace(/\/+$/, "")}/${value}`;
  };
  return { cert: path("cert"), key: path("key") };
}

/**
 * Makes a Policy from a decoded TOML table (or any plain object with the same
 * keys). `source` names the file in error messages; `options.base` is the
 * folder that relative `[service_ca]` paths start at (default: as given).
 */
export function policyFromTable(
  table: Record<string, unknown>,
  source = "policy",
  options: { base?: string } = {},
): Policy {
  if (typeof table !== "object" || table === null || Array.isArray(table)) {
    fail(source, "a policy must be a table of keys");
  }
  for (const key of Object.keys(table)) {
    if (!TOP_KEYS.includes(key)) {
      fail(source, `unknown key "${key}"; known keys are ${TOP_KEYS.join(", ")}`);
    }
  }
  const policy: Policy = {
    allowDebug: false,
    allowMigration: false,
    trustSimulatedRoot: false,
  };
  if (table.platforms !== undefined) {
    policy.platforms = stringList(
      source,
      "platforms",
      table.platforms,
      FORMATS,
    ) as EvidenceFormat[];
  }
  if (table.products !== undefined) {
    policy.products = stringList(source, "products", table.products, PRODUCTS);
  }
  if (table.measurements !== undefined) {
    if (!Array.isArray(table.measurements)) fail(source, `"measurements" must be a list`);
    policy.measurements = table.measurements.map((m) => hexValue(source, "measurements", m, 64));
  }
  if (table.report_data !== undefined) {
    policy.reportData = hexValue(source, "report_data", table.report_data, 64);
  }
  if (table.host_data !== undefined) {
    policy.hostData = hexValue(source, "host_data", table.host_data, 32);
  }
  if (table.allow_debug !== undefined) {
    policy.allowDebug = boolValue(source, "allow_debug", table.allow_debug);
  }
  if (table.allow_migration !== undefined) {
    policy.allowMigration = boolValue(source, "allow_migration", table.allow_migration);
  }
  if (table.max_age_seconds !== undefined) {
    policy.maxAgeSeconds = positiveInteger(source, "max_age_seconds", table.max_age_seconds);
  }
  if (table.min_tcb !== undefined) {
    const { all, byProduct } = minTcbValue(source, table.min_tcb);
    if (all) policy.minTcb = all;
    if (byProduct) policy.minTcbByProduct = byProduct;
  }
  if (table.max_vmpl !== undefined) policy.maxVmpl = vmplValue(source, table.max_vmpl);
  if (table.require_collateral !== undefined) {
    policy.requireCollateral = boolValue(source, "require_collateral", table.require_collateral);
  }
  if (table.allowed_tcb_statuses !== undefined) {
    policy.allowedTcbStatuses = stringList(
      source,
      "allowed_tcb_statuses",
      table.allowed_tcb_statuses,
      TCB_STATUSES,
    );
  }
  if (table.trust_simulated_root !== undefined) {
    policy.trustSimulatedRoot = simulatedRootValue(source, table.trust_simulated_root);
  }
  if (table.service_ca !== undefined) {
    policy.serviceCa = serviceCaValue(source, table.service_ca, options.base);
  }
  return policy;
}

/**
 * Parses a policy from TOML text. Throws PolicyError with the line for bad
 * TOML. `options.base`: as for {@link policyFromTable}.
 */
export function parsePolicy(
  text: string,
  options: { source?: string; base?: string } = {},
): Policy {
  const source = options.source ?? "policy";
  let table: Record<string, unknown>;
  try {
    table = parseToml(text) as Record<string, unknown>;
  } catch (error) {
    const message = error instanceof TomlError
      ? error.message.split("\n")[0].replace(/\.$/, "")
      : String(error);
    throw new PolicyError(`Policy ${source} is not valid TOML: ${message}`, { cause: error });
  }
  return policyFromTable(table, source, { base: options.base });
}

/** Reads and parses a policy file; a missing file is an EnarxError with exit status 66. */
export async function readPolicyFile(path: string): Promise<Policy> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new EnarxError(
      "policy-unreadable",
      `Cannot read the policy "${path}": ${error instanceof Error ? error.message : error}`,
      { exit: "noInput", cause: error },
    );
  }
  return parsePolicy(text, { source: `"${path}"`, base: directoryOf(path) });
}

/**
 * The folder that holds `path` ("." when none is named). Here rather than
 * node:path's dirname: loading node:path cost every deploy ~6 ms of CPU.
 */
function directoryOf(path: string): string {
  const cut = path.replace(/\/+$/, "").lastIndexOf("/");
  return cut < 0 ? "." : cut === 0 ? "/" : path.slice(0, cut);
}
