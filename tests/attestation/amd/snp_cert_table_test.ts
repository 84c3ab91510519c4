import assert from "node:assert/strict";
import {
  encodeSnpCertTable,
  guidFromString,
  guidToString,
  looksLikeSnpCertTable,
  parseSnpCertTable,
  SNP_CERT_GUIDS,
} from "../../../runtime/attestation/amd/snp_cert_table.ts";
import { MalformedEvidenceError } from "../../../runtime/attestation/result.ts";
import {
  splitCertificateInputs,
  verifySnpReport,
} from "../../../runtime/attestation/amd/snp_verify.ts";
import { loadSample, SNP_SAMPLES } from "./_snp_samples.ts";

Deno.test("cert table: go-sev-guest's example entry reads as GUID, offset 0x30, length 8", () => {
  const bytes = new Uint8Array(4096);
  bytes.set(guidFromString(SNP_CERT_GUIDS.extraPlatformInfo), 0);
  bytes.set([0x30, 0, 0, 0, 8, 0, 0, 0], 16);
  bytes.set([1, 2, 3, 4, 5, 6, 7, 8], 0x30);
  const [e] = parseSnpCertTable(bytes);
  assert.equal(e.guid, "ecae0c0f-9502-43b1-afa2-0ae2e0d565b6");
  assert.equal(e.kind, "extraPlatformInfo");
  assert.deepEqual(e.data, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8));
  assert.equal(guidToString(guidFromString(SNP_CERT_GUIDS.vcek)), SNP_CERT_GUIDS.vcek);
});

Deno.test("cert table: round trip, and a report verifies with its VCEK from a table", async () => {
  const s = SNP_SAMPLES[0];
  const { report, certs } = loadSample(s);
  const table = encodeSnpCertTable([{ guid: SNP_CERT_GUIDS.vcek, data: certs[0] }]);
  assert.equal(table.length % 4096, 0);
  assert.ok(looksLikeSnpCertTable(table));
  const entries = parseSnpCertTable(table);
  assert.equal(entries.length, 1);
  assert.equal(entries[0].kind, "vcek");
  assert.deepEqual(entries[0].data, certs[0]);
  assert.deepEqual(splitCertificateInputs([table]), [certs[0]]);
  const result = await verifySnpReport(report, { certs: [table], at: s.at });
  assert.equal(result.ok, true);
});

Deno.test("cert table: malformed tables are MalformedEvidenceError", () => {
  const noEnd = new Uint8Array(48).fill(1);
  noEnd.set(guidFromString(SNP_CERT_GUIDS.ark), 0);
  const outside = new Uint8Array(4096);
  outside.set(guidFromString(SNP_CERT_GUIDS.vcek), 0);
  outside.set([0, 0x20, 0, 0, 0, 0x10, 0, 0], 16); // offset 0x2000, length 0x1000
  const intoHeader = new Uint8Array(4096);
  intoHeader.set(guidFromString(SNP_CERT_GUIDS.vcek), 0);
  intoHeader.set([0, 0, 0, 0, 8, 0, 0, 0], 16); // offset 0
  for (const bad of [noEnd, outside, intoHeader, new Uint8Array(10)]) {
    assert.throws(() => parseSnpCertTable(bad), MalformedEvidenceError);
  }
});
