/**
 * One evaluation of a policy over typed claims, for every evidence format.
 * Each verifier hands over what its evidence says as a {@link PolicySubject}
 * (the measurement, the report data, and where the format has them the SNP
 * product, guest policy bits, host data, reported TCB or a time) and the
 * evaluation makes the same checks in the same order for all:
 *
 * `platform`, `product`, `debug`, `migration`, `vmpl`, `measurement`,
 * `report-data`, `host-data`, `min-tcb`, `max-age`.
 *
 * A check is made only when the policy asks for it and the subject carries
 * what it needs (`product`, `debug` and `migration`, `host-data` and
 * `min-tcb` come only from SNP; SNP always gets `vmpl`, at most 0 unless the
 * policy's `max_vmpl` says more; `max-age` only from formats with a time).
 * Formats whose own verifier checks debug (TDX, SGX, Nitro) leave `guest`
 * out. Wording follows the format: SNP names its report fields and explains a
 * mismatch, the others give the value found.
 *
 * @module
 */
import { bytesEqual } from "../bytes.ts";
import type { Policy } from "./policy.ts";
import type { Check, EvidenceFormat } from "./result.ts";
import { decodeSnpTcb, type SnpProduct, type SnpTcb } from "./amd/snp_report.ts";

/** How a format words its policy checks and fits expected values to its fields. */
export interface PolicyProfile {
  /** The format's name in the `platform` check, e.g. "SEV-SNP" or "tdx". */
  platform: string;
  /** The `measurement` check's description. */
  measurement: string;
  /** The `report-data` check's description. */
  reportData: string;
  /**
   * "explain": a mismatch names what was expected (SNP); "value": the detail
   * is the value found, or that the evidence has none (the other formats).
   */
  mismatch: "explain" | "value";
  /**
   * "field": an expected value is cut or zero-padded to the claim's size
   * (SNP's fixed-size fields); "pad": it is only zero-padded, so a longer
   * value never matches.
   */
  fit: "field" | "pad";
}

/** What a policy is evaluated against: typed claims of one piece of evidence. */
export interface PolicySubject {
  /** The evidence format (the `platform` check). */
  format: EvidenceFormat;
  /** How the checks are worded. */
  profile: PolicyProfile;
  /** The measurement the policy's list is matched against; null when the format has none. */
  measurement: Uint8Array | null;
  /** The report data bound by the evidence; null when the format carries none. */
  reportData: Uint8Array | null;
  /** SNP: the product (undefined where the format has no product). */
  product?: SnpProduct | null;
  /** SNP: the guest policy's DEBUG and MIGRATE_MA bits (undefined where the verifier checks debug). */
  guest?: { debug: boolean; migrationAgent: boolean };
  /** SNP: HOST_DATA. */
  hostData?: Uint8Array;
  /** SNP: the VMPL the report was requested at. */
  vmpl?: number;
  /** SNP: REPORTED_TCB. */
  reportedTcb?: SnpTcb;
  /** When the evidence was made (ISO 8601), for formats that carry a time. */
  time?: string;
}

/** What the verifier expects beyond the policy, and when it verifies. */
export interface PolicyEvaluationOptions {
  /** The policy. */
  policy: Policy;
  /** The verification time (for `max-age`). */
  at: Date;
  /** An expected measurement, checked in addition to the policy's list. */
  measurement?: Uint8Array;
  /** Expected report data; overrides the policy's. */
  reportData?: Uint8Array;
}

/** SNP's profile: its report's field names, and mismatches explained. */
export const SNP_POLICY_PROFILE: PolicyProfile = Object.freeze({
  platform: "SEV-SNP",
  measurement: "The launch measurement is one the policy expects",
  reportData: "REPORT_DATA is what the verifier expects (binds the nonce and key)",
  mismatch: "explain",
  fit: "field",
});

/** The profile of the formats other than SNP: the value found is the detail. */
export function genericPolicyProfile(format: EvidenceFormat): PolicyProfile {
  return {
    platform: format,
    measurement: "The measurement is one the policy expects",
    reportData: "The report data is what the verifier expects",
    mismatch: "value",
    fit: "pad",
  };
}

function check(id: string, description: string, ok: boolean, detail: string): Check {
  return { id, description, ok, detail };
}

/** `bytes` zero-padded on the right to `size`; cut to `size` too when `fit` is "field". */
function fitTo(bytes: Uint8Array, size: number, fit: PolicyProfile["fit"]): Uint8Array {
  const out = new Uint8Array(fit === "field" ? size : Math.max(size, bytes.length));
  out.set(bytes.subarray(0, out.length));
  return out;
}

/**
 * Evaluates `options.policy` over `subject`: every check the policy asks for
 * and the subject can answer, in one fixed order. Never throws for evidence.
 */
export function evaluatePolicy(
  subject: PolicySubject,
  options: PolicyEvaluationOptions,
): Check[] {
  return [
    ...platformChecks(subject, options.policy),
    ...guestChecks(subject, options.policy),
    ...vmplChecks(subject, options.policy),
    ...measurementChecks(subject, options),
    ...reportDataChecks(subject, options),
    ...hostDataChecks(subject, options.policy),
    ...minTcbChecks(subject, options.policy),
    ...maxAgeChecks(subject, options),
  ];
}

/** `platform` (the policy's formats) and, where the format has one, `product`. */
function platformChecks(subject: PolicySubject, policy: Policy): Check[] {
  const checks: Check[] = [];
  if (policy.platforms) {
    checks.push(check(
      "platform",
      `The policy accepts ${subject.profile.platform} evidence`,
      policy.platforms.includes(subject.format),
      `allowed: ${policy.platforms.join(", ")}`,
    ));
  }
  if (policy.products && subject.product !== undefined) {
    const product = subject.product;
    checks.push(check(
      "product",
      "The policy accepts this product",
      product !== null && policy.products.includes(product),
      `${product ?? "unknown"}; allowed: ${policy.products.join(", ")}`,
    ));
  }
  return checks;
}

/** SNP's `debug` and `migration` checks of the guest policy bits. */
function guestChecks({ guest }: PolicySubject, policy: Policy): Check[] {
  if (guest === undefined) return [];
  return [
    check(
      "debug",
      "Debugging is off (POLICY.DEBUG), or the policy allows it",
      !guest.debug || policy.allowDebug,
      guest.debug
        ? policy.allowDebug
          ? "DEBUG is set, allowed by policy: the host can read the guest's memory"
          : "DEBUG is set: the host can read and change the guest's memory; set allow_debug = true only for development"
        : "DEBUG is off",
    ),
    check(
      "migration",
      "No migration agent may be bound (POLICY.MIGRATE_MA), or the policy allows it",
      !guest.migrationAgent || policy.allowMigration,
      guest.migrationAgent
        ? policy.allowMigration
          ? "MIGRATE_MA is set, allowed by policy"
          : "MIGRATE_MA is set; set allow_migration = true to accept it"
        : "MIGRATE_MA is off",
    ),
  ];
}

/**
 * SNP's `vmpl`: the report was requested at a VMPL no higher than the
 * policy's `max_vmpl` (default 0). At a higher VMPL a more privileged guest
 * component (an SVSM or paravisor) sits between the workload and the
 * hardware and can change what the workload runs.
 */
function vmplChecks({ vmpl }: PolicySubject, policy: Policy): Check[] {
  if (vmpl === undefined) return [];
  const max = policy.maxVmpl ?? 0;
  return [check(
    "vmpl",
    `The report was made at VMPL ${max === 0 ? "0" : `0 to ${max}`} (max_vmpl)`,
    vmpl <= max,
    vmpl <= max
      ? `VMPL ${vmpl}`
      : `VMPL ${vmpl}: a more privileged guest layer can change the workload; set max_vmpl = ${vmpl} to accept it`,
  )];
}

/** `measurement`: one of the policy's (or the verifier's), shorter values zero-padded. */
function measurementChecks(subject: PolicySubject, options: PolicyEvaluationOptions): Check[] {
  const expected = [
    ...(options.policy.measurements ?? []),
    ...(options.measurement ? [options.measurement] : []),
  ];
  if (expected.length === 0) return [];
  const m = subject.measurement;
  const fit = subject.profile.fit;
  const ok = m !== null && expected.some((x) => bytesEqual(fitTo(x, m.length, fit), m));
  let detail: string;
  if (m === null) detail = "the evidence has no measurement";
  else if (ok || subject.profile.mismatch === "value") detail = m.toHex();
  else detail = `${m.toHex()} is not among ${expected.length} expected measurement(s)`;
  return [check("measurement", subject.profile.measurement, ok, detail)];
}

/** `report-data`: exactly the expected bytes, zero-padded to the field's size. */
function reportDataChecks(subject: PolicySubject, options: PolicyEvaluationOptions): Check[] {
  const expected = options.reportData ?? options.policy.reportData;
  if (!expected) return [];
  const got = subject.reportData;
  const fit = subject.profile.fit;
  const ok = got !== null && expected.length <= got.length &&
    bytesEqual(fitTo(expected, got.length, fit), got);
  let detail: string;
  if (got === null) detail = "the evidence carries no report data";
  else if (ok || subject.profile.mismatch === "value") detail = got.toHex();
  else detail = `expected ${fitTo(expected, got.length, fit).toHex()}, got ${got.toHex()}`;
  return [check("report-data", subject.profile.reportData, ok, detail)];
}

/** SNP's `host-data`: HOST_DATA equals the policy's, zero-padded to 32 bytes. */
function hostDataChecks({ hostData }: PolicySubject, policy: Policy): Check[] {
  if (!policy.hostData || hostData === undefined) return [];
  const want = fitTo(policy.hostData, 32, "field");
  const ok = bytesEqual(want, hostData);
  return [check(
    "host-data",
    "HOST_DATA is what the policy expects",
    ok,
    ok ? hostData.toHex() : `expected ${want.toHex()}, got ${hostData.toHex()}`,
  )];
}

/** SNP's `min-tcb`: REPORTED_TCB at least the policy's minimum per component. */
function minTcbChecks(subject: PolicySubject, policy: Policy): Check[] {
  const minimum = {
    ...policy.minTcb,
    ...(subject.product ? policy.minTcbByProduct?.[subject.product] : undefined),
  };
  if (Object.keys(minimum).length === 0 || subject.reportedTcb === undefined) return [];
  const tcb = decodeSnpTcb(subject.reportedTcb.raw, subject.product ?? null);
  const low: string[] = [];
  for (const [name, min] of Object.entries(minimum)) {
    if (min === undefined) continue;
    const have = tcb[name as keyof typeof minimum];
    if (have === null && name === "fmc") continue; // FMC exists on Turin only
    if (have === null || have < min) low.push(`${name} ${have ?? "absent"} < ${min}`);
  }
  return [check(
    "min-tcb",
    "REPORTED_TCB is at least the policy's minimum per component",
    low.length === 0,
    low.length === 0
      ? `bootloader ${tcb.bootloader}, tee ${tcb.tee}, snp ${tcb.snp}, microcode ${tcb.microcode}${
        tcb.fmc === null ? "" : `, fmc ${tcb.fmc}`
      }`
      : low.join("; "),
  )];
}

/** `max-age`: the evidence's time at most `maxAgeSeconds` before the verification time. */
function maxAgeChecks({ time }: PolicySubject, options: PolicyEvaluationOptions): Check[] {
  const max = options.policy.maxAgeSeconds;
  if (max === undefined || time === undefined) return [];
  const age = (options.at.getTime() - new Date(time).getTime()) / 1000;
  return [check(
    "max-age",
    `The evidence is at most ${max} s old`,
    age <= max,
    `made ${time}, ${Math.round(age)} s before ${options.at.toISOString()}`,
  )];
}
