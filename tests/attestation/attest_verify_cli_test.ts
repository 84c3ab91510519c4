import assert from "node:assert/strict";
import { encodeEvidenceBundle } from "../../runtime/attestation/bundle.ts";
import { SnpSimulator } from "../../runtime/attestation/amd/snp_sim.ts";
import { EVIDENCE, readEvidence } from "./amd/_snp_samples.ts";

const MAIN = new URL("../../cli/main.ts", import.meta.url).pathname;
const ev = (p: string) => new URL(p, EVIDENCE).pathname;

async function enarx(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

function assertOneLineError(stderr: string) {
  const lines = stderr.trim().split("\n");
  assert.equal(lines.length, 1, stderr);
  assert.match(lines[0], /^enarx: [A-Z]/);
  assert.doesNotMatch(stderr, /\bat .*\.ts:\d+/);
}

const tmp = Deno.makeTempDirSync({ prefix: "enarx-attest-cli-" });

Deno.test("attest verify: a real Milan report passes (exit 0) and prints each check", async () => {
  const r = await enarx([
    "attest",
    "verify",
    ev("sev-snp/02-virtee-milan-v2/report_milan.bin"),
    "--certs",
    ev("sev-snp/02-virtee-milan-v2/vcek_milan.der"),
    "--at",
    "2026-11-27",
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^PASS: snp evidence/);
  for (const id of ["chain", "root", "validity", "tcb-match", "chip-id", "signature", "debug"]) {
    assert.match(r.stdout, new RegExp(`ok +${id} `));
  }
  assert.match(r.stdout, /measurement +7a1e5c266c0108db/);
});

Deno.test("attest verify --json: the VLEK sample fails as expired now, passes --at inside", async () => {
  const args = [
    "attest",
    "verify",
    ev("sev-snp/04-trustee-milan-v3-vlek/test-vlek-report.bin"),
    "--certs",
    ev("sev-snp/04-trustee-milan-v3-vlek/"),
    "--json",
  ];
  const late = await enarx([...args, "--at", "2026-11-27T00:00:00Z"]);
  assert.equal(late.code, 1);
  const doc = JSON.parse(late.stdout);
  assert.equal(doc.schema, "enarx.attest.verify/v1");
  assert.equal(doc.ok, false);
  assert.equal(doc.verdict, "fail");
  assert.equal(doc.format, "snp");
  assert.equal(doc.at, "2026-11-27T00:00:00.000Z");
  // It was made at VMPL 1 (an AWS guest): the default max_vmpl = 0 refuses that too.
  assert.deepEqual(
    doc.checks.filter((c: { ok: boolean }) => !c.ok).map((c: { id: string }) => c.id),
    [
      "validity",
      "vmpl",
    ],
  );
  assert.equal(doc.claims.signingKey, "vlek");
  const insideStrict = await enarx([...args, "--at", "2025-06-01"]);
  assert.equal(insideStrict.code, 1, insideStrict.stdout);
  const policy = await Deno.makeTempFile({ suffix: ".toml" });
  await Deno.writeTextFile(policy, "max_vmpl = 1\n");
  const inside = await enarx([...args, "--at", "2025-06-01", "--policy", policy]);
  await Deno.remove(policy);
  assert.equal(inside.code, 0, inside.stdout);
  assert.equal(JSON.parse(inside.stdout).verdict, "pass");
});

Deno.test("attest verify: an Azure HCL report and a PEM chain pass", async () => {
  const r = await enarx([
    "attest",
    "verify",
    ev("sev-snp/09-trustee-azure-hcl-milan-v2/hcl-report.bin"),
    "--certs",
    ev("sev-snp/09-trustee-azure-hcl-milan-v2/vcek-chain.pem"),
    "--at",
    "2026-11-27",
  ]);
  assert.equal(r.code, 0, r.stdout);
});

Deno.test("attest verify: malformed evidence exits 65 with one line, never a stack trace", async () => {
  const report = readEvidence("sev-snp/02-virtee-milan-v2/report_milan.bin");
  const wrongVersion = report.slice();
  wrongVersion[0] = 9;
  const cases: [string, Uint8Array][] = [
    ["empty", new Uint8Array(0)],
    ["garbage", Uint8Array.from({ length: 3000 }, (_, i) => (i * 7919) & 0xff)],
    ["truncated", report.subarray(0, 600)],
    ["wrong-version", wrongVersion],
    ["huge", new Uint8Array(2 * 1024 * 1024)],
    ["bad-bundle", Uint8Array.of(0xa3, 0x66, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x74, 0x63, 0x73)],
  ];
  for (const [name, bytes] of cases) {
    const path = `${tmp}/${name}.bin`;
    await Deno.writeFile(path, bytes);
    const r = await enarx(["attest", "verify", path, "--format", "snp"]);
    assert.equal(r.code, 65, `${name}: ${r.stderr}`);
    assertOneLineError(r.stderr);
  }
  const json = await enarx(["attest", "verify", `${tmp}/garbage.bin`, "--json"]);
  assert.equal(json.code, 65);
  const doc = JSON.parse(json.stdout);
  assert.equal(doc.verdict, "error");
  assert.equal(doc.error.code, "evidence-malformed");
});

Deno.test("attest verify: a bad certificate file is malformed input (65)", async () => {
  await Deno.writeTextFile(`${tmp}/notes.txt`, "not a certificate");
  const r = await enarx([
    "attest",
    "verify",
    ev("sev-snp/02-virtee-milan-v2/report_milan.bin"),
    "--certs",
    `${tmp}/notes.txt`,
  ]);
  assert.equal(r.code, 65);
  assertOneLineError(r.stderr);
  assert.match(r.stderr, /notes\.txt/);
});

Deno.test("attest verify: usage errors exit 64, a missing file 66, a bad policy 78", async () => {
  const report = ev("sev-snp/02-virtee-milan-v2/report_milan.bin");
  const at = await enarx(["attest", "verify", report, "--at", "yesterday"]);
  assert.equal(at.code, 64);
  assertOneLineError(at.stderr);
  assert.equal((await enarx(["attest", "verify", report, "--format", "sev-es"])).code, 64);
  assert.equal((await enarx(["attest", "verify"])).code, 64);
  assert.equal((await enarx(["attest", "verify", `${tmp}/missing.bin`])).code, 66);
  await Deno.writeTextFile(`${tmp}/bad.toml`, "allow_debugg = true\n");
  const bad = await enarx(["attest", "verify", report, "--policy", `${tmp}/bad.toml`]);
  assert.equal(bad.code, 78);
  assert.match(bad.stderr, /unknown key "allow_debugg"/);
  const fmt = await enarx(["attest", "verify", report, "--format", "tdx"]);
  assert.equal(fmt.code, 65);
  assert.match(fmt.stderr, /looks like snp/);
});

Deno.test("attest verify: a simulated bundle passes only under a trusting policy, loudly", async () => {
  const sim = await SnpSimulator.open(`${tmp}/sim`);
  const { report, certs } = await sim.report(new Uint8Array(64).fill(1), {
    measurement: new Uint8Array(48).fill(2),
  });
  await Deno.writeFile(`${tmp}/sim.cbor`, encodeEvidenceBundle({ format: "snp", report, certs }));
  const untrusted = await enarx(["attest", "verify", `${tmp}/sim.cbor`]);
  assert.equal(untrusted.code, 1);
  assert.match(untrusted.stdout, /FAIL +root/);
  // Trust in a simulated root is by fingerprint only: untrusted, it is just an unknown root.
  assert.doesNotMatch(untrusted.stdout, /SIMULATED EVIDENCE/);
  assert.match(
    untrusted.stdout,
    new RegExp(`trust_simulated_root = "sha256:${sim.rootFingerprint}"`),
  );
  await Deno.writeTextFile(
    `${tmp}/trust.toml`,
    `trust_simulated_root = "sha256:${sim.rootFingerprint}"\nreport_data = "${"01".repeat(64)}"\n`,
  );
  const trusted = await enarx([
    "attest",
    "verify",
    `${tmp}/sim.cbor`,
    "--policy",
    `${tmp}/trust.toml`,
  ]);
  assert.equal(trusted.code, 0, trusted.stdout);
  assert.match(trusted.stdout, /proves NOTHING about hardware/);
  assert.match(trusted.stderr, /WARNING: this is SIMULATED evidence/);
  const json = await enarx([
    "attest",
    "verify",
    `${tmp}/sim.cbor`,
    "--policy",
    `${tmp}/trust.toml`,
    "--json",
  ]);
  assert.equal(JSON.parse(json.stdout).simulated, true);
});

Deno.test("attest verify: TDX evidence is dispatched to the TDX verifier", async () => {
  const r = await enarx([
    "attest",
    "verify",
    ev("tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat"),
    "--json",
  ]);
  assert.ok(r.code === 0 || r.code === 1, r.stderr);
  assert.equal(JSON.parse(r.stdout).format, "tdx");
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(tmp, { recursive: true });
  } catch {
    // already gone
  }
});
