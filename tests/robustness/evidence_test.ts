/**
 * Robustness of evidence verification against bad input: real samples from
 * tests/testdata/evidence truncated and with random bytes changed, random garbage
 * of many lengths, evidence bundles with wrong types, mutated certificates,
 * SNP certificate tables and COSE documents. verifyEvidence must resolve to
 * a result or reject with an EnarxError; nothing else escapes. Seeded: a
 * failure names its seed and input.
 *
 * @module
 */
import assert from "node:assert/strict";
import { detectEvidence } from "../../runtime/attestation/evidence_format.ts";
import { verifyEvidence } from "../../runtime/attestation/verify.ts";
import { decodeEvidenceBundle } from "../../runtime/attestation/bundle.ts";
import {
  encodeSnpCertTable,
  parseSnpCertTable,
} from "../../runtime/attestation/amd/snp_cert_table.ts";
import { parseCoseSign1 } from "../../runtime/attestation/aws/cose.ts";
import { encodeCbor } from "../../runtime/protocol/cbor.ts";
import { EnarxError } from "../../runtime/errors.ts";
import { cleanly, cleanlySync, Prng, show } from "./_robustness.ts";
import { readEvidence } from "../attestation/amd/_snp_samples.ts";

const SEED = 0x5eed_0002;
const AT = new Date("2024-06-01T00:00:00Z");

/**
 * `whole`: the length of the evidence proper when the file holds more (an
 * Azure HCL report's runtime data, a test's trailing bytes); truncations that
 * keep it may verify.
 */
const SAMPLES: { report: string; certs: string[]; truncateAll?: boolean; whole?: number }[] = [
  {
    report: "sev-snp/02-virtee-milan-v2/report_milan.bin",
    certs: ["sev-snp/02-virtee-milan-v2/vcek_milan.der"],
    truncateAll: true,
  },
  {
    report: "sev-snp/09-trustee-azure-hcl-milan-v2/hcl-report.bin",
    certs: ["sev-snp/09-trustee-azure-hcl-milan-v2/vcek-chain.pem"],
    whole: 0x20 + 1184,
  },
  {
    report: "tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat",
    certs: [],
    truncateAll: true,
    whole: 4974 - 39, // "extra bytes(only for testing purpose)\n" follow the quote
  },
  { report: "tdx/trustee/tdx_quote_5.dat", certs: [] },
  { report: "sgx/trustee-occlum/occlum_quote.dat", certs: [] },
  { report: "nitro/blocky-nitrite/nitro_attestation.cbor", certs: [], truncateAll: true },
  {
    report: "nitro/blocky-nitrite/selfsigned_attestation.cbor",
    certs: ["nitro/blocky-nitrite/selfsigned_cert.der"],
  },
];

async function verifyCleanly(label: string, evidence: Uint8Array, certs: Uint8Array[]) {
  const outcome = await cleanly(label, () => verifyEvidence(evidence, { at: AT, certs }));
  if (!(outcome instanceof EnarxError)) {
    assert.equal(typeof outcome.ok, "boolean", `${label}: no verdict`);
  }
  return outcome;
}

for (const sample of SAMPLES) {
  Deno.test(`robustness: ${sample.report} truncated, flipped, with mutated certificates`, async () => {
    const evidence = readEvidence(sample.report);
    const certs = sample.certs.map(readEvidence);
    const rng = new Prng(SEED ^ evidence.length);
    // Every length for a few samples, about 150 evenly spread lengths for the rest.
    const step = sample.truncateAll ? 1 : Math.max(1, Math.floor(evidence.length / 150));
    for (let n = 0; n < evidence.length; n += step) {
      const outcome = await verifyCleanly(`truncated to ${n}`, evidence.subarray(0, n), certs);
      assert.ok(
        outcome instanceof EnarxError || !outcome.ok || n >= (sample.whole ?? Infinity),
        `${sample.report} truncated to ${n} bytes verified`,
      );
    }
    for (let i = 0; i < 120; i++) {
      const { bytes, where } = rng.flip(evidence);
      await verifyCleanly(`seed ${rng.seed} #${i} flipped at ${where}`, bytes, certs);
    }
    for (const [c, cert] of certs.entries()) {
      for (let i = 0; i < 60; i++) {
        const { bytes, where } = rng.flip(cert, 2);
        await verifyCleanly(`seed ${rng.seed} cert ${c} flipped at ${where}`, evidence, [bytes]);
        const n = rng.int(cert.length);
        await verifyCleanly(`cert ${c} truncated to ${n}`, evidence, [cert.subarray(0, n)]);
      }
    }
    const bundle = encodeCbor({ format: "snp", report: evidence, certs });
    await verifyCleanly("as an snp bundle", bundle, []);
  });
}

Deno.test("robustness: random garbage of many lengths is malformed evidence", async () => {
  const rng = new Prng(SEED + 1);
  for (let i = 0; i < 400; i++) {
    const n = Math.floor(rng.next() ** 3 * 6000);
    const bytes = rng.bytes(n);
    // Steer some inputs past format detection: a COSE array, an Intel quote head, an SNP size.
    const steer = rng.int(5);
    if (steer === 0 && n > 2) bytes[0] = 0x84;
    if (steer === 1 && n >= 48) bytes.set([rng.pick([3, 4, 5]), 0, 2, 0]);
    const input = steer === 2 ? rng.bytes(1184).fill(2, 0, 1).fill(0, 1, 4) : bytes;
    const label = `seed ${rng.seed} #${i} ${show(input)}`;
    const outcome = await verifyCleanly(label, input, []);
    assert.ok(outcome instanceof EnarxError || !outcome.ok, `${label} verified`);
  }
  for (const n of [0, 1, 8, 9, 1184, 1024 * 1024 + 1]) {
    cleanlySync(`${n} zero bytes`, () => detectEvidence(new Uint8Array(n)), { exit: 65 });
  }
});

Deno.test("robustness: evidence bundles with wrong types are rejected with a reason", async () => {
  const report = readEvidence("sev-snp/02-virtee-milan-v2/report_milan.bin");
  const wrong: unknown[] = [
    { format: 1, report, certs: [] },
    { format: "snp", report: "not bytes", certs: [] },
    { format: "snp", report, certs: "x" },
    { format: "snp", report, certs: [1] },
    { format: "snp", report, certs: [new Uint8Array(3)] },
    { format: "snp", report: new Uint8Array(0), certs: [] },
    { format: "tdx", report: new Uint8Array(10), certs: [] },
    { format: "nitro", report: new Uint8Array([0x84, 0, 0, 0, 0]), certs: [] },
    { format: "sgx", report: new Uint8Array(2000), certs: [new Uint8Array(5)] },
    { format: "snp", report: new Uint8Array(1184).fill(2), certs: [] },
    { format: "snp", report, certs: [], extra: 1 },
    { format: "snp", report },
    { format: "cca", report, certs: [] },
    { format: null, report: null, certs: null },
  ];
  for (const value of wrong) {
    const bytes = encodeCbor(value);
    const label = `bundle ${show(bytes, 24)}`;
    const outcome = await verifyCleanly(label, bytes, []);
    assert.ok(outcome instanceof EnarxError || !outcome.ok, `${label} verified`);
  }
  const rng = new Prng(SEED + 2);
  const good = encodeCbor({ format: "snp", report, certs: [] });
  for (let i = 0; i < 300; i++) {
    const { bytes, where } = rng.flip(good.subarray(0, 40), 2);
    const mutated = new Uint8Array([...bytes, ...good.subarray(40)]);
    cleanlySync(`seed ${rng.seed} bundle flipped at ${where}`, () => decodeEvidenceBundle(mutated));
  }
});

Deno.test("robustness: SNP certificate tables and COSE documents from random bytes", () => {
  const rng = new Prng(SEED + 3);
  const vcek = readEvidence("sev-snp/02-virtee-milan-v2/vcek_milan.der");
  const table = encodeSnpCertTable([{ guid: "63da758d-e664-4564-adc5-f4b93be8accd", data: vcek }]);
  assert.equal(parseSnpCertTable(table).length, 1);
  for (let i = 0; i < 500; i++) {
    const { bytes, where } = rng.flip(table.subarray(0, 48 + rng.int(64)), 3);
    cleanlySync(`seed ${rng.seed} table flipped at ${where}`, () => parseSnpCertTable(bytes), {
      exit: 65,
    });
  }
  const nitro = readEvidence("nitro/blocky-nitrite/nitro_attestation.cbor");
  for (let i = 0; i < 300; i++) {
    const { bytes, where } = rng.flip(nitro.subarray(0, 1 + rng.int(nitro.length)), 3);
    cleanlySync(`seed ${rng.seed} COSE cut and flipped at ${where}`, () => parseCoseSign1(bytes));
  }
  for (let i = 0; i < 300; i++) {
    const bytes = new Uint8Array([rng.pick([0x84, 0xd2]), 0x84, ...rng.bytes(rng.int(30))]);
    cleanlySync(`seed ${rng.seed} COSE ${show(bytes)}`, () => parseCoseSign1(bytes), { exit: 65 });
  }
});
