import assert from "node:assert/strict";
import { detectEvidence } from "../../runtime/attestation/evidence_format.ts";
import { readEvidenceInputs } from "../../runtime/attestation/evidence_input.ts";
import { MalformedEvidenceError } from "../../runtime/attestation/result.ts";
import { EnarxError, UsageError } from "../../runtime/errors.ts";

const EVIDENCE = new URL("../testdata/evidence/", import.meta.url).pathname;

Deno.test("evidence format: each real sample is detected from its declared layout", async () => {
  const cases: [string, string, string][] = [
    ["sev-snp/02-virtee-milan-v2/report_milan.bin", "snp", "raw"],
    ["sev-snp/09-trustee-azure-hcl-milan-v2/hcl-report.bin", "snp", "azure-hcl"],
    ["tdx/trustee/tdx_quote_5.dat", "tdx", "raw"],
    ["sgx/trustee-occlum/occlum_quote.dat", "sgx", "raw"],
    ["nitro/blocky-nitrite/nitro_attestation.cbor", "nitro", "raw"],
    ["sev-legacy/naples/pdh.cert", "sev", "raw"],
  ];
  for (const [file, format, container] of cases) {
    const detected = detectEvidence(await Deno.readFile(EVIDENCE + file));
    assert.equal(detected.format, format, file);
    assert.equal(detected.container, container, file);
  }
});

Deno.test("evidence format: an SNP-sized report of an unknown version is not SNP", () => {
  const report = new Uint8Array(0x4a0);
  report[0] = 9;
  assert.throws(() => detectEvidence(report), MalformedEvidenceError);
  assert.throws(() => detectEvidence(new Uint8Array(0)), MalformedEvidenceError);
});

Deno.test("evidence input: a SEV directory is read as PDH, PEK, OCA and CEK", async () => {
  const inputs = await readEvidenceInputs(EVIDENCE + "sev-legacy/naples", { format: "auto" });
  assert.equal(inputs.evidence.length, 4 * 0x824);
  assert.equal(detectEvidence(inputs.evidence).format, "sev");
  assert.deepEqual(inputs.certs, []);
  await assert.rejects(
    readEvidenceInputs(EVIDENCE + "sev-legacy/naples", { format: "snp" }),
    UsageError,
  );
});

Deno.test("evidence input: --certs and --collateral name what is missing (exit 66)", async () => {
  const report = EVIDENCE + "sev-snp/02-virtee-milan-v2/report_milan.bin";
  for (const paths of [{ certs: ["/nonexistent/vcek.der"] }, { collateral: ["/nonexistent"] }]) {
    const error = await readEvidenceInputs(report, { format: "auto", ...paths }).catch((e) => e);
    assert.ok(error instanceof EnarxError);
    assert.equal(error.exitStatus, 66);
  }
  const inputs = await readEvidenceInputs(report, {
    format: "auto",
    certs: [EVIDENCE + "sev-snp/02-virtee-milan-v2"],
  });
  const dir = EVIDENCE + "sev-snp/02-virtee-milan-v2/";
  const vcek = await Deno.readFile(dir + "vcek_milan.der");
  assert.ok(inputs.certs.some((c) => c.toHex() === vcek.toHex()));
});
