import assert from "node:assert/strict";
import { X509CertificateGenerator, X509Crl, X509CrlGenerator } from "../../../runtime/x509.ts";
import {
  evaluateTcbLevel,
  INTEL_TCB_SIGNING_CERT_PEM,
  MalformedCollateralError,
  NO_MATCHING_LEVEL,
  parseIntelCollateral,
  type TcbInfo,
  verifyCollateralSignature,
} from "../../../runtime/attestation/intel/intel_collateral.ts";
import { DEFAULT_POLICY, parsePolicy, PolicyError } from "../../../runtime/attestation/policy.ts";
import { verifyEvidence, type VerifyEvidenceOptions } from "../../../runtime/attestation/verify.ts";
import { buildQuote, makeTestPki, type TestPki } from "./_intel_quote_builder.ts";
import { findCheck as check } from "../_verification.ts";

const EVIDENCE = new URL("../../testdata/evidence/", import.meta.url);
const read = (p: string) => Deno.readFileSync(new URL(p, EVIDENCE));
const GO = "tdx/go-tdx-guest/";
const SPR = read(`${GO}tdx_prod_quote_SPR_E4.dat`);
const V5 = read("tdx/trustee/tdx_quote_5.dat");
const TCB_INFO = read(`${GO}sample_tcbInfo_response`);
const TCB_INFO_V5 = read(`${GO}sample_tcbinfo_response_v5`);
const QE_IDENTITY = read(`${GO}sample_qeIdentity_response`);
const PCK_CRL = read(`${GO}pckcrl`);
const ROOT_CRL = read(`${GO}rootcrl.der`);
/** Inside sample_tcbInfo_response, the QE identity, pckcrl, rootcrl and the TCB Signing cert. */
const AT_2023 = new Date("2023-07-01T00:00:00Z");
/** Inside sample_tcbinfo_response_v5 (2026-02-01 … 2026-03-03) and the v5 PCK. */
const AT_2026 = new Date("2026-02-15T00:00:00Z");
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function replaceOnce(bytes: Uint8Array, from: string, to: string): Uint8Array {
  const text = dec(bytes);
  assert.equal(text.split(from).length, 2, `"${from}" must occur once`);
  return enc(text.replace(from, to));
}

// --- real samples ------------------------------------------------------------

Deno.test("collateral: the embedded TCB Signing cert is the one Intel delivers", () => {
  const shared = dec(read("roots/intel/intel-tcb-signing-chain.pem"));
  const first = shared.slice(0, shared.indexOf("-----END CERTIFICATE-----") + 25);
  assert.equal(INTEL_TCB_SIGNING_CERT_PEM.trim(), first.trim());
});

Deno.test("collateral: the sample TCB Infos and QE identity parse as the README says", () => {
  const info = parseIntelCollateral(TCB_INFO, "tcbInfo") as TcbInfo;
  assert.equal(info.kind, "tcbInfo");
  assert.equal(info.id, "TDX");
  assert.equal(info.version, 3);
  assert.equal(info.fmspc.toHex(), "50806f000000");
  assert.equal(info.tcbEvaluationDataNumber, 15);
  assert.equal(info.issueDate.toISOString(), "2023-06-18T08:42:58.000Z");
  assert.equal(info.nextUpdate.toISOString(), "2023-07-18T08:42:58.000Z");
  assert.equal(info.tcbLevels.length, 2);
  assert.deepEqual(info.tcbLevels[0].sgxTcbComponents.slice(0, 8), [5, 5, 2, 2, 3, 1, 0, 3]);
  // The signed bytes are the exact text of the "tcbInfo" value.
  const text = dec(TCB_INFO);
  assert.equal(
    dec(info.signedBytes),
    text.slice('{"tcbInfo":'.length, text.indexOf(',"signature":')),
  );
  const v5 = parseIntelCollateral(TCB_INFO_V5, "v5") as TcbInfo;
  assert.equal(v5.fmspc.toHex(), "90c06f000000");
  assert.equal(v5.issueDate.toISOString(), "2026-02-01T14:49:26.000Z");
  assert.deepEqual(v5.tdxModuleIdentities?.map((m) => m.id), ["TDX_03", "TDX_01"]);
  const qe = parseIntelCollateral(QE_IDENTITY, "qe");
  assert.equal(qe.kind, "enclaveIdentity");
  assert.equal(qe.kind === "enclaveIdentity" && qe.id, "TD_QE");
  assert.equal(qe.kind === "enclaveIdentity" && qe.isvProdId, 2);
});

Deno.test("collateral: every sample signature verifies with Intel's TCB Signing key", async () => {
  for (const [file, at] of [[TCB_INFO, AT_2023], [QE_IDENTITY, AT_2023], [TCB_INFO_V5, AT_2026]]) {
    const c = parseIntelCollateral(file as Uint8Array, "sample");
    const outcome = await verifyCollateralSignature(c, { at: at as Date });
    assert.equal(outcome.signatureOk, true);
    assert.equal(outcome.chainOk, true);
    assert.match(outcome.signer!, /CN=Intel SGX TCB Signing/);
  }
});

Deno.test("collateral: SPR E4 quote at 2023-07-01: no matching TCB level, QE identity UpToDate, not revoked", async () => {
  const r = await verifyEvidence(SPR, {
    at: AT_2023,
    collateral: [TCB_INFO, QE_IDENTITY],
    crls: [PCK_CRL, ROOT_CRL],
  });
  assert.equal(r.ok, false);
  assert.deepEqual(r.checks.filter((c) => !c.ok).map((c) => c.id), ["tcb-status"]);
  assert.equal(check(r, "tcb-info").ok, true);
  assert.match(check(r, "tcb-status").detail!, /^no matching level: .*\[3,3,2,2,2,1,0,2,/);
  assert.equal(r.claims.tcbStatus, NO_MATCHING_LEVEL);
  assert.equal(r.claims.tcbStatus, "no matching level");
  assert.equal(r.claims.tcbDate, null);
  assert.deepEqual(r.claims.advisoryIds, []);
  assert.equal(r.claims.tcbEvaluationDataNumber, 15);
  // The TD QE of the quote matches the signed TD_QE identity (ISVSVN 4 ≥ 4).
  assert.equal(check(r, "qe-identity").ok, true);
  assert.match(check(r, "qe-identity").detail!, /ISVSVN 4: UpToDate \(identity TD_QE/);
  assert.equal(r.claims.qeTcbStatus, "UpToDate");
  // The PCK's serial is not among the 44 serials of pckcrl.
  const crl = new X509Crl(PCK_CRL.slice());
  assert.equal(crl.entries.length, 44);
  const pck = r.claims.pck as { serialNumber: string };
  assert.equal(pck.serialNumber, "bba6c175d838b8df3900cc3411f24f512d104102");
  assert.ok(!crl.entries.some((e) => e.serialNumber.toLowerCase() === pck.serialNumber));
  assert.equal(check(r, "revocation").ok, true);
  assert.match(check(r, "revocation").detail!, /44 revoked/);
});

Deno.test("collateral: v5 quote against the v5 TCB Info: no matching level; Intel's embedded TCB Signing cert has expired by then", async () => {
  const r = await verifyEvidence(V5, { at: AT_2026, collateral: [TCB_INFO_V5] });
  assert.equal(r.claims.tcbStatus, "no matching level");
  assert.equal(check(r, "tcb-status").ok, false);
  assert.match(check(r, "tcb-status").detail!, /SGX components \[1,1,2,2,/);
  // The signature verifies, but the only TCB Signing cert we have ended 2025-05-21.
  const tcbInfo = check(r, "tcb-info");
  assert.equal(tcbInfo.ok, false);
  assert.match(tcbInfo.detail!, /expired 2025-05-21/);
  assert.doesNotMatch(tcbInfo.detail!, /FMSPC|due for update/);
  // The signature checks, with time ignored, inside the cert's life.
  const sig = await verifyCollateralSignature(parseIntelCollateral(TCB_INFO_V5, "v5"), {
    at: AT_2026,
  });
  assert.deepEqual([sig.signatureOk, sig.chainOk, sig.signerValid], [true, true, false]);
});

Deno.test("collateral: the v5 TCB Info's module identities converge with the platform level", () => {
  const info = parseIntelCollateral(TCB_INFO_V5, "v5") as TcbInfo;
  const sgx = [3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0];
  const tee = (svn: number, major: number, ucode: number) => {
    const b = new Uint8Array(16);
    b.set([svn, major, ucode]);
    return b;
  };
  const zero48 = new Uint8Array(48);
  const eight = new Uint8Array(8);
  const base = { sgxTcbComponents: sgx, pceSvn: 13, mrSignerSeam: zero48, seamAttributes: eight };
  const up = evaluateTcbLevel(info, { ...base, teeTcbSvn: tee(6, 1, 3) });
  assert.deepEqual([up.status, up.levelIndex, up.tdxModuleId], ["UpToDate", 0, "TDX_01"]);
  const old = evaluateTcbLevel(info, { ...base, teeTcbSvn: tee(4, 1, 3) });
  assert.equal(old.status, "OutOfDate");
  assert.deepEqual(old.advisoryIds, ["INTEL-SA-01036", "INTEL-SA-01099"]);
  // Bytes 0–1 are judged by the module identity, not by tdxtcbcomponents (which need 5 in byte 0).
  assert.equal(evaluateTcbLevel(info, { ...base, teeTcbSvn: tee(3, 3, 3) }).status, "UpToDate");
  assert.equal(
    evaluateTcbLevel(info, { ...base, teeTcbSvn: tee(1, 1, 3) }).status,
    "no matching level",
  );
  assert.equal(
    evaluateTcbLevel(info, { ...base, teeTcbSvn: tee(9, 2, 3) }).status,
    "no matching level",
  );
  // Major version 0: tdxtcbcomponents decide (5 ≤ byte 0).
  assert.equal(evaluateTcbLevel(info, { ...base, teeTcbSvn: tee(5, 0, 3) }).status, "UpToDate");
  assert.equal(
    evaluateTcbLevel(info, { ...base, teeTcbSvn: tee(4, 0, 3) }).status,
    "no matching level",
  );
  // A lower ucode byte drops to the OutOfDate level.
  assert.equal(evaluateTcbLevel(info, { ...base, teeTcbSvn: tee(5, 0, 2) }).status, "OutOfDate");
});

Deno.test("collateral: one changed byte inside the tcbInfo value or the signature fails tcb-info", async () => {
  const good = await verifyEvidence(SPR, { at: AT_2023, collateral: [TCB_INFO] });
  assert.equal(check(good, "tcb-info").ok, true);
  const changed = [
    replaceOnce(TCB_INFO, '"tcbEvaluationDataNumber":15', '"tcbEvaluationDataNumber":16'),
    replaceOnce(TCB_INFO, '"tcbType":0', '"tcbType":0 '),
  ];
  const text = dec(TCB_INFO);
  const sigAt = text.indexOf('"signature":"') + 13;
  for (const i of [sigAt, sigAt + 64, sigAt + 127]) {
    const bytes = TCB_INFO.slice();
    bytes[i] = bytes[i] === 0x30 ? 0x31 : 0x30;
    changed.push(bytes);
  }
  for (const bytes of changed) {
    const r = await verifyEvidence(SPR, { at: AT_2023, collateral: [bytes] });
    assert.equal(check(r, "tcb-info").ok, false);
    assert.match(check(r, "tcb-info").detail!, /does not verify/);
  }
  const qe = QE_IDENTITY.slice();
  qe[dec(qe).indexOf('"isvprodid":2') + 12] = 0x33; // isvprodid 3: signature breaks
  const r = await verifyEvidence(SPR, { at: AT_2023, collateral: [qe] });
  assert.equal(check(r, "qe-identity").ok, false);
});

Deno.test("collateral: a TCB Info for another FMSPC fails tcb-info", async () => {
  const r = await verifyEvidence(SPR, { at: AT_2026, collateral: [TCB_INFO_V5] });
  assert.equal(check(r, "tcb-info").ok, false);
  assert.match(
    check(r, "tcb-info").detail!,
    /TCB Info is for FMSPC 90c06f000000, not this platform's 50806f000000/,
  );
});

Deno.test("collateral: outside its window, collateral fails tcb-info and qe-identity", async () => {
  for (const at of ["2023-06-01T00:00:00Z", "2023-08-01T00:00:00Z"]) {
    const r = await verifyEvidence(SPR, {
      at: new Date(at),
      collateral: [TCB_INFO, QE_IDENTITY],
      crls: [PCK_CRL],
    });
    assert.equal(check(r, "tcb-info").ok, false, at);
    assert.match(check(r, "tcb-info").detail!, /issued .* after|due for update/);
    assert.equal(check(r, "qe-identity").ok, false, at);
    assert.equal(check(r, "revocation").ok, false, at);
    assert.equal(r.claims.tcbStatus, "no matching level");
  }
});

Deno.test("collateral: without collateral the TCB is not evaluated, and the result says so", async () => {
  const r = await verifyEvidence(SPR, { at: AT_2023 });
  assert.equal(r.ok, true);
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
    "collateral",
  ]);
  assert.equal(r.claims.tcbStatus, null);
  assert.ok("tcbStatus" in r.claims);
  assert.match(check(r, "collateral").detail!, /^TCB not evaluated \(no collateral\)/);
});

Deno.test("collateral: require_collateral (policy, or the caller's default) refuses a quote without it", async () => {
  const byPolicy = await verifyEvidence(SPR, {
    at: AT_2023,
    policy: { ...DEFAULT_POLICY, requireCollateral: true },
  });
  assert.equal(byPolicy.ok, false);
  assert.equal(check(byPolicy, "collateral").ok, false);
  assert.match(
    check(byPolicy, "collateral").detail!,
    /TCB not evaluated \(no collateral\).*--collateral-dir/,
  );
  const byDefault = await verifyEvidence(SPR, { at: AT_2023, requireCollateral: true });
  assert.equal(check(byDefault, "collateral").ok, false);
  // The policy's explicit false wins over the caller's default.
  const allowed = await verifyEvidence(SPR, {
    at: AT_2023,
    requireCollateral: true,
    policy: { ...DEFAULT_POLICY, requireCollateral: false },
  });
  assert.equal(allowed.ok, true);
  // With TCB Info, no `collateral` check: tcb-info and tcb-status say what was evaluated.
  const full = await verifyEvidence(SPR, {
    at: AT_2023,
    requireCollateral: true,
    collateral: [TCB_INFO, QE_IDENTITY],
  });
  assert.equal(full.checks.some((c) => c.id === "collateral"), false);
});

Deno.test("collateral: a QE identity for the other QE fails qe-identity", async () => {
  const sgxQe = replaceOnce(QE_IDENTITY, '"id":"TD_QE"', '"id":"QE"');
  const r = await verifyEvidence(SPR, { at: AT_2023, collateral: [sgxQe] });
  assert.equal(check(r, "qe-identity").ok, false);
  assert.match(check(r, "qe-identity").detail!, /not the "TD_QE" this quote needs/);
});

// --- malformed collateral ----------------------------------------------------

const MALFORMED: [string, Uint8Array, RegExp][] = [
  ["not JSON", enc("tcbInfo"), /not JSON/],
  ["bad UTF-8", Uint8Array.of(0x7b, 0xff, 0x7d), /not JSON/],
  ["neither kind", enc('{"foo":1}'), /neither "tcbInfo" nor "enclaveIdentity"/],
  ["an array", enc("[1]"), /must be an object/],
  ["missing fields", enc('{"tcbInfo":{},"signature":"00"}'), /"signature" must be 64 bytes/],
  ["a missing signature", replaceOnce(TCB_INFO, '"signature"', '"signatur"'), /"signature"/],
  ["a wrong type", replaceOnce(TCB_INFO, '"version":3', '"version":"3"'), /"tcbInfo.version"/],
  ["a bad date", replaceOnce(TCB_INFO, "2023-06-18T08:42:58Z", "yesterday"), /issueDate/],
  [
    "an unknown status",
    replaceOnce(QE_IDENTITY, '"UpToDate"', '"Fine"'),
    /"enclaveIdentity.tcbLevels\[0\].tcbStatus" is "Fine"/,
  ],
  [
    "a component without svn",
    enc(dec(TCB_INFO).replace('[{"svn":5,"category":"BIOS"', '[{"category":"BIOS"')),
    /svn/,
  ],
  [
    "a duplicate member",
    enc(dec(TCB_INFO).replace('{"tcbInfo"', '{"tcbInfo":1,"tcbInfo"')),
    /twice/,
  ],
  ["huge", enc(`{"tcbInfo":"${"x".repeat(300_000)}"}`), /more than the 262144 allowed/],
  ["version 4", replaceOnce(TCB_INFO, '"version":3', '"version":4'), /version 4 is not supported/],
];

for (const [name, bytes, pattern] of MALFORMED) {
  Deno.test(`collateral: ${name} is a MalformedCollateralError (exit 65)`, async () => {
    assert.throws(() => parseIntelCollateral(bytes, "c.json"), (e: unknown) => {
      assert.ok(e instanceof MalformedCollateralError, String(e));
      assert.equal(e.exitStatus, 65);
      assert.match(e.message, pattern);
      assert.match(e.message, /^The collateral "c\.json" /);
      return true;
    });
    await assert.rejects(
      () => verifyEvidence(SPR, { at: AT_2023, collateral: [bytes] }),
      MalformedCollateralError,
    );
  });
}

// --- test PKI: CRLs and signed TCB Info -------------------------------------

const AT = new Date("2025-06-01T00:00:00Z");
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;
let pkiPromise: Promise<TestPki> | undefined;
const testPki = () => pkiPromise ??= makeTestPki();

async function testCrl(pki: TestPki, serials: string[], key?: CryptoKey): Promise<Uint8Array> {
  const crl = await X509CrlGenerator.create({
    issuer: pki.caCert.subject,
    thisUpdate: new Date("2025-05-01T00:00:00Z"),
    nextUpdate: new Date("2025-07-01T00:00:00Z"),
    entries: serials.map((serialNumber) => ({
      serialNumber,
      revocationDate: new Date("2025-05-01T00:00:00Z"),
    })),
    signingKey: key ?? pki.caKey.privateKey,
    signingAlgorithm: SIGN,
  });
  return new Uint8Array(crl.rawData);
}

Deno.test("collateral: a test CRL revoking the test PCK fails revocation", async () => {
  const pki = await testPki();
  const quote = await buildQuote(pki, { version: 4, tee: "tdx" });
  const base = { at: AT, trustedRoots: [pki.rootDer] };
  const clean = await verifyEvidence(quote, { ...base, crls: [await testCrl(pki, ["7f"])] });
  assert.equal(check(clean, "revocation").ok, true);
  assert.equal(clean.ok, true);
  const revoked = await verifyEvidence(quote, { ...base, crls: [await testCrl(pki, ["03"])] });
  assert.equal(check(revoked, "revocation").ok, false);
  assert.match(
    check(revoked, "revocation").detail!,
    /Test SGX PCK Certificate.*serial 3.* revoked/,
  );
  // PEM works too.
  const der = await testCrl(pki, ["03"]);
  const pem = new X509Crl(der.slice()).toString("pem");
  const fromPem = await verifyEvidence(quote, { ...base, crls: [enc(pem)] });
  assert.equal(check(fromPem, "revocation").ok, false);
  // A CRL with the right issuer name but signed by another key is refused.
  const other = await crypto.subtle.generateKey(
    { name: "ECDSA", namedCurve: "P-256" },
    true,
    ["sign", "verify"],
  ) as CryptoKeyPair;
  const forged = await verifyEvidence(quote, {
    ...base,
    crls: [await testCrl(pki, [], other.privateKey)],
  });
  assert.equal(check(forged, "revocation").ok, false);
  assert.match(check(forged, "revocation").detail!, /bad signature/);
  // Intel's CRLs do not apply to the test chain: no applicable CRL fails.
  const foreign = await verifyEvidence(quote, { ...base, crls: [PCK_CRL] });
  assert.equal(check(foreign, "revocation").ok, false);
  assert.match(check(foreign, "revocation").detail!, /no CRL from an issuer of this chain/);
});

interface Signer {
  certDer: Uint8Array;
  key: CryptoKeyPair;
}

let signerPromise: Promise<Signer> | undefined;
function testSigner(): Promise<Signer> {
  signerPromise ??= (async () => {
    const key = await crypto.subtle.generateKey(
      { name: "ECDSA", namedCurve: "P-256" },
      true,
      ["sign", "verify"],
    ) as CryptoKeyPair;
    const cert = await X509CertificateGenerator.createSelfSigned({
      serialNumber: "0a",
      name: "CN=Test SGX TCB Signing, O=enarx tests",
      notBefore: new Date("2024-01-01T00:00:00Z"),
      notAfter: new Date("2034-01-01T00:00:00Z"),
      keys: key,
      signingAlgorithm: SIGN,
    });
    return { certDer: new Uint8Array(cert.rawData), key };
  })();
  return signerPromise;
}

async function signed(kind: string, body: unknown, signer: Signer): Promise<Uint8Array> {
  const value = JSON.stringify(body);
  const sig = new Uint8Array(await crypto.subtle.sign(SIGN, signer.key.privateKey, enc(value)));
  return enc(`{"${kind}":${value},"signature":"${sig.toHex()}"}`);
}

const svns = (list: number[]) => list.map((svn) => ({ svn }));
const PLATFORM_SGX = [2, 2, 2, 2, 3, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 200];

function testTcbInfo(
  tee: "TDX" | "SGX",
  status: string,
  options: { fmspc?: string; pceSvn?: number } = {},
) {
  const tdx = tee === "TDX" ? { tdxtcbcomponents: svns([3, 0, 4, ...new Array(13).fill(0)]) } : {};
  return {
    id: tee,
    version: 3,
    issueDate: "2025-05-01T00:00:00Z",
    nextUpdate: "2025-07-01T00:00:00Z",
    fmspc: options.fmspc ?? "00906ed50000",
    pceId: "0000",
    tcbType: 0,
    tcbEvaluationDataNumber: 17,
    ...(tee === "TDX"
      ? {
        tdxModule: {
          mrsigner: "00".repeat(48),
          attributes: "0000000000000000",
          attributesMask: "FFFFFFFFFFFFFFFF",
        },
      }
      : {}),
    tcbLevels: [
      {
        tcb: {
          sgxtcbcomponents: svns([3, ...PLATFORM_SGX.slice(1)]),
          pcesvn: 13,
          ...tdx,
        },
        tcbDate: "2025-03-01T00:00:00Z",
        tcbStatus: "UpToDate",
      },
      {
        tcb: { sgxtcbcomponents: svns(PLATFORM_SGX), pcesvn: options.pceSvn ?? 13, ...tdx },
        tcbDate: "2024-11-01T00:00:00Z",
        tcbStatus: status,
        advisoryIDs: ["INTEL-SA-00000"],
      },
    ],
  };
}

async function tdxTestQuote(pki: TestPki) {
  return await buildQuote(pki, {
    version: 4,
    tee: "tdx",
    fillBody: (body) => body.set([3, 0, 4], 0),
  });
}

Deno.test("collateral: a test TCB Info whose matching level is UpToDate passes tcb-status", async () => {
  const [pki, signer] = [await testPki(), await testSigner()];
  const quote = await tdxTestQuote(pki);
  const options: VerifyEvidenceOptions = {
    at: AT,
    trustedRoots: [pki.rootDer, signer.certDer],
    collateral: [await signed("tcbInfo", testTcbInfo("TDX", "UpToDate"), signer)],
  };
  const r = await verifyEvidence(quote, options);
  assert.equal(check(r, "tcb-info").ok, true, check(r, "tcb-info").detail);
  assert.equal(check(r, "tcb-status").ok, true, check(r, "tcb-status").detail);
  assert.equal(r.ok, true);
  assert.equal(r.claims.tcbStatus, "UpToDate");
  assert.equal(r.claims.tcbDate, "2024-11-01T00:00:00.000Z");
  assert.deepEqual(r.claims.advisoryIds, ["INTEL-SA-00000"]);
  assert.equal(r.claims.tcbLevel, 1);
  // A TEE_TCB_SVN below the level's tdxtcbcomponents matches nothing.
  const low = await buildQuote(pki, {
    version: 4,
    tee: "tdx",
    fillBody: (body) => body.set([3, 0, 3], 0),
  });
  const rl = await verifyEvidence(low, options);
  assert.equal(rl.claims.tcbStatus, "no matching level");
  assert.equal(check(rl, "tcb-status").ok, false);
  // The same TCB Info is not trusted without its signer.
  const untrusted = await verifyEvidence(quote, { ...options, trustedRoots: [pki.rootDer] });
  assert.equal(check(untrusted, "tcb-info").ok, false);
  // The signer may also come as a certificate (--certs) beside a trusted root.
  const viaCerts = await verifyEvidence(quote, { ...options, certs: [signer.certDer] });
  assert.equal(check(viaCerts, "tcb-info").ok, true);
});

Deno.test("collateral: an OutOfDate level fails tcb-status unless the policy allows it", async () => {
  const [pki, signer] = [await testPki(), await testSigner()];
  const quote = await tdxTestQuote(pki);
  const options: VerifyEvidenceOptions = {
    at: AT,
    trustedRoots: [pki.rootDer, signer.certDer],
    collateral: [await signed("tcbInfo", testTcbInfo("TDX", "OutOfDate"), signer)],
  };
  const refused = await verifyEvidence(quote, options);
  assert.equal(refused.claims.tcbStatus, "OutOfDate");
  assert.equal(check(refused, "tcb-status").ok, false);
  assert.match(check(refused, "tcb-status").detail!, /allowed: UpToDate$/);
  const policy = parsePolicy('allowed_tcb_statuses = ["OutOfDate", "SWHardeningNeeded"]');
  const allowed = await verifyEvidence(quote, { ...options, policy });
  assert.equal(check(allowed, "tcb-status").ok, true);
  assert.equal(allowed.ok, true);
  const other = parsePolicy('allowed_tcb_statuses = ["SWHardeningNeeded"]');
  assert.equal(
    check(await verifyEvidence(quote, { ...options, policy: other }), "tcb-status").ok,
    false,
  );
});

Deno.test("collateral: an OutOfDate QE identity turns an UpToDate platform OutOfDate", async () => {
  const [pki, signer] = [await testPki(), await testSigner()];
  const quote = await tdxTestQuote(pki);
  const identity = (minSvn: number) => ({
    id: "TD_QE",
    version: 2,
    issueDate: "2025-05-01T00:00:00Z",
    nextUpdate: "2025-07-01T00:00:00Z",
    tcbEvaluationDataNumber: 17,
    miscselect: "00000000",
    miscselectMask: "FFFFFFFF",
    attributes: "11000000000000000000000000000000",
    attributesMask: "FBFFFFFFFFFFFFFF0000000000000000",
    mrsigner: "DC9E2A7C6F948F17474E34A7FC43ED030F7C1563F1BABDDF6340C82E0E54A8C5",
    isvprodid: 2,
    tcbLevels: [
      { tcb: { isvsvn: minSvn }, tcbDate: "2025-01-01T00:00:00Z", tcbStatus: "UpToDate" },
      { tcb: { isvsvn: 0 }, tcbDate: "2020-01-01T00:00:00Z", tcbStatus: "OutOfDate" },
    ],
  });
  const base = { at: AT, trustedRoots: [pki.rootDer, signer.certDer] };
  const info = await signed("tcbInfo", testTcbInfo("TDX", "UpToDate"), signer);
  // The builder's QE has ISVSVN 7.
  const fresh = await verifyEvidence(quote, {
    ...base,
    collateral: [info, await signed("enclaveIdentity", identity(7), signer)],
  });
  assert.equal(check(fresh, "qe-identity").ok, true, check(fresh, "qe-identity").detail);
  assert.equal(fresh.claims.tcbStatus, "UpToDate");
  const stale = await verifyEvidence(quote, {
    ...base,
    collateral: [info, await signed("enclaveIdentity", identity(8), signer)],
  });
  assert.equal(check(stale, "qe-identity").ok, true);
  assert.equal(stale.claims.qeTcbStatus, "OutOfDate");
  assert.equal(stale.claims.tcbStatus, "OutOfDate");
  assert.equal(check(stale, "tcb-status").ok, false);
  // A QE whose masked attributes differ (debug) fails the identity.
  const debugQuote = await buildQuote(pki, { version: 4, tee: "tdx", qeDebug: true });
  const d = await verifyEvidence(debugQuote, {
    ...base,
    collateral: [await signed("enclaveIdentity", identity(7), signer)],
  });
  assert.equal(check(d, "qe-identity").ok, false);
  assert.match(check(d, "qe-identity").detail!, /debug enclave.*masked ATTRIBUTES/);
});

Deno.test("collateral: SGX quotes use SGX TCB Info (v3 and v2 forms) and refuse TDX TCB Info", async () => {
  const [pki, signer] = [await testPki(), await testSigner()];
  const quote = await buildQuote(pki, { version: 3, tee: "sgx" });
  const base = { at: AT, trustedRoots: [pki.rootDer, signer.certDer] };
  const v3 = await verifyEvidence(quote, {
    ...base,
    collateral: [await signed("tcbInfo", testTcbInfo("SGX", "SWHardeningNeeded"), signer)],
  });
  assert.equal(check(v3, "tcb-info").ok, true, check(v3, "tcb-info").detail);
  assert.equal(v3.claims.tcbStatus, "SWHardeningNeeded");
  assert.equal(check(v3, "tcb-status").ok, false);
  // TCB Info v2: no id, components as sgxtcbcompNNsvn.
  const body = testTcbInfo("SGX", "UpToDate") as Record<string, unknown>;
  delete body.id;
  body.version = 2;
  body.tcbLevels = (body.tcbLevels as { tcb: { sgxtcbcomponents: { svn: number }[] } }[]).map(
    (l) => ({
      ...l,
      tcb: {
        ...Object.fromEntries(
          l.tcb.sgxtcbcomponents.map((
            c,
            i,
          ) => [`sgxtcbcomp${String(i + 1).padStart(2, "0")}svn`, c.svn]),
        ),
        pcesvn: 13,
      },
    }),
  );
  const v2 = await verifyEvidence(quote, {
    ...base,
    collateral: [await signed("tcbInfo", body, signer)],
  });
  assert.equal(check(v2, "tcb-info").ok, true, check(v2, "tcb-info").detail);
  assert.equal(v2.claims.tcbStatus, "UpToDate");
  assert.equal(v2.ok, true);
  // PCESVN 14 needed, 13 held: no match.
  const pce = await verifyEvidence(quote, {
    ...base,
    collateral: [await signed("tcbInfo", testTcbInfo("SGX", "UpToDate", { pceSvn: 14 }), signer)],
  });
  assert.equal(pce.claims.tcbStatus, "no matching level");
  const tdxInfo = await verifyEvidence(quote, {
    ...base,
    collateral: [await signed("tcbInfo", testTcbInfo("TDX", "UpToDate"), signer)],
  });
  assert.equal(check(tdxInfo, "tcb-info").ok, false);
  assert.match(check(tdxInfo, "tcb-info").detail!, /for TDX, not SGX/);
});

// --- policy -------------------------------------------------------------------

Deno.test("policy: allowed_tcb_statuses is read, and an unknown status is refused", () => {
  assert.deepEqual(
    parsePolicy('allowed_tcb_statuses = ["SWHardeningNeeded"]').allowedTcbStatuses,
    ["SWHardeningNeeded"],
  );
  assert.equal(parsePolicy("").allowedTcbStatuses, undefined);
  assert.throws(
    () => parsePolicy('allowed_tcb_statuses = ["Fine"]'),
    (e: unknown) => e instanceof PolicyError && /"allowed_tcb_statuses" has "Fine"/.test(e.message),
  );
});

// --- CLI ------------------------------------------------------------------------

const MAIN = new URL("../../../cli/main.ts", import.meta.url).pathname;

async function enarx(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: dec(out.stdout), stderr: dec(out.stderr) };
}

const path = (p: string) => new URL(p, EVIDENCE).pathname;

Deno.test("attest verify --collateral: SPR E4 shows tcb-status and claims; exit 1", async () => {
  const r = await enarx([
    "attest",
    "verify",
    path(`${GO}tdx_prod_quote_SPR_E4.dat`),
    "--collateral",
    path(`${GO}sample_tcbInfo_response`),
    "--collateral",
    path(`${GO}sample_qeIdentity_response`),
    "--at",
    "2023-07-01T00:00:00Z",
    "--json",
  ]);
  assert.equal(r.code, 1, r.stderr);
  const doc = JSON.parse(r.stdout);
  const byId = Object.fromEntries(doc.checks.map((c: { id: string }) => [c.id, c]));
  assert.equal(byId["tcb-info"].ok, true);
  assert.equal(byId["tcb-status"].ok, false);
  assert.equal(byId["qe-identity"].ok, true);
  assert.equal(doc.claims.tcbStatus, "no matching level");
  assert.equal(doc.claims.qeTcbStatus, "UpToDate");
});

Deno.test("attest verify --collateral DIR picks up TCB Info, QE identity and CRLs", async () => {
  const r = await enarx([
    "attest",
    "verify",
    path(`${GO}tdx_prod_quote_SPR_E4.dat`),
    "--collateral",
    path(GO),
    "--at",
    "2023-07-01T00:00:00Z",
    "--json",
  ]);
  assert.equal(r.code, 1, r.stderr);
  const doc = JSON.parse(r.stdout);
  const ids = doc.checks.map((c: { id: string }) => c.id);
  for (const id of ["qe-identity", "revocation", "tcb-info", "tcb-status"]) {
    assert.ok(ids.includes(id), id);
  }
  assert.equal(doc.checks.filter((c: { ok: boolean }) => !c.ok).length, 1);
});

Deno.test("attest verify --collateral: malformed collateral is exit 65 with one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "enarx-collateral-" });
  try {
    const bad = `${dir}/tcb.json`;
    await Deno.writeTextFile(bad, '{"tcbInfo":{"version":3},"signature":"00"}');
    const r = await enarx([
      "attest",
      "verify",
      path(`${GO}tdx_prod_quote_SPR_E4.dat`),
      "--collateral",
      bad,
      "--at",
      "2023-07-01",
    ]);
    assert.equal(r.code, 65);
    const lines = r.stderr.trim().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], /^enarx: The collateral ".*tcb\.json" is not valid Intel TCB Info/);
    const garbage = `${dir}/garbage.bin`;
    await Deno.writeFile(garbage, new Uint8Array(100).fill(7));
    const g = await enarx([
      "attest",
      "verify",
      path(`${GO}tdx_prod_quote_SPR_E4.dat`),
      "--collateral",
      garbage,
    ]);
    assert.equal(g.code, 65);
    assert.match(g.stderr, /^enarx: The collateral ".*garbage\.bin" is neither/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
