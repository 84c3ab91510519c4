import assert from "node:assert/strict";
import { claimsToJson } from "../../../runtime/attestation/claims_json.ts";
import { verifySnpReport } from "../../../runtime/attestation/amd/snp_verify.ts";
import { amdCertExtensions } from "../../../runtime/attestation/amd/snp_verify.ts";
import { MalformedEvidenceError } from "../../../runtime/attestation/result.ts";
import { pemBlocks, verifySignedBy, X509Certificate } from "../../../runtime/x509.ts";
import { readCertificate } from "../../../runtime/x509_reader.ts";
import { AMD_SNP_ROOTS, ASVK_MILAN_PEM } from "../../../runtime/attestation/amd/amd_roots.ts";

import { loadSample, readEvidence, samplePolicy, SNP_SAMPLES } from "./_snp_samples.ts";
import { DEFAULT_POLICY, type Policy } from "../../../runtime/attestation/policy.ts";
import { failingChecks as failed } from "../_verification.ts";

const NOW = new Date("2026-11-27T00:00:00Z");

/** Verifies and returns the failing check ids, or ["malformed"] when the input is rejected. */
async function failures(
  report: Uint8Array,
  certs: Uint8Array[],
  at: Date,
  policy?: Policy,
): Promise<string[]> {
  try {
    return failed(await verifySnpReport(report, { certs, at, policy }));
  } catch (error) {
    assert.ok(error instanceof MalformedEvidenceError, String(error));
    return ["malformed"];
  }
}

for (const s of SNP_SAMPLES) {
  Deno.test(`snp verify: ${s.name} is valid with the README's facts`, async () => {
    const { report, certs } = loadSample(s);
    const result = await verifySnpReport(report, { certs, at: s.at, policy: samplePolicy(s) });
    assert.deepEqual(failed(result), [], JSON.stringify(result.checks, null, 1));
    assert.equal(result.ok, true);
    assert.equal(result.simulated, false);
    assert.equal(result.format, "snp");
    const c = claimsToJson(result.claims);
    assert.equal(c.version, s.version);
    assert.equal(c.product, s.product);
    assert.equal(c.measurement, s.measurement);
    assert.ok(String(c.reportData).startsWith(s.reportData));
    assert.ok(String(c.chipId).startsWith(s.chipIdPrefix));
    assert.equal((c.reportedTcb as Record<string, unknown>).raw, s.reportedTcb);
    assert.equal(c.signingKey, s.signingKey);
    assert.equal(c.debug, false);
    const chain = c.chain as Record<string, string>;
    assert.equal(chain.productName, s.productName);
    assert.equal(chain.root, `ARK-${s.product}`);
    assert.ok(chain.leafNotBefore.startsWith(s.leafNotBefore), chain.leafNotBefore);
    assert.ok(chain.leafNotAfter.startsWith(s.leafNotAfter), chain.leafNotAfter);
    const ids = result.checks.map((x) => x.id);
    for (
      const id of [
        "report-format",
        "chain",
        "root",
        "validity",
        "tcb-match",
        "chip-id",
        "signature",
      ]
    ) {
      assert.ok(ids.includes(id), `missing check ${id}`);
    }
  });
}

Deno.test("snp verify: 04's VLEK verifies under the ASVK, has cspID and no hwID, expired now", async () => {
  const s = SNP_SAMPLES.find((x) => x.signingKey === "vlek")!;
  const { report, certs } = loadSample(s);
  const ok = await verifySnpReport(report, { certs, at: s.at, policy: samplePolicy(s) });
  const chain = claimsToJson(ok.claims).chain as Record<string, string | null>;
  assert.equal(chain.intermediate, "SEV-VLEK-Milan");
  assert.ok(chain.cspId?.endsWith("cc-us-east-2.amazonaws.com"));
  const ext = amdCertExtensions(readCertificate(certs[0]));
  assert.equal(ext.hwId, null);
  const late = await verifySnpReport(report, { certs, at: NOW, policy: samplePolicy(s) });
  assert.deepEqual(failed(late), ["validity"]);
  assert.match(late.checks.find((c) => c.id === "validity")!.detail!, /expired 2025-12-10/);
});

Deno.test("snp verify: 03's synthetic VCEKs parse (raw and wrapped hwID) and fail the chain", async () => {
  const report = readEvidence("sev-snp/03-trustee-milan-v2-vcek/test-report.bin");
  const fake = Uint8Array.from({ length: 64 }, (_, i) => i);
  for (const name of ["test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"]) {
    const der = readEvidence(`sev-snp/03-trustee-milan-v2-vcek/${name}`);
    const ext = amdCertExtensions(readCertificate(der));
    assert.deepEqual(ext.hwId, fake, name);
    const result = await verifySnpReport(report, { certs: [der], at: NOW });
    assert.equal(result.ok, false);
    assert.ok(failed(result).includes("chain"), name);
    assert.ok(failed(result).includes("signature"), name);
  }
});

Deno.test("snp verify: virtee recipes: VCEK byte 40 ^= 0xff fails; report byte 21 ^= 0x80 fails the signature", async () => {
  const { report, certs } = loadSample(SNP_SAMPLES[0]);
  const vcek = certs[0].slice();
  vcek[40] ^= 0xff;
  const f1 = await failures(report, [vcek], NOW);
  assert.ok(f1.length > 0);
  const bad = report.slice();
  bad[21] ^= 0x80;
  assert.deepEqual(await failures(bad, certs, NOW), ["signature"]);
});

Deno.test("snp verify: trustee recipes on 03", async () => {
  const { report, certs } = loadSample(SNP_SAMPLES[1]);
  const vcek = certs[0].slice();
  vcek[42] += 1;
  assert.ok((await failures(report, [vcek], NOW)).length > 0);
  const r42 = report.slice();
  r42[42] += 1;
  assert.deepEqual(await failures(r42, certs, NOW), ["signature"]);
  const tcb = report.slice();
  tcb[0x180] += 1;
  assert.deepEqual(await failures(tcb, certs, NOW), ["tcb-match", "signature"]);
  // The VCEK is not signed by the ASVK.
  const asvk = new X509Certificate(pemBlocks(ASVK_MILAN_PEM)[0]);
  assert.equal(await verifySignedBy(new X509Certificate(certs[0]), asvk), false);
});

Deno.test("snp verify: a report with another chip's VCEK fails signature and chip-id", async () => {
  const { report } = loadSample(SNP_SAMPLES[0]);
  const other = loadSample(SNP_SAMPLES[1]).certs;
  const f = await failures(report, other, NOW);
  assert.ok(f.includes("signature") && f.includes("chip-id"), f.join());
});

Deno.test("snp verify: the Genoa VCEK with the Milan report fails", async () => {
  const { report } = loadSample(SNP_SAMPLES[0]);
  const genoa = loadSample(SNP_SAMPLES[3]).certs;
  const f = await failures(report, genoa, NOW);
  assert.ok(f.includes("signature") && f.includes("tcb-match"), f.join());
});

Deno.test("snp verify: certificates not yet valid or expired fail 'validity' alone", async () => {
  const { report, certs } = loadSample(SNP_SAMPLES[0]);
  const early = await verifySnpReport(report, { certs, at: new Date("2023-01-01T00:00:00Z") });
  assert.deepEqual(failed(early), ["validity"]);
  assert.match(
    early.checks.find((c) => c.id === "validity")!.detail!,
    /not valid before 2023-04-03/,
  );
  const late = await verifySnpReport(report, { certs, at: new Date("2031-01-01T00:00:00Z") });
  assert.deepEqual(failed(late), ["validity"]);
  assert.match(late.checks.find((c) => c.id === "validity")!.detail!, /expired 2030-04-03/);
});

Deno.test("snp verify: without a VCEK the certificates check fails", async () => {
  const { report } = loadSample(SNP_SAMPLES[0]);
  const result = await verifySnpReport(report, { at: NOW });
  assert.ok(failed(result).includes("certificates"));
  assert.ok(failed(result).includes("signature"));
  assert.match(result.checks.find((c) => c.id === "certificates")!.detail!, /--certs/);
});

Deno.test("snp verify: a supplied ARK is compared with the pinned one (09's PEM chain)", async () => {
  const s = SNP_SAMPLES[4];
  const { report, certs } = loadSample(s);
  const result = await verifySnpReport(report, { certs, at: s.at, policy: samplePolicy(s) });
  assert.match(
    result.checks.find((c) => c.id === "root")!.detail!,
    /pinned AMD ARK-Milan \(sha256 69d063b45344d26a/,
  );
});

Deno.test("snp verify: policy checks: measurement, report data, products, minimum TCB", async () => {
  const s = SNP_SAMPLES[3];
  const { report, certs } = loadSample(s);
  const hex = (h: string) => Uint8Array.from(h.match(/../g)!, (x) => parseInt(x, 16));
  const pass = await verifySnpReport(report, {
    certs,
    at: s.at,
    policy: {
      allowDebug: false,
      allowMigration: false,
      trustSimulatedRoot: false,
      platforms: ["snp"],
      products: ["Genoa"],
      measurements: [hex(s.measurement)],
      reportData: hex(s.reportData.slice(0, 64)),
      minTcb: { bootloader: 10, snp: 25, microcode: 84 },
    },
  });
  assert.deepEqual(failed(pass), []);
  const fail = await verifySnpReport(report, {
    certs,
    at: s.at,
    policy: {
      allowDebug: false,
      allowMigration: false,
      trustSimulatedRoot: false,
      platforms: ["tdx"],
      products: ["Milan"],
      measurements: [new Uint8Array(48)],
      reportData: hex("00ff"),
      minTcb: { microcode: 85 },
    },
  });
  assert.deepEqual(failed(fail), ["platform", "product", "measurement", "report-data", "min-tcb"]);
});

Deno.test("snp verify: the embedded certificates' recorded subjects and fingerprints are theirs (the chain search parses only those it names)", async () => {
  for (const r of AMD_SNP_ROOTS) {
    const embedded = [
      [r.arkPem, r.arkSubject, r.arkSha256],
      [r.askPem, r.askSubject, r.askSha256],
      [r.asvkPem, r.asvkSubject, r.asvkSha256],
    ];
    for (const [pem, subject, sha256] of embedded) {
      const der = pemBlocks(pem)[0];
      assert.equal(new X509Certificate(der.slice()).subject, subject);
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", der));
      assert.equal(digest.toHex(), sha256);
    }
    assert.equal(new X509Certificate(pemBlocks(r.askPem)[0].slice()).issuer, r.arkSubject);
  }
});

Deno.test("snp verify: the verification time is required", async () => {
  const { report, certs } = loadSample(SNP_SAMPLES[0]);
  await assert.rejects(
    () => verifySnpReport(report, { certs, at: new Date("nope") }),
    TypeError,
  );
});

// Bit flips: every bit of the signed region and of R and S, for every sample;
// a random sample of the rest of the signature area and of certificate bits.

function seededRandom(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

for (const s of SNP_SAMPLES) {
  Deno.test(`snp verify: ${s.name}: flipping any bit of the signed region or of R, S fails`, async () => {
    const { report, certs } = loadSample(s);
    assert.equal(
      (await verifySnpReport(report, { certs, at: s.at, policy: samplePolicy(s) })).ok,
      true,
    );
    const bits: number[] = [];
    for (let i = 0; i < 0x2a0 * 8; i++) bits.push(i);
    for (let i = 0x2a0 * 8; i < 0x2d0 * 8; i++) bits.push(i); // R
    for (let i = 0x2e8 * 8; i < 0x318 * 8; i++) bits.push(i); // S
    const rnd = seededRandom(0x5eed + s.version);
    for (let k = 0; k < 128; k++) {
      // The zero padding of R and S and the rest of the signature area.
      const pad = [[0x2d0, 0x2e8], [0x318, 0x4a0]][k % 2];
      bits.push((pad[0] + Math.floor(rnd() * (pad[1] - pad[0]))) * 8 + (k % 8));
    }
    const survivors: number[] = [];
    const bytes = report.slice();
    for (const bit of bits) {
      bytes[bit >> 3] ^= 1 << (bit & 7);
      if ((await failures(bytes, certs, s.at, samplePolicy(s))).length === 0) survivors.push(bit);
      bytes[bit >> 3] ^= 1 << (bit & 7);
    }
    assert.deepEqual(survivors, [], `bits that still verify: ${survivors.slice(0, 10).join(", ")}`);
  });

  Deno.test(`snp verify: ${s.name}: flipping random certificate bits fails`, async () => {
    const { report, certs } = loadSample(s);
    const der = certs[0][0] === 0x30 ? certs[0] : pemBlocks(new TextDecoder().decode(certs[0]))[0];
    const rnd = seededRandom(0xce27 + der.length);
    const survivors: string[] = [];
    for (let k = 0; k < 256; k++) {
      const bit = Math.floor(rnd() * der.length * 8);
      const bad = der.slice();
      bad[bit >> 3] ^= 1 << (bit & 7);
      const f = await failures(report, [bad], s.at, samplePolicy(s));
      if (f.length === 0) survivors.push(`bit ${bit}`);
    }
    assert.deepEqual(survivors, []);
  });
}

Deno.test("snp verify: claims use camelCase and hex", async () => {
  const { report, certs } = loadSample(SNP_SAMPLES[0]);
  const r = await verifySnpReport(report, { certs, at: NOW });
  assert.equal(claimsToJson(r.claims).currentFirmware, "1.52.4");
  assert.equal((claimsToJson(r.claims).policy as Record<string, unknown>).raw, "0x30000");
  assert.equal(claimsToJson(r.claims).hostData, (new Uint8Array(32)).toHex());
});

Deno.test("snp verify: VMPL above max_vmpl (default 0) fails 'vmpl' alone", async () => {
  const s = SNP_SAMPLES.find((x) => x.vmpl === 1)!;
  const { report, certs } = loadSample(s);
  const strict = await verifySnpReport(report, { certs, at: s.at, policy: DEFAULT_POLICY });
  assert.deepEqual(failed(strict), ["vmpl"]);
  assert.match(strict.checks.find((c) => c.id === "vmpl")!.detail!, /VMPL 1.*max_vmpl = 1/);
  const loose = await verifySnpReport(report, {
    certs,
    at: s.at,
    policy: { ...DEFAULT_POLICY, maxVmpl: 1 },
  });
  assert.deepEqual(failed(loose), []);
  assert.equal(loose.checks.find((c) => c.id === "vmpl")!.detail, "VMPL 1");
  // A VMPL 0 sample passes the default.
  const zero = SNP_SAMPLES[0];
  const r = await verifySnpReport(loadSample(zero).report, {
    certs: loadSample(zero).certs,
    at: zero.at,
  });
  assert.equal(r.checks.find((c) => c.id === "vmpl")!.ok, true);
});

Deno.test("snp verify: min_tcb per product applies to that product only, over the common one", async () => {
  const genoa = SNP_SAMPLES.find((x) => x.product === "Genoa")!;
  const milan = SNP_SAMPLES[0];
  const policy: Policy = {
    ...DEFAULT_POLICY,
    minTcb: { bootloader: 1 },
    minTcbByProduct: { Genoa: { snp: 26 }, Milan: { snp: 1 } },
  };
  const g = loadSample(genoa);
  const gr = await verifySnpReport(g.report, { certs: g.certs, at: genoa.at, policy });
  assert.deepEqual(failed(gr), ["min-tcb"]);
  assert.match(gr.checks.find((c) => c.id === "min-tcb")!.detail!, /^snp 25 < 26$/);
  const m = loadSample(milan);
  const mr = await verifySnpReport(m.report, { certs: m.certs, at: milan.at, policy });
  assert.deepEqual(failed(mr), []);
  assert.equal(mr.checks.find((c) => c.id === "min-tcb")!.ok, true);
});
