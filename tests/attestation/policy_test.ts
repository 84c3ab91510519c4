import assert from "node:assert/strict";
import {
  parsePolicy,
  PolicyError,
  policyFromTable,
  readPolicyFile,
} from "../../runtime/attestation/policy.ts";
import { EnarxError } from "../../runtime/errors.ts";

Deno.test("policy: an empty policy refuses debug and migration and trusts no simulated root", () => {
  const p = parsePolicy("");
  assert.equal(p.allowDebug, false);
  assert.equal(p.allowMigration, false);
  assert.equal(p.trustSimulatedRoot, false);
  assert.equal(p.measurements, undefined);
});

Deno.test("policy: every key parses", () => {
  const p = parsePolicy(`
platforms = ["snp", "tdx"]
products = ["Milan", "Turin"]
measurements = ["0a0b", "0x0c0d"]
report_data = "ff"
host_data = "01"
allow_debug = true
allow_migration = true
max_age_seconds = 300
trust_simulated_root = "${"AB".repeat(32)}"

[min_tcb]
bootloader = 3
tee = 0
snp = 8
microcode = 115
fmc = 1
`);
  assert.deepEqual(p.platforms, ["snp", "tdx"]);
  assert.deepEqual(p.products, ["Milan", "Turin"]);
  assert.deepEqual(p.measurements, [Uint8Array.of(10, 11), Uint8Array.of(12, 13)]);
  assert.deepEqual(p.reportData, Uint8Array.of(255));
  assert.deepEqual(p.hostData, Uint8Array.of(1));
  assert.equal(p.allowDebug, true);
  assert.equal(p.allowMigration, true);
  assert.equal(p.maxAgeSeconds, 300);
  assert.equal(p.trustSimulatedRoot, "ab".repeat(32));
  assert.deepEqual(p.minTcb, { bootloader: 3, tee: 0, snp: 8, microcode: 115, fmc: 1 });
  const prefixed = parsePolicy(`trust_simulated_root = "sha256:${"CD".repeat(32)}"`);
  assert.equal(prefixed.trustSimulatedRoot, "cd".repeat(32));
  assert.equal(parsePolicy("trust_simulated_root = false").trustSimulatedRoot, false);
});

for (
  const [name, text, pattern] of [
    ["an unknown key", "allow_debugg = true", /unknown key "allow_debugg"/],
    ["an unknown min_tcb key", "[min_tcb]\nucode = 1", /unknown key "min_tcb.ucode"/],
    ["bad TOML", "allow_debug = ", /not valid TOML/],
    ["a wrong type", 'allow_debug = "no"', /"allow_debug" must be true or false/],
    ["an unknown platform", 'platforms = ["sev-es"]', /"platforms" has "sev-es"/],
    ["an unknown product", 'products = ["Naples"]', /"products" has "Naples"/],
    ["bad hex", 'report_data = "xyz"', /not hexadecimal/],
    ["too much report data", `report_data = "${"00".repeat(65)}"`, /1 to 64 bytes/],
    ["an SPL out of range", "[min_tcb]\nsnp = 256", /0 to 255/],
    ["a bad fingerprint", 'trust_simulated_root = "abc"', /SHA-256 fingerprint/],
    [
      "the old boolean trust_simulated_root = true",
      "trust_simulated_root = true",
      /no longer accepted: .*trust_simulated_root = "sha256:<hex>"/,
    ],
    ["a bad age", "max_age_seconds = -1", /positive integer/],
  ] as const
) {
  Deno.test(`policy: ${name} is a PolicyError (exit 78)`, () => {
    assert.throws(() => parsePolicy(text, { source: '"p.toml"' }), (e: unknown) => {
      assert.ok(e instanceof PolicyError);
      assert.equal(e.code, "policy-invalid");
      assert.equal(e.exitStatus, 78);
      assert.match(e.message, pattern);
      assert.match(e.message, /^Policy "p\.toml"/);
      return true;
    });
  });
}

Deno.test("policy: a missing file is exit status 66", async () => {
  await assert.rejects(() => readPolicyFile("/nonexistent/policy.toml"), (e: unknown) => {
    assert.ok(e instanceof EnarxError);
    assert.equal(e.exitStatus, 66);
    assert.match(e.message, /\/nonexistent\/policy\.toml/);
    return true;
  });
});

Deno.test("policy: policyFromTable refuses a value that is not a table, with PolicyError", () => {
  for (const value of [null, undefined, 3, "x", []]) {
    assert.throws(
      () => policyFromTable(value as unknown as Record<string, unknown>, "test"),
      (e: unknown) => e instanceof PolicyError && /must be a table/.test(e.message),
    );
  }
});

Deno.test("policy: max_vmpl, require_collateral and [min_tcb.<Product>] tables", () => {
  const p = parsePolicy(
    "max_vmpl = 2\nrequire_collateral = false\n[min_tcb]\nbootloader = 3\n" +
      "[min_tcb.Genoa]\nsnp = 22\n[min_tcb.Turin]\nfmc = 1\n",
  );
  assert.equal(p.maxVmpl, 2);
  assert.equal(p.requireCollateral, false);
  assert.deepEqual(p.minTcb, { bootloader: 3 });
  assert.deepEqual(p.minTcbByProduct, { Genoa: { snp: 22 }, Turin: { fmc: 1 } });
  const none = parsePolicy("");
  assert.equal(none.maxVmpl, undefined, "default: VMPL 0 only");
  assert.equal(none.requireCollateral, undefined, "default: the caller's");
  for (
    const [text, message] of [
      ["max_vmpl = 4", /0 to 3/],
      ["require_collateral = 1", /true or false/],
      ["[min_tcb.Naples]\nsnp = 1", /unknown key "min_tcb.Naples"/],
      ["[min_tcb.Genoa]\nucode = 1", /unknown key "min_tcb.Genoa.ucode"/],
      ["[min_tcb]\nGenoa = 3", /"min_tcb.Genoa" must be a table/],
    ] as const
  ) {
    assert.throws(() => parsePolicy(text), (e: unknown) => {
      assert.ok(e instanceof PolicyError, text);
      assert.match(e.message, message);
      return true;
    });
  }
});

Deno.test("policy: [service_ca] names the deployer's CA files, relative to the policy file's folder", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/policy.toml`;
    await Deno.writeTextFile(path, '[service_ca]\ncert = "ca/ca.pem"\nkey = "/keys/ca.key"\n');
    const p = await readPolicyFile(path);
    assert.deepEqual(p.serviceCa, { cert: `${dir}/ca/ca.pem`, key: "/keys/ca.key" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  // Text without a file: paths as given, unless a base is passed.
  const text = '[service_ca]\ncert = "ca.pem"\nkey = "ca.key"\n';
  assert.deepEqual(parsePolicy(text).serviceCa, { cert: "ca.pem", key: "ca.key" });
  assert.deepEqual(parsePolicy(text, { base: "/etc/enarx" }).serviceCa, {
    cert: "/etc/enarx/ca.pem",
    key: "/etc/enarx/ca.key",
  });
  assert.equal(parsePolicy("").serviceCa, undefined);
  for (
    const [bad, message] of [
      ['service_ca = "ca.pem"', /"service_ca" must be a table with cert = "ca\.pem"/],
      ['[service_ca]\ncert = "ca.pem"', /"service_ca\.key" must be a file path/],
      ['[service_ca]\ncert = ""\nkey = "k"', /"service_ca\.cert" must be a file path/],
      ['[service_ca]\ncert = "c"\nkey = "k"\ndays = 3', /unknown key "service_ca\.days"/],
    ] as const
  ) {
    assert.throws(() => parsePolicy(bad, { source: '"p.toml"' }), (e: unknown) => {
      assert.ok(e instanceof PolicyError, bad);
      assert.equal(e.exitStatus, 78);
      assert.match(e.message, message);
      return true;
    });
  }
});
