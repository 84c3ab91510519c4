import assert from "node:assert/strict";
import {
  decodeSnpTcb,
  parseSnpReport,
  SNP_REPORT_LAYOUT,
  SNP_REPORT_SIZE,
} from "../../../runtime/attestation/amd/snp_report.ts";
import { MalformedEvidenceError } from "../../../runtime/attestation/result.ts";

import { readEvidence, SNP_SAMPLES } from "./_snp_samples.ts";

Deno.test("snp report layout: fields tile the 1184 bytes with the spec's offsets", () => {
  let end = 0;
  for (const f of [...SNP_REPORT_LAYOUT.fields].sort((a, b) => a.offset - b.offset)) {
    assert.equal(f.offset, end, `gap before ${f.name}`);
    end = f.offset + f.size;
  }
  assert.equal(end, SNP_REPORT_SIZE);
  const at = (n: keyof typeof SNP_REPORT_LAYOUT.byName) => SNP_REPORT_LAYOUT.byName[n].offset;
  assert.equal(at("reportData"), 0x50);
  assert.equal(at("measurement"), 0x90);
  assert.equal(at("reportedTcb"), 0x180);
  assert.equal(at("chipId"), 0x1a0);
  assert.equal(at("launchMitVector"), 0x1f8);
  assert.equal(at("signatureR"), 0x2a0);
  assert.equal(at("signatureS"), 0x2e8);
});

for (const s of SNP_SAMPLES) {
  Deno.test(`snp report: ${s.name} parses to the README's facts`, () => {
    const r = parseSnpReport(readEvidence(s.report), { product: s.product });
    assert.equal(r.version, s.version);
    assert.equal(r.policy.raw, s.policy);
    assert.equal(r.policy.debug, false);
    assert.equal(r.policy.migrateMa, false);
    assert.equal(r.measurement.toHex(), s.measurement);
    assert.ok(r.reportData.toHex().startsWith(s.reportData), r.reportData.toHex());
    assert.ok(r.chipId.toHex().startsWith(s.chipIdPrefix));
    assert.equal(r.reportedTcb.raw.toHex(), s.reportedTcb);
    if (s.currentTcb) assert.equal(r.currentTcb.raw.toHex(), s.currentTcb);
    assert.equal(r.keyInfo.signingKey, s.signingKey);
    assert.equal(r.vmpl, s.vmpl ?? 0);
    if (s.platformInfo !== undefined) assert.equal(r.platformInfo.raw, s.platformInfo);
    if (s.firmware) {
      const v = r.currentVersion;
      assert.equal(`${v.major}.${v.minor}.${v.build}`, s.firmware);
    }
    if (s.version >= 5) {
      assert.equal(r.launchMitVector, s.mitVectors);
      assert.equal(r.currentMitVector, s.mitVectors);
    } else {
      assert.equal(r.launchMitVector, null);
    }
    if (s.version >= 3) assert.equal(r.product, s.product);
    else assert.equal(r.cpuid, null);
    assert.deepEqual(r.formatProblems, []);
  });
}

Deno.test("snp report: 03's CURRENT_TCB ucode 206 differs from REPORTED_TCB ucode 115", () => {
  const r = parseSnpReport(readEvidence("sev-snp/03-trustee-milan-v2-vcek/test-report.bin"));
  assert.equal(r.currentTcb.microcode, 206);
  assert.equal(r.reportedTcb.microcode, 115);
  assert.equal(r.idKeyDigest.toHex().slice(0, 16), "0356215882a82527");
});

Deno.test("snp report: 06 Genoa TCB decodes to bl 10, tee 0, snp 25, ucode 84; CPUID 19/11/01", () => {
  const r = parseSnpReport(readEvidence("sev-snp/06-oak-genoa-v5/report.bin"));
  assert.deepEqual(
    [r.reportedTcb.bootloader, r.reportedTcb.tee, r.reportedTcb.snp, r.reportedTcb.microcode],
    [10, 0, 25, 84],
  );
  assert.deepEqual(r.cpuid, { family: 0x19, model: 0x11, stepping: 0x01 });
  assert.equal(r.product, "Genoa");
});

Deno.test("snp report: 04 is a v3 VLEK report with KEY_INFO 0x4 and CPUID 19/01/01", () => {
  const r = parseSnpReport(readEvidence("sev-snp/04-trustee-milan-v3-vlek/test-vlek-report.bin"));
  assert.equal(r.keyInfo.raw, 4);
  assert.deepEqual(r.cpuid, { family: 0x19, model: 0x01, stepping: 0x01 });
  assert.equal(r.reportedTcb.microcode, 217);
  assert.ok(r.reportData.toHex().endsWith("a7bc27ca"));
});

Deno.test("snp TCB: Turin layout puts FMC first and SNP at byte 3", () => {
  const raw = Uint8Array.of(1, 2, 3, 4, 0, 0, 0, 9);
  assert.deepEqual(
    { ...decodeSnpTcb(raw, "Turin"), raw: undefined },
    { raw: undefined, fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 9 },
  );
  assert.deepEqual(
    { ...decodeSnpTcb(raw, "Milan"), raw: undefined },
    { raw: undefined, fmc: null, bootloader: 1, tee: 2, snp: 0, microcode: 9 },
  );
});

Deno.test("snp report: policy and platform bits decode", () => {
  const bytes = readEvidence("sev-snp/02-virtee-milan-v2/report_milan.bin").slice();
  const view = new DataView(bytes.buffer);
  view.setBigUint64(8, (1n << 19n) | (1n << 18n) | (1n << 17n) | 0x0201n, true);
  view.setBigUint64(0x40, (1n << 7n) | (1n << 40n) | 0x25n, true);
  const r = parseSnpReport(bytes);
  assert.equal(r.policy.debug, true);
  assert.equal(r.policy.migrateMa, true);
  assert.equal(r.policy.abiMajor, 2);
  assert.equal(r.policy.abiMinor, 1);
  assert.equal(r.platformInfo.tioEn, true);
  assert.equal(r.platformInfo.aliasCheckComplete, true);
  assert.equal(r.platformInfo.unknownBits, 1n << 40n);
  assert.deepEqual(r.formatProblems, [], "unknown platform bits are not a format problem");
});

Deno.test("snp report: reserved bits are reported as format problems", () => {
  const bytes = readEvidence("sev-snp/02-virtee-milan-v2/report_milan.bin").slice();
  bytes[0x4c] = 1; // reserved
  bytes[0x34] = 2; // SIGNATURE_ALGO
  bytes[0x0a] &= ~0x02; // POLICY bit 17
  bytes[0x400] = 1; // signature area padding
  const r = parseSnpReport(bytes);
  assert.equal(r.formatProblems.length, 4, r.formatProblems.join("; "));
});

Deno.test("snp report: malformed input is a MalformedEvidenceError (exit 65)", () => {
  const good = readEvidence("sev-snp/02-virtee-milan-v2/report_milan.bin");
  const wrongVersion = good.slice();
  wrongVersion[0] = 7;
  for (
    const bad of [
      new Uint8Array(0),
      good.subarray(0, 1000),
      new Uint8Array(1185),
      wrongVersion,
      new Uint8Array(SNP_REPORT_SIZE), // version 0
      new Uint8Array(10 * 1024 * 1024),
    ]
  ) {
    assert.throws(() => parseSnpReport(bad), (e: unknown) => {
      assert.ok(e instanceof MalformedEvidenceError);
      assert.equal(e.exitStatus, 65);
      assert.match(e.message, /^[A-Z]/);
      return true;
    });
  }
});
