import assert from "node:assert/strict";
import { claimsToJson } from "../../runtime/attestation/claims_json.ts";
import {
  type EvidenceFormat,
  readEvidenceInputs,
  readPolicyFile,
  verifyEvidence,
} from "../../runtime/attestation/mod.ts";
import { resultJson } from "../../cli/attest_verify.ts";

const EXPECTED = new URL("../testdata/expected/", import.meta.url);
const EVIDENCE = new URL("../testdata/evidence/", import.meta.url);

Deno.test("claimsToJson: bytes become lower-case hex at every depth, key order and other values kept", () => {
  const rendered = claimsToJson({
    measurement: Uint8Array.of(0xab, 0x01),
    debug: false,
    version: 2,
    product: null,
    nested: { id: Uint8Array.of(0xff), name: "x", absent: undefined },
    list: [Uint8Array.of(1), "a"],
  });
  assert.equal(
    JSON.stringify(rendered),
    '{"measurement":"ab01","debug":false,"version":2,"product":null,' +
      '"nested":{"id":"ff","name":"x"},"list":["01","a"]}',
  );
});

/** One line of samples.tsv: a name and the arguments of `attest verify`. */
function samples(): { name: string; args: string[] }[] {
  const text = Deno.readTextFileSync(new URL("samples.tsv", EXPECTED));
  return text.split("\n").filter((l) => l !== "" && !l.startsWith("#")).map((l) => {
    const [name, ...args] = l.split("\t");
    return { name, args };
  });
}

function parse(args: string[]) {
  const out = { evidence: "", certs: [] as string[], collateral: [] as string[] } as {
    evidence: string;
    certs: string[];
    collateral: string[];
    format?: string;
    at?: string;
    policy?: string;
  };
  const path = (p: string) => new URL(p, EVIDENCE).pathname;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--certs") out.certs.push(path(args[++i]));
    else if (a === "--collateral") out.collateral.push(path(args[++i]));
    else if (a === "--format") out.format = args[++i];
    else if (a === "--at") out.at = args[++i];
    else if (a === "--policy") out.policy = path(args[++i]);
    else out.evidence = path(a);
  }
  return out;
}

for (const { name, args } of samples()) {
  Deno.test(`claims JSON: ${name} renders exactly as captured (tests/testdata/expected/${name}.json)`, async () => {
    const a = parse(args);
    const format = (a.format ?? "auto") as EvidenceFormat | "auto";
    const inputs = await readEvidenceInputs(a.evidence, {
      format,
      certs: a.certs,
      collateral: a.collateral,
    });
    const at = new Date(a.at!);
    const result = await verifyEvidence(inputs.evidence, {
      format,
      certs: inputs.certs,
      crls: inputs.crls,
      collateral: inputs.collateral,
      policy: a.policy === undefined ? undefined : await readPolicyFile(a.policy),
      at,
    });
    const expected = await Deno.readTextFile(new URL(`${name}.json`, EXPECTED));
    // No replacer: every byte string must already be hex after claimsToJson.
    assert.equal(JSON.stringify(resultJson(result, at)) + "\n", expected);
  });
}
