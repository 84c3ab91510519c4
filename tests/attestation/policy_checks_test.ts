import assert from "node:assert/strict";
import {
  evaluatePolicy,
  genericPolicyProfile,
  type PolicySubject,
  SNP_POLICY_PROFILE,
} from "../../runtime/attestation/policy_checks.ts";
import { parsePolicy } from "../../runtime/attestation/policy.ts";
import { decodeSnpTcb } from "../../runtime/attestation/amd/snp_report.ts";

const at = new Date("2026-01-01T00:00:00Z");

function snpSubject(over: Partial<PolicySubject> = {}): PolicySubject {
  return {
    format: "snp",
    profile: SNP_POLICY_PROFILE,
    measurement: new Uint8Array(48).fill(0xaa),
    reportData: new Uint8Array(64).fill(0x11),
    product: "Milan",
    guest: { debug: false, migrationAgent: false },
    hostData: new Uint8Array(32),
    reportedTcb: decodeSnpTcb(Uint8Array.of(3, 0, 0, 0, 0, 0, 8, 115), "Milan"),
    ...over,
  };
}

Deno.test("policy checks: one order for every check the policy asks for", () => {
  const policy = parsePolicy(`
platforms = ["snp"]
products = ["Milan"]
measurements = ["${"aa".repeat(48)}"]
report_data = "${"11".repeat(64)}"
host_data = "00"
max_age_seconds = 60
[min_tcb]
snp = 8
`);
  const checks = evaluatePolicy(snpSubject({ time: "2025-12-31T23:59:30Z" }), { policy, at });
  assert.deepEqual(checks.map((c) => c.id), [
    "platform",
    "product",
    "debug",
    "migration",
    "measurement",
    "report-data",
    "host-data",
    "min-tcb",
    "max-age",
  ]);
  assert.ok(checks.every((c) => c.ok), JSON.stringify(checks.filter((c) => !c.ok)));
  assert.equal(checks[0].description, "The policy accepts SEV-SNP evidence");
});

Deno.test("policy checks: a format without guest bits, product or host data gets none of those checks", () => {
  const policy = parsePolicy(`
products = ["Milan"]
host_data = "00"
measurements = ["ab"]
[min_tcb]
snp = 8
`);
  const subject: PolicySubject = {
    format: "tdx",
    profile: genericPolicyProfile("tdx"),
    measurement: Uint8Array.of(0xab, 0, 0),
    reportData: null,
  };
  const checks = evaluatePolicy(subject, { policy, at });
  assert.deepEqual(checks, [{
    id: "measurement",
    description: "The measurement is one the policy expects",
    ok: true,
    detail: "ab0000",
  }]);
});

Deno.test("policy checks: SNP explains a mismatch, the others give the value found", () => {
  const policy = parsePolicy(`report_data = "22"`);
  const snp = evaluatePolicy(snpSubject(), { policy, at })[2];
  assert.equal(snp.id, "report-data");
  assert.equal(snp.ok, false);
  assert.equal(snp.detail, `expected 22${"00".repeat(63)}, got ${"11".repeat(64)}`);
  const nitro = evaluatePolicy({
    format: "nitro",
    profile: genericPolicyProfile("nitro"),
    measurement: null,
    reportData: null,
  }, { policy, at });
  assert.deepEqual(nitro, [{
    id: "report-data",
    description: "The report data is what the verifier expects",
    ok: false,
    detail: "the evidence carries no report data",
  }]);
});

Deno.test("policy checks: the verifier's report data overrides the policy's and its measurement adds to the list", () => {
  const policy = parsePolicy(`report_data = "22"\nmeasurements = ["bb"]`);
  const checks = evaluatePolicy(snpSubject(), {
    policy,
    at,
    reportData: new Uint8Array(64).fill(0x11),
    measurement: new Uint8Array(48).fill(0xaa),
  });
  const byId = Object.fromEntries(checks.map((c) => [c.id, c.ok]));
  assert.equal(byId["report-data"], true);
  assert.equal(byId["measurement"], true);
});

Deno.test("policy checks: SNP fits expected values to its fields; other formats never cut them", () => {
  const policy = parsePolicy(`measurements = ["${"aa".repeat(48)}ff"]`);
  const snp = evaluatePolicy(snpSubject(), { policy, at });
  assert.equal(snp.find((c) => c.id === "measurement")?.ok, true);
  const sgx = evaluatePolicy({
    format: "sgx",
    profile: genericPolicyProfile("sgx"),
    measurement: new Uint8Array(48).fill(0xaa),
    reportData: null,
  }, { policy, at });
  assert.equal(sgx[0].ok, false);
});
