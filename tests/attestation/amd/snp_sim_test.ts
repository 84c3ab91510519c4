import assert from "node:assert/strict";
import { claimsToJson } from "../../../runtime/attestation/claims_json.ts";
import { SNP_SIM_STATE_FILE, SnpSimulator } from "../../../runtime/attestation/amd/snp_sim.ts";
import { verifySnpReport } from "../../../runtime/attestation/amd/snp_verify.ts";
import { parseSnpReport } from "../../../runtime/attestation/amd/snp_report.ts";
import { DEFAULT_POLICY } from "../../../runtime/attestation/policy.ts";
import { reversed } from "../../../runtime/attestation/_bytes.ts";
import { X509Certificate, X509CrlGenerator } from "../../../runtime/x509.ts";
import { EnarxError } from "../../../runtime/errors.ts";
import { loadSample, SNP_SAMPLES } from "./_snp_samples.ts";
import { failingChecks as failed } from "../_verification.ts";

const NOW = new Date();
const MEASUREMENT = Uint8Array.from({ length: 48 }, (_, i) => i + 1);
const DATA = Uint8Array.from({ length: 64 }, (_, i) => 255 - i);

// One state directory for the whole file: making its RSA-4096 keys takes seconds.
const stateDir = Deno.makeTempDirSync({ prefix: "enarx-snp-sim-test-" });
let simPromise: Promise<SnpSimulator> | undefined;
function sim(): Promise<SnpSimulator> {
  simPromise ??= SnpSimulator.open(stateDir);
  return simPromise;
}

/** Re-signs a changed report with the simulator's VCEK, read from its state file. */
async function resign(report: Uint8Array): Promise<Uint8Array> {
  const state = JSON.parse(await Deno.readTextFile(`${stateDir}/${SNP_SIM_STATE_FILE}`));
  const key = await crypto.subtle.importKey(
    "pkcs8",
    Uint8Array.from(atob(state.keys.vcek), (c) => c.charCodeAt(0)),
    { name: "ECDSA", namedCurve: "P-384" },
    false,
    ["sign"],
  );
  const out = report.slice();
  const sig = new Uint8Array(
    await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-384" }, key, out.subarray(0, 0x2a0)),
  );
  out.set(reversed(sig.subarray(0, 48)), 0x2a0);
  out.set(reversed(sig.subarray(48)), 0x2e8);
  return out;
}

Deno.test("snp-sim: a report verifies when the simulated root is trusted", async () => {
  const s = await sim();
  const { report, certs } = await s.report(DATA, { measurement: MEASUREMENT });
  assert.equal(certs.length, 3);
  const result = await verifySnpReport(report, {
    certs,
    at: NOW,
    simulatorRoots: [s.rootFingerprint],
  });
  assert.deepEqual(failed(result), []);
  assert.equal(result.ok, true);
  assert.equal(result.simulated, true);
  assert.equal(claimsToJson(result.claims).version, 3);
  assert.equal(claimsToJson(result.claims).measurement, MEASUREMENT.toHex());
  assert.equal(claimsToJson(result.claims).reportData, DATA.toHex());
  assert.equal(claimsToJson(result.claims).chipId, s.chipId.toHex());
  assert.equal(claimsToJson(result.claims).debug, false);
  assert.match(result.checks.find((c) => c.id === "root")!.detail!, /proves nothing/);
});

Deno.test("snp-sim: the simulated root is untrusted by default, and by another fingerprint", async () => {
  const s = await sim();
  const { report, certs } = await s.report(DATA, { measurement: MEASUREMENT });
  const plain = await verifySnpReport(report, { certs, at: NOW });
  assert.deepEqual(failed(plain), ["root"]);
  // Not trusted by fingerprint: simply an untrusted root, whatever its subject says.
  assert.equal(plain.simulated, false);
  assert.match(plain.checks.find((c) => c.id === "root")!.detail!, /not a pinned AMD ARK/);
  const other = await verifySnpReport(report, {
    certs,
    at: NOW,
    policy: { ...DEFAULT_POLICY, trustSimulatedRoot: "00".repeat(32) },
  });
  assert.deepEqual(failed(other), ["root"]);
  const named = await verifySnpReport(report, {
    certs,
    at: NOW,
    policy: { ...DEFAULT_POLICY, trustSimulatedRoot: s.rootFingerprint },
  });
  assert.deepEqual(failed(named), []);
  const prefixed = await verifySnpReport(report, {
    certs,
    at: NOW,
    simulatorRoots: [`sha256:${s.rootFingerprint}`],
  });
  assert.equal(prefixed.ok, true);
  assert.equal(prefixed.simulated, true);
  const wrong = await verifySnpReport(report, {
    certs,
    at: NOW,
    simulatorRoots: ["ab".repeat(32)],
  });
  assert.deepEqual(failed(wrong), ["root"]);
  assert.equal(wrong.simulated, false);
});

Deno.test("snp-sim: another simulator's evidence is refused when one simulator is trusted", async () => {
  const s = await sim();
  const foreignDir = await Deno.makeTempDir({ prefix: "enarx-snp-sim-foreign-" });
  try {
    const foreign = await SnpSimulator.open(foreignDir);
    const { report, certs } = await foreign.report(DATA, { measurement: MEASUREMENT });
    const r = await verifySnpReport(report, {
      certs,
      at: NOW,
      simulatorRoots: [s.rootFingerprint],
    });
    assert.deepEqual(failed(r), ["root"]);
    assert.equal(r.simulated, false);
  } finally {
    await Deno.remove(foreignDir, { recursive: true });
  }
});

Deno.test("snp-sim: every subject says SIMULATED; the VCEK carries AMD's extensions", async () => {
  const s = await sim();
  for (const der of s.certs()) {
    const cert = new X509Certificate(der);
    assert.match(cert.subject, /SIMULATED/);
    assert.deepEqual(cert.signatureAlgorithm, {
      name: "RSA-PSS",
      hash: { name: "SHA-384" },
      saltLength: 48,
    });
  }
  const vcek = new X509Certificate(s.vcekDer);
  const oids = vcek.extensions.map((e) => e.type);
  for (const o of ["1.3.6.1.4.1.3704.1.3.1", "1.3.6.1.4.1.3704.1.3.8", "1.3.6.1.4.1.3704.1.4"]) {
    assert.ok(oids.includes(o), o);
  }
});

Deno.test("snp-sim: the state directory persists the chain and chip id", async () => {
  const s = await sim();
  // A different spelling of the same directory bypasses the in-process cache.
  const again = await SnpSimulator.open(`${stateDir}/.`);
  assert.notEqual(again, s);
  assert.equal(again.rootFingerprint, s.rootFingerprint);
  assert.deepEqual(again.chipId, s.chipId);
  assert.deepEqual(again.vcekDer, s.vcekDer);
  const mode = (await Deno.stat(`${stateDir}/${SNP_SIM_STATE_FILE}`)).mode! & 0o777;
  assert.equal(mode, 0o600);
});

Deno.test("snp-sim: report data is zero-padded, host data and VMPL are set", async () => {
  const s = await sim();
  const { report } = await s.report(Uint8Array.of(1, 2, 3), {
    measurement: MEASUREMENT,
    hostData: Uint8Array.of(9),
    vmpl: 2,
  });
  const r = parseSnpReport(report);
  assert.equal(r.reportData.toHex(), "010203" + "00".repeat(61));
  assert.equal(r.hostData.toHex(), "09" + "00".repeat(31));
  assert.equal(r.vmpl, 2);
  assert.equal(r.product, "Milan");
  assert.deepEqual(r.formatProblems, []);
});

Deno.test("snp-sim: bad arguments are refused", async () => {
  const s = await sim();
  await assert.rejects(
    () => s.report(new Uint8Array(65), { measurement: MEASUREMENT }),
    RangeError,
  );
  await assert.rejects(() => s.report(DATA, { measurement: new Uint8Array(32) }), RangeError);
  await assert.rejects(
    () => s.report(DATA, { measurement: MEASUREMENT, vmpl: 4 }),
    RangeError,
  );
});

Deno.test("snp-sim: debug evidence fails 'debug' under a refusing policy, passes when allowed", async () => {
  const s = await sim();
  const { report, certs } = await s.report(DATA, { measurement: MEASUREMENT });
  const debug = report.slice();
  debug[0x0a] |= 0x08; // POLICY bit 19
  const signed = await resign(debug);
  const refused = await verifySnpReport(signed, {
    certs,
    at: NOW,
    simulatorRoots: [s.rootFingerprint],
  });
  assert.deepEqual(failed(refused), ["debug"]);
  const allowed = await verifySnpReport(signed, {
    certs,
    at: NOW,
    simulatorRoots: [s.rootFingerprint],
    policy: { ...DEFAULT_POLICY, allowDebug: true },
  });
  assert.deepEqual(failed(allowed), []);
  const ma = report.slice();
  ma[0x0a] |= 0x04; // POLICY bit 18, MIGRATE_MA
  const maResult = await verifySnpReport(await resign(ma), {
    certs,
    at: NOW,
    simulatorRoots: [s.rootFingerprint],
  });
  assert.deepEqual(failed(maResult), ["migration"]);
});

Deno.test("snp-sim: a VCEK whose TCB differs from REPORTED_TCB fails 'tcb-match' alone", async () => {
  const s = await sim();
  const { report, certs } = await s.report(DATA, { measurement: MEASUREMENT });
  const bumped = report.slice();
  bumped[0x187] += 1; // REPORTED_TCB microcode
  const result = await verifySnpReport(await resign(bumped), {
    certs,
    at: NOW,
    simulatorRoots: [s.rootFingerprint],
  });
  assert.deepEqual(failed(result), ["tcb-match"]);
});

Deno.test("snp-sim: a chip id other than the VCEK's hwID fails 'chip-id' alone", async () => {
  const s = await sim();
  const { report, certs } = await s.report(DATA, { measurement: MEASUREMENT });
  const other = report.slice();
  other[0x1a0] ^= 1;
  const result = await verifySnpReport(await resign(other), {
    certs,
    at: NOW,
    simulatorRoots: [s.rootFingerprint],
  });
  assert.deepEqual(failed(result), ["chip-id"]);
});

Deno.test("snp-sim: a report signed by the wrong chain fails", async () => {
  const s = await sim();
  const { report } = await s.report(DATA, { measurement: MEASUREMENT });
  const amd = loadSample(SNP_SAMPLES[0]).certs;
  const result = await verifySnpReport(report, {
    certs: amd,
    at: NOW,
    simulatorRoots: [s.rootFingerprint],
  });
  assert.ok(failed(result).includes("signature"));
  assert.equal(result.ok, false);
  // And a real report with the simulated chain: AMD's pinned roots do not sign it.
  const real = loadSample(SNP_SAMPLES[0]).report;
  const mixed = await verifySnpReport(real, {
    certs: s.certs(),
    at: NOW,
    simulatorRoots: [s.rootFingerprint],
  });
  assert.ok(failed(mixed).includes("signature"));
});

Deno.test("snp-sim: a damaged state file is a clear error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "enarx-snp-sim-bad-" });
  await Deno.writeTextFile(`${dir}/${SNP_SIM_STATE_FILE}`, "{ not json");
  await assert.rejects(() => SnpSimulator.open(dir), (e: unknown) => {
    assert.ok(e instanceof EnarxError);
    assert.equal(e.code, "snp-sim-state");
    assert.match(e.message, /remove it/);
    return true;
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("snp-sim: a state file whose certificate is cut short is a clear error", async () => {
  await sim(); // the shared state exists
  const state = JSON.parse(await Deno.readTextFile(`${stateDir}/${SNP_SIM_STATE_FILE}`));
  const dir = await Deno.makeTempDir({ prefix: "enarx-snp-sim-bad-" });
  try {
    const der = Uint8Array.fromBase64(state.certs.ask);
    state.certs.ask = der.subarray(0, der.length - 1).toBase64();
    await Deno.writeTextFile(`${dir}/${SNP_SIM_STATE_FILE}`, JSON.stringify(state));
    await assert.rejects(() => SnpSimulator.open(dir), (e: unknown) => {
      assert.ok(e instanceof EnarxError);
      assert.equal(e.code, "snp-sim-state");
      assert.match(e.message, /its ask certificate is not one DER SEQUENCE.*remove it/);
      return true;
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("snp-sim: flipping any bit of a simulated report's signed region fails", async () => {
  const s = await sim();
  const { report, certs } = await s.report(DATA, { measurement: MEASUREMENT });
  const bytes = report.slice();
  const survivors: number[] = [];
  for (let bit = 0; bit < 0x2a0 * 8; bit += 7) {
    bytes[bit >> 3] ^= 1 << (bit & 7);
    const r = await verifySnpReport(bytes, { certs, at: NOW, simulatorRoots: [s.rootFingerprint] })
      .catch(() => null);
    if (r?.ok) survivors.push(bit);
    bytes[bit >> 3] ^= 1 << (bit & 7);
  }
  assert.deepEqual(survivors, []);
});

/** A CRL signed by the simulated ARK (AMD's KDS CRLs are signed by the ARK and list ASKs). */
async function simCrl(serials: string[], thisUpdate: Date): Promise<Uint8Array> {
  const s = await sim();
  const state = JSON.parse(await Deno.readTextFile(`${stateDir}/${SNP_SIM_STATE_FILE}`));
  const key = await crypto.subtle.importKey(
    "pkcs8",
    Uint8Array.from(atob(state.keys.ark), (c) => c.charCodeAt(0)),
    { name: "RSA-PSS", hash: "SHA-384" },
    false,
    ["sign"],
  );
  const crl = await X509CrlGenerator.create({
    issuer: new X509Certificate(s.arkDer).subject,
    thisUpdate,
    nextUpdate: new Date(thisUpdate.getTime() + 7 * 86400_000),
    entries: serials.map((serialNumber) => ({ serialNumber, revocationDate: thisUpdate })),
    signingAlgorithm: { name: "RSA-PSS", saltLength: 48 } as Algorithm,
    signingKey: key,
  });
  return new Uint8Array(crl.rawData);
}

Deno.test("snp-sim: a CRL that revokes the ASK fails 'revocation'; one that does not passes", async () => {
  const s = await sim();
  const { report, certs } = await s.report(DATA, { measurement: MEASUREMENT });
  const askSerial = new X509Certificate(s.askDer).serialNumber;
  const issued = new Date(NOW.getTime() - 3600_000);
  const revoking = await simCrl([askSerial], issued);
  const r1 = await verifySnpReport(report, {
    certs,
    at: NOW,
    simulatorRoots: [s.rootFingerprint],
    crls: [revoking],
  });
  assert.deepEqual(failed(r1), ["revocation"]);
  assert.match(r1.checks.find((c) => c.id === "revocation")!.detail!, /is revoked/);
  const clean = await simCrl(["0badbeef"], issued);
  const r2 = await verifySnpReport(report, {
    certs,
    at: NOW,
    simulatorRoots: [s.rootFingerprint],
    crls: [clean],
  });
  assert.deepEqual(failed(r2), []);
  assert.ok(r2.checks.some((c) => c.id === "revocation"));
  // A CRL whose signature is broken is not believed.
  const broken = clean.slice();
  broken[broken.length - 5] ^= 1;
  const r3 = await verifySnpReport(report, {
    certs,
    at: NOW,
    simulatorRoots: [s.rootFingerprint],
    crls: [broken],
  });
  assert.deepEqual(failed(r3), ["revocation"]);
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(stateDir, { recursive: true });
  } catch {
    // already gone
  }
});
