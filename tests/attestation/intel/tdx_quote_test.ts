import assert from "node:assert/strict";
import { claimsToJson } from "../../../runtime/attestation/claims_json.ts";
import { verifyTdxQuote } from "../../../runtime/attestation/intel/tdx_quote.ts";
import { verifySgxQuote } from "../../../runtime/attestation/intel/sgx_quote.ts";
import { parseIntelQuote } from "../../../runtime/attestation/intel/intel_quote.ts";
import { EnarxError } from "../../../runtime/errors.ts";
import { buildQuote, makeTestPki, TEST_PCK_FACTS } from "./_intel_quote_builder.ts";
import { attemptVerify, failingChecks as failing, findCheck as check } from "../_verification.ts";

const EVIDENCE = new URL("../../testdata/evidence/", import.meta.url);
const SPR = Deno.readFileSync(new URL("tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat", EVIDENCE));
const V5 = Deno.readFileSync(new URL("tdx/trustee/tdx_quote_5.dat", EVIDENCE));
const AT = new Date("2025-06-01T00:00:00Z");
const NOW = new Date("2026-11-27T00:00:00Z");

const ALL_CHECKS = [
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
];

Deno.test("tdx: SPR E4 quote v4 verifies with the facts the evidence README lists", async () => {
  const r = await verifyTdxQuote(SPR, { at: AT });
  assert.deepEqual(failing(r), []);
  assert.equal(r.ok, true);
  assert.equal(r.format, "tdx");
  assert.deepEqual(r.checks.map((c) => c.id), ALL_CHECKS);
  const c = claimsToJson(r.claims);
  assert.equal(SPR.length, 4974);
  assert.equal(c.version, 4);
  assert.equal(c.signatureDataLength, 4299);
  assert.equal(c.trailingBytes, 39);
  assert.equal(c.fmspc, "50806f000000");
  assert.ok((c.teeTcbSvn as string).startsWith("030004"));
  assert.equal(c.tdAttributes, "0x40000000");
  assert.equal(c.debug, false);
  assert.equal(
    c.mrTd,
    "6363b8043668a3ad953278e10389574d326c6749fb78aa810ecd9336923db86f22fc00b8dcd404bc10d5e119d7215cbb",
  );
  assert.equal(c.measurement, c.mrTd);
  assert.equal(
    c.reportData,
    "6c62dec1b8191749a31dab490be532a35944dea47caef1f980863993d9899545eb7406a38d1eed313b987a467dacead6f0c87a6d766c66f6f29f8acb281f1113",
  );
  const pck = c.pck as Record<string, string>;
  assert.equal(pck.notBefore.slice(0, 10), "2022-09-20");
  assert.equal(pck.notAfter.slice(0, 10), "2029-09-20");
  assert.match(pck.issuer, /^CN=Intel SGX PCK Platform CA,/);
  const qe = c.qe as Record<string, unknown>;
  assert.equal(qe.mrSigner, "dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5");
  assert.equal(qe.isvProdId, 2);
  assert.deepEqual(
    (c.pckTcb as { sgxTcbComponents: number[] }).sgxTcbComponents.slice(0, 8),
    [3, 3, 2, 2, 2, 1, 0, 2],
  );
  for (const k of ["rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrSeam"]) {
    assert.match(c[k] as string, /^[0-9a-f]{96}$/);
  }
});

Deno.test("tdx: trustee quote v5 (TD 1.5 body) verifies with the facts the evidence README lists", async () => {
  const r = await verifyTdxQuote(V5, { at: AT });
  assert.deepEqual(failing(r), []);
  const c = claimsToJson(r.claims);
  assert.equal(V5.length, 5006);
  assert.equal(c.version, 5);
  assert.equal(c.bodyType, 3);
  assert.equal(c.signatureDataLength, 4300);
  assert.equal(c.trailingBytes, 0);
  assert.equal(c.fmspc, "90c06f000000");
  assert.ok((c.teeTcbSvn as string).startsWith("050102"));
  assert.equal(c.tdAttributes, "0x10000000");
  assert.equal(c.septVeDisable, true);
  assert.equal(c.debug, false);
  assert.ok((c.mrTd as string).startsWith("dfba221b") && (c.mrTd as string).endsWith("86400a"));
  assert.ok(
    (c.reportData as string).startsWith("6d6ab13b") &&
      (c.reportData as string).endsWith("74fd049f"),
  );
  assert.ok((c.mrServiceTd as string).startsWith("383c87d3"));
  const pck = c.pck as Record<string, string>;
  assert.equal(pck.notBefore.slice(0, 10), "2024-03-18");
  assert.equal(pck.notAfter.slice(0, 4), "2031");
  assert.match(pck.issuer, /^CN=Intel SGX PCK Platform CA,/);
  const qe = c.qe as Record<string, unknown>;
  assert.equal(qe.mrSigner, "dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5");
  assert.equal(qe.isvProdId, 2);
});

Deno.test("tdx: validity follows the given time, never the clock", async () => {
  // Both PCK chains are still valid late 2026.
  assert.equal((await verifyTdxQuote(SPR, { at: NOW })).ok, true);
  const before = await verifyTdxQuote(SPR, { at: new Date("2022-01-01T00:00:00Z") });
  assert.deepEqual(failing(before), ["validity"]);
  assert.match(check(before, "validity").detail!, /not valid before 2022-09-20/);
  const after = await verifyTdxQuote(V5, { at: new Date("2031-06-01T00:00:00Z") });
  assert.deepEqual(failing(after), ["validity"]);
  assert.match(check(after, "validity").detail!, /expired 2031-03-18/);
});

Deno.test("tdx: a root other than Intel's is refused", async () => {
  const other = await makeTestPki();
  const r = await verifyTdxQuote(SPR, { at: AT, trustedRoots: [other.rootDer] });
  assert.deepEqual(failing(r), ["root"]);
  assert.match(check(r, "root").detail!, /not a trusted root/);
});

async function flipAll(
  quote: Uint8Array,
  from: number,
  to: number,
  mustFail: string,
): Promise<number> {
  let count = 0;
  const copy = quote.slice();
  for (let byte = from; byte < to; byte++) {
    for (let bit = 0; bit < 8; bit++) {
      copy[byte] ^= 1 << bit;
      const r = await attemptVerify(verifyTdxQuote, copy, { at: AT });
      copy[byte] ^= 1 << bit;
      if (r === "dataError") continue;
      assert.equal(r.ok, false, `flipping bit ${bit} of byte ${byte} still verifies`);
      assert.equal(check(r, mustFail).ok, false, `byte ${byte} bit ${bit}: ${failing(r)}`);
      count++;
    }
  }
  return count;
}

Deno.test("tdx: flipping any bit of the signed region or the quote signature fails", async () => {
  for (const [quote, signedEnd] of [[SPR, 632], [V5, 54 + 648]] as const) {
    const signed = await flipAll(quote, 0, signedEnd, "quote-signature");
    assert.ok(signed > signedEnd * 6, `only ${signed} flips got past the parser`);
    await flipAll(quote, signedEnd + 4, signedEnd + 4 + 64, "quote-signature");
  }
});

Deno.test("tdx: flipping any bit of the QE report, its signature or the attestation key fails", async () => {
  const q = parseIntelQuote(SPR);
  const base = SPR.byteOffset;
  const off = (part: Uint8Array) => part.byteOffset - base;
  await flipAll(SPR, off(q.attestationKey), off(q.attestationKey) + 64, "quote-signature");
  // The QE report: one bit of every byte, chosen by a seeded generator.
  const random = prng(11);
  const copy = SPR.slice();
  for (let byte = off(q.qeReport); byte < off(q.qeReport) + 384; byte++) {
    const bit = 1 << Math.floor(random() * 8);
    copy[byte] ^= bit;
    const r = await attemptVerify(verifyTdxQuote, copy, { at: AT });
    copy[byte] ^= bit;
    assert.ok(r !== "dataError" && !r.ok && !check(r, "qe-report-signature").ok, `byte ${byte}`);
  }
  await flipAll(
    SPR,
    off(q.qeReportSignature),
    off(q.qeReportSignature) + 64,
    "qe-report-signature",
  );
  await flipAll(
    SPR,
    off(q.qeAuthData),
    off(q.qeAuthData) + q.qeAuthData.length,
    "attestation-key-binding",
  );
});

/** A deterministic PRNG (mulberry32), so a failure can be reproduced. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function pemBlock(der: Uint8Array): string {
  const b64 = btoa(String.fromCharCode(...der));
  return `-----BEGIN CERTIFICATE-----\n${
    b64.match(/.{1,64}/g)!.join("\n")
  }\n-----END CERTIFICATE-----\n`;
}

/** Replaces the quote's PEM chain with a re-encoding of `chain` (same length when the DER sizes are unchanged). */
function withChain(quote: Uint8Array, chain: Uint8Array[]): Uint8Array {
  const q = parseIntelQuote(quote);
  const text = chain.map(pemBlock).join("");
  const padding = "\0".repeat(q.certificationData.length - text.length); // some QEs end with NULs
  const pem = new TextEncoder().encode(text + padding);
  assert.equal(pem.length, q.certificationData.length);
  const out = quote.slice();
  out.set(pem, q.certificationData.byteOffset - quote.byteOffset);
  return out;
}

Deno.test("tdx: flipping random bits of the PCK chain's certificates fails", async () => {
  for (const quote of [SPR, V5]) {
    const chain = parseIntelQuote(quote).pckChain!;
    // The re-encoding is exact, so a failure below comes from the flipped bit alone.
    assert.deepEqual(withChain(quote, chain), quote);
    const random = prng(3);
    for (let which = 0; which < chain.length; which++) {
      for (let n = 0; n < 60; n++) {
        const der = chain[which].slice();
        const bit = Math.floor(random() * der.length * 8);
        der[bit >> 3] ^= 1 << (bit & 7);
        const copy = chain.slice();
        copy[which] = der;
        const r = await attemptVerify(verifyTdxQuote, withChain(quote, copy), { at: AT });
        if (r === "dataError") continue;
        assert.equal(r.ok, false, `cert ${which} bit ${bit} still verifies`);
      }
    }
  }
});

Deno.test("tdx: malformed quotes are dataErrors, never other exceptions", async () => {
  // Every truncation that cuts into the signature data.
  for (let n = 0; n < SPR.length - 39; n += 1) {
    assert.equal(
      await attemptVerify(verifyTdxQuote, SPR.subarray(0, n), { at: AT }),
      "dataError",
      `length ${n}`,
    );
  }
  // Trailing bytes are allowed: the SPR quote already has 39.
  assert.equal((await verifyTdxQuote(SPR.subarray(0, SPR.length - 39), { at: AT })).ok, true);
  const edit = (at: number, bytes: number[]) => {
    const copy = V5.slice();
    copy.set(bytes, at);
    return copy;
  };
  const cases: [string, Uint8Array, RegExp][] = [
    ["version 2", edit(0, [2, 0]), /version 2 is not supported/],
    ["version 6", edit(0, [6, 0]), /version 6 is not supported/],
    ["key type 3", edit(2, [3, 0]), /key type 3/],
    ["TEE type 0x82", edit(4, [0x82]), /TEE type 0x82/],
    ["v5 body type 9", edit(48, [9, 0]), /body type 9/],
    ["v5 body size", edit(50, [0x49, 2]), /has size 585/],
    ["huge sig_data_len", edit(702, [0xff, 0xff, 0xff, 0xff]), /past its end/],
    ["huge cert data size", edit(702 + 4 + 128 + 2, [0xff, 0xff, 0xff, 0x7f]), /truncated/],
    ["wrong outer cert type", edit(702 + 4 + 128, [5, 0]), /type 6/],
    ["garbage", new Uint8Array(5000).fill(0x99), /version 39321 is not supported/],
    ["huge", new Uint8Array(2 << 20), /more than/],
    ["empty", new Uint8Array(0), /shorter than its 48-byte header/],
  ];
  for (const [name, bytes, message] of cases) {
    await assert.rejects(
      verifyTdxQuote(bytes, { at: AT }),
      (e: unknown) => e instanceof EnarxError && e.exitStatus === 65 && message.test(e.message),
      name,
    );
  }
  // Random garbage of every small size.
  const random = prng(7);
  for (let n = 0; n < 800; n++) {
    const bytes = new Uint8Array(n).map(() => Math.floor(random() * 256));
    if (n >= 8) bytes.set([4, 0, 2, 0, 0x81, 0, 0, 0]);
    assert.equal(
      await attemptVerify(verifyTdxQuote, bytes, { at: AT }),
      "dataError",
      `garbage of ${n} bytes`,
    );
  }
});

Deno.test("tdx: an SGX quote given as TDX, and the reverse, are refused as the wrong format", async () => {
  const sgx = Deno.readFileSync(new URL("sgx/trustee-occlum/occlum_quote.dat", EVIDENCE));
  await assert.rejects(verifyTdxQuote(sgx, { at: AT }), /use --format sgx/);
  await assert.rejects(verifySgxQuote(SPR, { at: AT }), /use --format tdx/);
});

// --- quotes built here with a test PKI ----------------------------------------

const pki = await makeTestPki();
const roots = { at: AT, trustedRoots: [pki.rootDer] };
const MRTD = new Uint8Array(48).fill(0x42);

function fillTd(debug = false) {
  return (body: Uint8Array) => {
    body.set([7, 1, 3], 0); // TEE_TCB_SVN
    body.set(MRTD, 136);
    body[120] = debug ? 0x01 : 0x00;
    body[123] = 0x10; // SEPT_VE_DISABLE
    body.set(new Uint8Array(48).fill(0xa0), 328);
    body.set(new Uint8Array(48).fill(0xa3), 472);
    body.set(new Uint8Array(64).fill(0x99), 520);
  };
}

Deno.test("tdx: a v4 quote built with a test PCK chain verifies end to end", async () => {
  const quote = await buildQuote(pki, { version: 4, tee: "tdx", fillBody: fillTd(), trailing: 5 });
  const r = await verifyTdxQuote(quote, roots);
  assert.deepEqual(failing(r), []);
  assert.equal(claimsToJson(r.claims).version, 4);
  assert.equal(claimsToJson(r.claims).mrTd, "42".repeat(48));
  assert.equal(claimsToJson(r.claims).rtmr0, "a0".repeat(48));
  assert.equal(claimsToJson(r.claims).rtmr3, "a3".repeat(48));
  assert.equal(claimsToJson(r.claims).reportData, "99".repeat(64));
  assert.equal(claimsToJson(r.claims).tdAttributes, "0x10000000");
  assert.equal(claimsToJson(r.claims).teeTcbSvn, "070103" + "00".repeat(13));
  assert.equal(claimsToJson(r.claims).trailingBytes, 5);
  assert.equal(claimsToJson(r.claims).fmspc, "00906ed50000");
  assert.equal(claimsToJson(r.claims).pceId, "0000");
  assert.deepEqual(claimsToJson(r.claims).pckTcb, {
    sgxTcbComponents: TEST_PCK_FACTS.sgxTcbComponents,
    pceSvn: 13,
    cpuSvn: "0202020203010003000000000000" + "00c8",
  });
  assert.equal(claimsToJson(r.claims).sgxType, 1);
  assert.equal(claimsToJson(r.claims).mrServiceTd, undefined);
  // Without the test root, the same quote is anchored nowhere.
  assert.deepEqual(failing(await verifyTdxQuote(quote, { at: AT })), ["root"]);
});

Deno.test("tdx: v5 quotes with TD 1.0 and TD 1.5 bodies built here verify", async () => {
  for (const tdBody of ["td10", "td15"] as const) {
    const quote = await buildQuote(pki, { version: 5, tee: "tdx", tdBody, fillBody: fillTd() });
    const r = await verifyTdxQuote(quote, roots);
    assert.deepEqual(failing(r), [], tdBody);
    assert.equal(claimsToJson(r.claims).bodyType, tdBody === "td10" ? 2 : 3);
    assert.equal(claimsToJson(r.claims).mrServiceTd === undefined, tdBody === "td10");
  }
});

Deno.test("tdx: each broken part of a built quote fails its own check", async () => {
  const other = await makeTestPki();
  const cases: [string, Promise<Uint8Array>, string[], object?][] = [
    ["debug TD", buildQuote(pki, { version: 4, tee: "tdx", fillBody: fillTd(true) }), ["debug"]],
    ["binding", buildQuote(pki, { version: 4, tee: "tdx", breakBinding: true }), [
      "attestation-key-binding",
    ]],
    [
      "QE signed by another key",
      buildQuote(pki, {
        version: 4,
        tee: "tdx",
        qeSigningKey: other.pckKey.privateKey,
      }),
      ["qe-report-signature"],
    ],
    ["not Intel's QE", buildQuote(pki, { version: 4, tee: "tdx", qeMrSigner: "00".repeat(32) }), [
      "qe-identity",
    ]],
    ["SGX QE product", buildQuote(pki, { version: 4, tee: "tdx", qeIsvProdId: 1 }), [
      "qe-identity",
    ]],
    ["debug QE", buildQuote(pki, { version: 4, tee: "tdx", qeDebug: true }), ["qe-identity"]],
    ["other QE vendor", buildQuote(pki, { version: 4, tee: "tdx", qeVendorId: "11".repeat(16) }), [
      "header",
    ]],
    [
      "chain from another PKI",
      buildQuote(pki, {
        version: 4,
        tee: "tdx",
        certData: new TextEncoder().encode(other.chainPem),
      }),
      ["qe-report-signature", "root"],
    ],
  ];
  for (const [name, quote, expected] of cases) {
    const r = await verifyTdxQuote(await quote, roots);
    assert.deepEqual(failing(r), expected, name);
  }
  const debugQuote = await buildQuote(pki, { version: 4, tee: "tdx", fillBody: fillTd(true) });
  const allowed = await verifyTdxQuote(debugQuote, { ...roots, policy: { allowDebug: true } });
  assert.equal(allowed.ok, true);
  assert.equal(claimsToJson(allowed.claims).debug, true);
});

Deno.test("tdx: certificate problems in a built chain each fail with their reason", async () => {
  const expired = await makeTestPki({ pckNotAfter: new Date("2025-01-01T00:00:00Z") });
  let r = await verifyTdxQuote(await buildQuote(expired, { version: 4, tee: "tdx" }), {
    at: AT,
    trustedRoots: [expired.rootDer],
  });
  assert.deepEqual(failing(r), ["validity"]);
  assert.match(check(r, "validity").detail!, /Test SGX PCK Certificate.*expired 2025-01-01/);

  const notCa = await makeTestPki({ caNotCa: true });
  r = await verifyTdxQuote(await buildQuote(notCa, { version: 4, tee: "tdx" }), {
    at: AT,
    trustedRoots: [notCa.rootDer],
  });
  assert.deepEqual(failing(r), ["pck-chain"]);
  assert.match(check(r, "pck-chain").detail!, /is not a CA certificate/);

  const noExt = await makeTestPki({ noSgxExtension: true });
  r = await verifyTdxQuote(await buildQuote(noExt, { version: 4, tee: "tdx" }), {
    at: AT,
    trustedRoots: [noExt.rootDer],
  });
  assert.deepEqual(failing(r), ["pck-extension"]);

  // Leaf and CA swapped: the links do not match.
  const [leaf, ca, root] = pemCertificatesOf(pki.chainPem);
  r = await verifyTdxQuote(
    await buildQuote(pki, {
      version: 4,
      tee: "tdx",
      certData: new TextEncoder().encode([ca, leaf, root].map(pemBlock).join("")),
    }),
    roots,
  );
  assert.ok(failing(r).includes("pck-chain"));
  assert.ok(failing(r).includes("qe-report-signature"));

  // A chain without its root is completed from the trusted roots.
  r = await verifyTdxQuote(
    await buildQuote(pki, {
      version: 4,
      tee: "tdx",
      certData: new TextEncoder().encode([leaf, ca].map(pemBlock).join("")),
    }),
    roots,
  );
  assert.deepEqual(failing(r), []);
  assert.match(check(r, "root").detail!, /Issued by trusted root/);
});

function pemCertificatesOf(pem: string): Uint8Array[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----\n([^-]+)-----END/g)].map((m) =>
    Uint8Array.from(atob(m[1].replaceAll("\n", "")), (c) => c.charCodeAt(0))
  );
}

Deno.test("tdx: a quote without a PCK chain needs the chain from --certs", async () => {
  const quote = await buildQuote(pki, {
    version: 4,
    tee: "tdx",
    certDataType: 3,
    certData: new Uint8Array(400).fill(7),
  });
  const r = await verifyTdxQuote(quote, roots);
  assert.deepEqual(failing(r), ["qe-report-signature", "pck-chain", "root", "validity"]);
  assert.match(check(r, "pck-chain").detail!, /type 3.*pass the PCK chain with --certs/);
  const certs = [new TextEncoder().encode(pki.chainPem)];
  const withCerts = await verifyTdxQuote(quote, { ...roots, certs });
  assert.deepEqual(failing(withCerts), []);
  assert.equal(claimsToJson(withCerts.claims).certificationDataType, 3);
});

Deno.test("tdx: a PEM chain that is not strictly PEM is malformed", async () => {
  const bad = [
    pki.chainPem.replace("-----BEGIN CERTIFICATE-----\n", "-----BEGIN CERTIFICATE-----\n\n"),
    pki.chainPem + "junk",
    pki.chainPem.replace(/\n-----END/, "A\n-----END"),
    "",
  ];
  for (const text of bad) {
    const quote = await buildQuote(pki, {
      version: 4,
      tee: "tdx",
      certData: new TextEncoder().encode(text),
    });
    assert.equal(
      await attemptVerify(verifyTdxQuote, quote, roots),
      "dataError",
      JSON.stringify(text.slice(-30)),
    );
  }
  // NUL padding after the chain is accepted, as quoting enclaves write it.
  const padded = await buildQuote(pki, {
    version: 4,
    tee: "tdx",
    certData: new TextEncoder().encode(pki.chainPem + "\0\0"),
  });
  assert.equal((await verifyTdxQuote(padded, roots)).ok, true);
});

Deno.test("tdx: a certificate whose signature is re-encoded, not re-signed, is refused", async () => {
  // @peculiar/x509 alone accepts these encodings of the same signature.
  const chain = parseIntelQuote(SPR).pckChain!;
  const leaf = chain[0];
  assert.equal(leaf.length, 1269);
  const edits: [string, number, number][] = [
    ["BIT STRING unused bits 1", leaf.length - 72, 0x01],
    ["ECDSA-Sig-Value tag 0xb0", leaf.length - 71, 0x80],
    ["ECDSA-Sig-Value length 0x44", leaf.length - 70, 0x01],
    ["outer AlgorithmIdentifier length 2", leaf.length - 85, 0x08],
  ];
  for (const [name, at, bit] of edits) {
    const der = leaf.slice();
    der[at] ^= bit;
    const r = await attemptVerify(verifyTdxQuote, withChain(SPR, [der, chain[1], chain[2]]), {
      at: AT,
    });
    assert.ok(r === "dataError" || failing(r).includes("pck-chain"), name);
  }
});
