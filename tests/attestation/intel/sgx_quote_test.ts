import assert from "node:assert/strict";
import { claimsToJson } from "../../../runtime/attestation/claims_json.ts";
import { verifySgxQuote } from "../../../runtime/attestation/intel/sgx_quote.ts";
import {
  parseIntelQuote,
  SGX_REPORT_BODY,
} from "../../../runtime/attestation/intel/intel_quote.ts";
import { EnarxError } from "../../../runtime/errors.ts";
import { buildQuote, makeTestPki } from "./_intel_quote_builder.ts";
import { attemptVerify, failingChecks as failing, findCheck as check } from "../_verification.ts";

const EVIDENCE = new URL("../../testdata/evidence/", import.meta.url);
const OCCLUM = Deno.readFileSync(new URL("sgx/trustee-occlum/occlum_quote.dat", EVIDENCE));
const AT = new Date("2025-06-01T00:00:00Z");
/** The occlum enclave is a debug enclave: tests of everything else allow debug. */
const ALLOW_DEBUG = { at: AT, policy: { allowDebug: true } };

Deno.test("sgx: the occlum quote v3 verifies with the facts the evidence README lists", async () => {
  const r = await verifySgxQuote(OCCLUM, { at: AT });
  assert.equal(r.format, "sgx");
  assert.deepEqual(r.checks.map((c) => c.id), [
    "header",
    "quote-signature",
    "attestation-key-binding",
    "qe-report-signature",
    "pck-chain",
    "root",
    "validity",
    "pck-extension",
    "qe-identity",
    "debug",
  ]);
  const c = claimsToJson(r.claims);
  assert.equal(OCCLUM.length, 4733);
  assert.equal(c.version, 3);
  assert.equal(c.signatureDataLength, 4297);
  assert.equal(c.trailingBytes, 0);
  assert.equal(c.qeSvn, 8);
  assert.equal(c.pceSvn, 13);
  assert.equal(c.mrEnclave, "8f173e4613ff05c52aaf04162d234edae8c9977eae47eb2299ae16a553011c68");
  assert.equal(c.measurement, c.mrEnclave);
  assert.equal(c.mrSigner, "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e");
  assert.equal(c.attributes, "0x7");
  assert.equal(c.debug, true);
  assert.equal(c.reportData, "74657374" + "00".repeat(60));
  assert.equal(c.isvProdId, 0);
  assert.equal(c.isvSvn, 0);
  assert.equal(c.fmspc, "00606a000000");
  assert.equal(c.certificationDataType, 5);
  assert.match(c.pckIssuer as string, /^CN=Intel SGX PCK Platform CA,/);
  const qe = c.qe as Record<string, unknown>;
  assert.equal(qe.mrSigner, "8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff");
  assert.equal(qe.isvProdId, 1);
});

Deno.test("sgx: the occlum quote's cryptography holds, but it is refused as a debug enclave", async () => {
  const r = await verifySgxQuote(OCCLUM, { at: AT });
  assert.equal(r.ok, false);
  assert.deepEqual(failing(r), ["debug"]);
  assert.match(check(r, "debug").detail!, /debug mode/);
  const allowed = await verifySgxQuote(OCCLUM, ALLOW_DEBUG);
  assert.equal(allowed.ok, true);
  assert.match(check(allowed, "debug").detail!, /allowed by the policy/);
});

Deno.test("sgx: validity follows the given time, never the clock", async () => {
  const before = await verifySgxQuote(OCCLUM, { ...ALLOW_DEBUG, at: new Date("2023-01-01") });
  assert.deepEqual(failing(before), ["validity"]);
  assert.match(check(before, "validity").detail!, /PCK Certificate.*not valid before 2023-04-26/);
  const after = await verifySgxQuote(OCCLUM, { ...ALLOW_DEBUG, at: new Date("2030-05-01") });
  assert.deepEqual(failing(after), ["validity"]);
  assert.match(check(after, "validity").detail!, /expired 2030-04-26/);
});

Deno.test("sgx: the embedded Intel root is used, and another root is refused", async () => {
  const pinned = Deno.readFileSync(new URL("roots/intel/IntelSGXRootCA.der", EVIDENCE));
  const explicit = await verifySgxQuote(OCCLUM, { ...ALLOW_DEBUG, trustedRoots: [pinned] });
  assert.equal(explicit.ok, true);
  const other = await makeTestPki();
  const r = await verifySgxQuote(OCCLUM, { ...ALLOW_DEBUG, trustedRoots: [other.rootDer] });
  assert.deepEqual(failing(r), ["root"]);
});

Deno.test("sgx: flipping any bit of the header, the body or the signature fails", async () => {
  const copy = OCCLUM.slice();
  let verified = 0;
  for (let byte = 0; byte < 436 + 64; byte++) {
    if (byte >= 432 && byte < 436) continue; // sig_data_len, not signed
    for (let bit = 0; bit < 8; bit++) {
      copy[byte] ^= 1 << bit;
      const r = await attemptVerify(verifySgxQuote, copy, ALLOW_DEBUG);
      copy[byte] ^= 1 << bit;
      if (r === "dataError") continue;
      verified++;
      assert.equal(r.ok, false, `bit ${bit} of byte ${byte} still verifies`);
      assert.equal(check(r, "quote-signature").ok, false, `byte ${byte}: ${failing(r)}`);
    }
  }
  assert.ok(verified > 3900, `only ${verified} flips got past the parser`);
});

Deno.test("sgx: flipping bits of the QE report, its signature and the PCK chain fails", async () => {
  const q = parseIntelQuote(OCCLUM);
  const off = (part: Uint8Array) => part.byteOffset - OCCLUM.byteOffset;
  const copy = OCCLUM.slice();
  const cases: [number, number, string][] = [
    [off(q.attestationKey), 64, "quote-signature"],
    [off(q.qeReport), 384, "qe-report-signature"],
    [off(q.qeReportSignature), 64, "qe-report-signature"],
    [off(q.qeAuthData), q.qeAuthData.length, "attestation-key-binding"],
  ];
  for (const [start, size, id] of cases) {
    for (let byte = start; byte < start + size; byte++) {
      const bit = 1 << (byte % 8);
      copy[byte] ^= bit;
      const r = await attemptVerify(verifySgxQuote, copy, ALLOW_DEBUG);
      copy[byte] ^= bit;
      assert.ok(r !== "dataError" && !r.ok && !check(r, id).ok, `byte ${byte} (${id})`);
    }
  }
  // The PEM chain: change base64 characters; each change alters a certificate's DER.
  const pem = off(q.certificationData);
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  let seed = 5;
  for (let n = 0; n < 150; n++) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    const at = pem + (seed % q.certificationData.length);
    const c = String.fromCharCode(copy[at]);
    if (!alphabet.includes(c)) continue;
    const was = copy[at];
    copy[at] = alphabet.charCodeAt((alphabet.indexOf(c) + 1 + (seed % 63)) % 64);
    const r = await attemptVerify(verifySgxQuote, copy, ALLOW_DEBUG);
    copy[at] = was;
    assert.ok(r === "dataError" || !r.ok, `PEM character ${at - pem} still verifies`);
  }
});

Deno.test("sgx: malformed quotes are dataErrors, never other exceptions", async () => {
  for (let n = 0; n < OCCLUM.length; n++) {
    assert.equal(
      await attemptVerify(verifySgxQuote, OCCLUM.subarray(0, n), ALLOW_DEBUG),
      "dataError",
      `length ${n}`,
    );
  }
  const edit = (at: number, bytes: number[]) => {
    const copy = OCCLUM.slice();
    copy.set(bytes, at);
    return copy;
  };
  for (
    const [bytes, message] of [
      [edit(0, [1, 0]), /version 1 is not supported/],
      [edit(2, [1, 0]), /key type 1/],
      [edit(432, [0, 0, 0, 1]), /past its end/],
      [edit(1048, [0x60, 0x0e, 0, 0]), /1 unexpected byte/],
      [edit(436 + 128 + 384 + 64, [0xff, 0xff]), /truncated/],
      [new Uint8Array(3 << 20), /more than/],
    ] as const
  ) {
    await assert.rejects(
      verifySgxQuote(bytes, ALLOW_DEBUG),
      (e: unknown) => e instanceof EnarxError && e.exitStatus === 65 && message.test(e.message),
      String(message),
    );
  }
});

// --- quotes built here with a test PKI ----------------------------------------

const pki = await makeTestPki();

function fillSgx(flags: number) {
  return (body: Uint8Array) => {
    body[SGX_REPORT_BODY.attributesFlags.offset] = flags;
    body.set(new Uint8Array(32).fill(0xe1), SGX_REPORT_BODY.mrEnclave.offset);
    body.set(new Uint8Array(32).fill(0x51), SGX_REPORT_BODY.mrSigner.offset);
    body.set([9, 0], SGX_REPORT_BODY.isvProdId.offset);
    body.set([4, 1], SGX_REPORT_BODY.isvSvn.offset);
    body.set(new Uint8Array(64).fill(0x77), SGX_REPORT_BODY.reportData.offset);
  };
}

Deno.test("sgx: v3 and v4 SGX quotes built with a test PCK chain verify end to end", async () => {
  for (const version of [3, 4] as const) {
    const quote = await buildQuote(pki, { version, tee: "sgx", fillBody: fillSgx(0x05) });
    const r = await verifySgxQuote(quote, { at: AT, trustedRoots: [pki.rootDer] });
    assert.deepEqual(failing(r), [], `v${version}`);
    assert.equal(claimsToJson(r.claims).version, version);
    assert.equal(claimsToJson(r.claims).mrEnclave, "e1".repeat(32));
    assert.equal(claimsToJson(r.claims).mrSigner, "51".repeat(32));
    assert.equal(claimsToJson(r.claims).isvProdId, 9);
    assert.equal(claimsToJson(r.claims).isvSvn, 0x104);
    assert.equal(claimsToJson(r.claims).reportData, "77".repeat(64));
    assert.equal(claimsToJson(r.claims).debug, false);
    assert.equal(claimsToJson(r.claims).fmspc, "00906ed50000");
  }
  const debug = await buildQuote(pki, { version: 3, tee: "sgx", fillBody: fillSgx(0x07) });
  const r = await verifySgxQuote(debug, { at: AT, trustedRoots: [pki.rootDer] });
  assert.deepEqual(failing(r), ["debug"]);
  // A TD QE's identity is wrong for an SGX quote.
  const tdQe = await buildQuote(pki, { version: 3, tee: "sgx", qeIsvProdId: 2 });
  assert.deepEqual(
    failing(await verifySgxQuote(tdQe, { at: AT, trustedRoots: [pki.rootDer] })),
    ["qe-identity"],
  );
});
