import assert from "node:assert/strict";
import { claimsToJson } from "../../../runtime/attestation/claims_json.ts";
import { encodeEvidenceBundle } from "../../../runtime/attestation/bundle.ts";
import {
  MalformedEvidenceError,
  type VerificationResult,
} from "../../../runtime/attestation/result.ts";
import {
  AMD_CA_HEADER_SIZE,
  parseAmdCaCert,
  parseSevCert,
  SEV_CERT_SIGNED_END,
  SEV_CERT_SIZE,
} from "../../../runtime/attestation/amd/sev_cert.ts";
import {
  checkAmdCaSignature,
  checkSevSignature,
  type SevChainCerts,
  sevChainFromBlobs,
  verifySevChain,
} from "../../../runtime/attestation/amd/sev_chain.ts";
import {
  SEV_GENERATIONS,
  sevLegacyRoots,
} from "../../../runtime/attestation/amd/sev_legacy_roots.ts";
import { parsePolicy } from "../../../runtime/attestation/policy.ts";
import { verifyEvidence } from "../../../runtime/attestation/verify.ts";

import { assertCleanError, Prng } from "../../robustness/_robustness.ts";
import { failingChecks as failed } from "../_verification.ts";

const EVIDENCE = new URL("../../testdata/evidence/", import.meta.url);
const NAPLES = new URL("sev-legacy/naples/", EVIDENCE);
const ROOTS = new URL("roots/amd-sev-legacy/", EVIDENCE);
const read = (name: string, base = NAPLES) => Deno.readFileSync(new URL(name, base));
const MAIN = new URL("../../../cli/main.ts", import.meta.url).pathname;

function naples(): SevChainCerts {
  return {
    pdh: read("pdh.cert"),
    pek: read("pek.cert"),
    oca: read("oca.cert"),
    cek: read("cek.cert"),
  };
}

function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const out = bytes.slice();
  out[bit >> 3] ^= 1 << (bit & 7);
  return out;
}

/** The README's KEY_IDs (evidence README, roots/amd-sev-legacy). */
const KEY_IDS: Record<string, [string, string]> = {
  naples: ["1bb987c359494606b174945601c9ea5b", "e139970cfc464377ae61b289e2f9e96e"],
  rome: ["e6002122fb58419399d15fee7b131351", "c6cbcf145b3146f498e40ecb4ad4fded"],
  milan: ["94c38e4177d0479292a7ae671d083fb6", "73478c05cc174bfeb06e718fa75dc3c8"],
  genoa: ["9f9d4a8fe761456599f6946c4c010f3a", "acbb4ad21acc436fb3e932f812cd01b0"],
  turin: ["d05c3a8bde484904b49552422ceb3942", "15051693f7304d65a527b4a7f3f7cb77"],
};

Deno.test("sev: the Naples chain is valid with exactly the README's facts", async () => {
  const r = await verifySevChain(naples(), { at: new Date("2026-01-01") });
  assert.equal(r.ok, true, JSON.stringify(r.checks));
  assert.equal(r.format, "sev");
  assert.equal(r.simulated, false);
  assert.deepEqual(r.checks.map((c) => c.id), [
    "format",
    "pdh-signature",
    "pek-oca-signature",
    "pek-cek-signature",
    "oca-self-signature",
    "cek-signature",
    "ask-signature",
    "ark-self-signature",
    "root",
  ]);
  assert.equal(claimsToJson(r.claims).generation, "naples");
  const facts: Record<string, [string, string, string]> = {
    pdh: ["0.16", "0x1003", "0x3"],
    pek: ["0.16", "0x1002", "0x2"],
    oca: ["0.16", "0x1001", "0x2"],
    cek: ["0.14", "0x1004", "0x2"],
  };
  for (const [name, [api, usage, algo]] of Object.entries(facts)) {
    const c = claimsToJson(r.claims)[name] as Record<string, unknown>;
    assert.equal(c.apiVersion, api, name);
    assert.equal(c.usage, usage, name);
    assert.equal(c.algo, algo, name);
    assert.equal(c.curve, "P-384", name);
  }
  assert.equal(claimsToJson(r.claims).arkKeyId, KEY_IDS.naples[0]);
  assert.equal(claimsToJson(r.claims).askKeyId, KEY_IDS.naples[1]);
  assert.equal(claimsToJson(r.claims).askCertifyingId, KEY_IDS.naples[0]);
  // The PDH public key: an uncompressed P-384 point, X and Y byte-reversed from the cert.
  const pdh = read("pdh.cert");
  const x = pdh.slice(0x14, 0x14 + 48).reverse();
  assert.equal(
    claimsToJson(r.claims).pdhPublicKey,
    "04" + x.toHex() + pdh.slice(0x5c, 0x5c + 48).reverse().toHex(),
  );
  assert.match(
    r.checks.find((c) => c.id === "cek-signature")!.detail!,
    /RSA-PSS 2048-bit with SHA-256/,
  );
});

Deno.test("sev: the same chain with the Naples ASK and ARK supplied is valid; generation pinned works", async () => {
  const certs = {
    ...naples(),
    ask: read("naples_ask.cert", ROOTS),
    ark: read("naples_ark.cert", ROOTS),
  };
  const r = await verifySevChain(certs, { generation: "naples" });
  assert.equal(r.ok, true, JSON.stringify(r.checks));
  assert.equal(claimsToJson(r.claims).arkSupplied, true);
  // Naples certificates against another generation's pinned roots fail.
  const rome = await verifySevChain(naples(), { generation: "rome" });
  assert.deepEqual(failed(rome), ["cek-signature"]);
});

Deno.test("sev: the Naples CEK against the Rome ASK fails cek-signature", async () => {
  const r = await verifySevChain({ ...naples(), ask: read("rome_ask.cert", ROOTS) });
  assert.equal(r.ok, false);
  assert.deepEqual(failed(r), ["cek-signature"]);
  assert.equal(claimsToJson(r.claims).generation, "rome");
  // Even with the (unsigned) algorithm word rewritten to RSA-SHA384, RSA-PSS fails.
  const cek = read("cek.cert");
  new DataView(cek.buffer).setUint32(0x418, 0x101, true);
  const forced = await checkSevSignature(parseSevCert(cek), {
    slot: 1,
    signer: parseAmdCaCert(read("rome_ask.cert", ROOTS)),
  });
  assert.equal(forced.ok, false, forced.detail);
  assert.match(forced.detail, /RSA-PSS 4096-bit with SHA-384: invalid/);
});

Deno.test("sev: AMD's truncated Naples ARK (ark.cert.bad) is rejected as truncated", () => {
  const bad = read("ark.cert.bad");
  assert.equal(bad.length, 576);
  assert.throws(
    () => parseAmdCaCert(bad, "ARK"),
    (e: unknown) => {
      const err = assertCleanError(e, "ark.cert.bad", { exit: 65 });
      assert.ok(err instanceof MalformedEvidenceError);
      assert.match(err.message, /truncated/);
      return true;
    },
  );
  assert.throws(() => sevChainFromBlobs([...Object.values(naples()), bad]), /truncated/);
});

Deno.test("sev: ark.cert.bad + ark.cert.sig equals the embedded Naples ARK and self-verifies", async () => {
  const bad = read("ark.cert.bad");
  const sig = read("ark.cert.sig");
  const fixed = new Uint8Array(bad.length + sig.length);
  fixed.set(bad);
  fixed.set(sig, bad.length);
  assert.deepEqual(fixed, read("naples_ark.cert", ROOTS));
  assert.deepEqual(fixed, sevLegacyRoots("naples").ark);
  const ark = parseAmdCaCert(fixed, "ARK");
  const outcome = await checkAmdCaSignature(ark, ark);
  assert.equal(outcome.ok, true, outcome.detail);
});

Deno.test("sev: every embedded generation's ARK is self-signed and signs its ASK; README KEY_IDs", async () => {
  assert.deepEqual([...SEV_GENERATIONS], Object.keys(KEY_IDS));
  for (const gen of SEV_GENERATIONS) {
    const roots = sevLegacyRoots(gen);
    // Embedded bytes are the evidence folder's.
    assert.deepEqual(roots.ark, read(`${gen}_ark.cert`, ROOTS), gen);
    assert.deepEqual(roots.ask, read(`${gen}_ask.cert`, ROOTS), gen);
    const ark = parseAmdCaCert(roots.ark, `${gen} ARK`);
    const ask = parseAmdCaCert(roots.ask, `${gen} ASK`);
    assert.equal(roots.ark.length, gen === "naples" ? 832 : 1600, gen);
    assert.equal(ark.publicKey.bits, gen === "naples" ? 2048 : 4096, gen);
    assert.equal(ark.keyId.toHex(), KEY_IDS[gen][0], gen);
    assert.equal(ark.certifyingId.toHex(), KEY_IDS[gen][0], gen);
    assert.equal(ask.keyId.toHex(), KEY_IDS[gen][1], gen);
    assert.equal(ask.certifyingId.toHex(), KEY_IDS[gen][0], gen);
    assert.equal(ark.usage, 0, gen);
    assert.equal(ask.usage, 0x13, gen);
    const self = await checkAmdCaSignature(ark, ark);
    assert.equal(self.ok, true, `${gen}: ${self.detail}`);
    assert.match(self.detail, gen === "naples" ? /SHA-256/ : /SHA-384/);
    const signed = await checkAmdCaSignature(ask, ark);
    assert.equal(signed.ok, true, `${gen}: ${signed.detail}`);
    // An ASK is not self-signed.
    assert.equal((await checkAmdCaSignature(ask, ask)).ok, false, gen);
  }
  // Cross-generation: Rome's ARK does not sign Milan's ASK.
  const rome = parseAmdCaCert(sevLegacyRoots("rome").ark);
  const milanAsk = parseAmdCaCert(sevLegacyRoots("milan").ask);
  assert.equal((await checkAmdCaSignature(milanAsk, rome)).ok, false);
});

Deno.test("sev: flipping bits of the PDH's signed region and signature fails pdh-signature", async () => {
  const pdhBytes = read("pdh.cert");
  const pek = parseSevCert(read("pek.cert"));
  assert.equal(
    (await checkSevSignature(parseSevCert(pdhBytes), { slot: 1, signer: pek })).ok,
    true,
  );
  // Every bit of [0, 0x414) (8,320) and of the signature slot [0x414, 0x61C).
  const bits = new Set<number>();
  for (let bit = 0; bit < SEV_CERT_SIGNED_END * 8; bit++) bits.add(bit);
  for (let bit = SEV_CERT_SIGNED_END * 8; bit < 0x61c * 8; bit++) bits.add(bit);
  let rejected = 0;
  let failedSig = 0;
  for (const bit of bits) {
    const flipped = flipBit(pdhBytes, bit);
    const byte = bit >> 3;
    let cert;
    try {
      cert = parseSevCert(flipped, "PDH");
    } catch (error) {
      assertCleanError(error, `bit ${bit}`, { exit: 65 });
      // Only the version, usage, algorithm and curve words and SIG1_ALGO can make it unparsable.
      assert.ok(
        byte < 4 || (byte >= 8 && byte < 0x14) || (byte >= 0x418 && byte < 0x41c),
        `bit ${bit} (byte 0x${byte.toString(16)}) was refused by the parser`,
      );
      rejected++;
      continue;
    }
    const outcome = await checkSevSignature(cert, { slot: 1, signer: pek });
    assert.equal(outcome.ok, false, `bit ${bit} (byte 0x${byte.toString(16)}) still verifies`);
    failedSig++;
  }
  assert.ok(failedSig > 0.9 * bits.size, `${failedSig} of ${bits.size} failed the signature`);
  // Through the whole chain, a sample of them fails exactly at pdh-signature (or the format).
  for (const bit of [0x30, 0x14 * 8 + 5, 0x200 * 8, 0x413 * 8 + 7, 0x41c * 8, 0x4a0 * 8 + 3]) {
    const r = await verifySevChain({ ...naples(), pdh: flipBit(pdhBytes, bit) });
    assert.equal(r.ok, false, `bit ${bit}`);
    assert.ok(failed(r).includes("pdh-signature"), `bit ${bit}: ${failed(r)}`);
    assert.deepEqual(
      failed(r).filter((id) => id !== "pdh-signature" && id !== "format"),
      [],
      `bit ${bit}`,
    );
  }
});

/** Flips `count` seeded bits of `bytes`' signed region `[0, end)`; each chain must fail `ids`. */
async function flipAndExpect(
  kind: keyof SevChainCerts,
  bytes: Uint8Array,
  end: number,
  ids: string[],
  seed: number,
  mayRefuse: (byte: number) => boolean,
) {
  const prng = new Prng(seed);
  const base = {
    ...naples(),
    ask: read("naples_ask.cert", ROOTS),
    ark: read("naples_ark.cert", ROOTS),
  };
  let checked = 0;
  for (let i = 0; i < 40; i++) {
    const bit = prng.int(end * 8);
    const byte = bit >> 3;
    let r: VerificationResult;
    try {
      r = await verifySevChain({ ...base, [kind]: flipBit(bytes, bit) });
    } catch (error) {
      assertCleanError(error, `${kind} bit ${bit}`, { exit: 65 });
      assert.ok(mayRefuse(byte), `${kind} bit ${bit} (byte 0x${byte.toString(16)}) was refused`);
      continue;
    }
    assert.equal(r.ok, false, `${kind} bit ${bit} still verifies`);
    for (const id of ids) {
      assert.ok(failed(r).includes(id), `${kind} bit ${bit}: failed ${failed(r)}, not ${id}`);
    }
    checked++;
  }
  assert.ok(checked >= 30, `${kind}: only ${checked} flips reached the checks`);
}

const sevHeader = (byte: number) => byte < 4 || (byte >= 8 && byte < 0x14);

Deno.test("sev: a bit flip in each other certificate's signed region fails its check", async () => {
  await flipAndExpect(
    "pek",
    read("pek.cert"),
    SEV_CERT_SIGNED_END,
    [
      "pek-oca-signature",
      "pek-cek-signature",
    ],
    11,
    sevHeader,
  );
  await flipAndExpect(
    "oca",
    read("oca.cert"),
    SEV_CERT_SIGNED_END,
    ["oca-self-signature"],
    12,
    sevHeader,
  );
  await flipAndExpect(
    "cek",
    read("cek.cert"),
    SEV_CERT_SIGNED_END,
    ["cek-signature"],
    13,
    sevHeader,
  );
  const caHeader = (byte: number) => byte < 4 || (byte >= 0x24 && byte < AMD_CA_HEADER_SIZE);
  const ask = read("naples_ask.cert", ROOTS);
  await flipAndExpect("ask", ask, AMD_CA_HEADER_SIZE + 512, ["ask-signature"], 14, caHeader);
  const ark = read("naples_ark.cert", ROOTS);
  await flipAndExpect(
    "ark",
    ark,
    AMD_CA_HEADER_SIZE + 512,
    ["ark-self-signature", "root"],
    15,
    caHeader,
  );
  // And the signatures themselves: a flipped bit in the ASK's or ARK's signature.
  for (
    const [kind, bytes, id] of [["ask", ask, "ask-signature"], [
      "ark",
      ark,
      "ark-self-signature",
    ]] as const
  ) {
    const r = await verifySevChain({ ...naples(), [kind]: flipBit(bytes, (832 - 100) * 8 + 3) });
    assert.ok(failed(r).includes(id), `${kind}: ${failed(r)}`);
  }
});

Deno.test("sev: a supplied ARK is compared with the pinned one, never trusted by itself", async () => {
  // Rome's real, self-signed ARK with the Naples chain: the ASK's signature fails and the ARK is not Naples'.
  const r = await verifySevChain({ ...naples(), ark: read("rome_ark.cert", ROOTS) }, {
    generation: "naples",
  });
  assert.ok(failed(r).includes("root"), String(failed(r)));
  assert.ok(failed(r).includes("ask-signature"), String(failed(r)));
  // Pinning it through trustedRoots makes the root check pass (ask-signature still fails).
  const pinned = await verifySevChain({ ...naples(), ark: read("rome_ark.cert", ROOTS) }, {
    generation: "naples",
    trustedRoots: [read("rome_ark.cert", ROOTS)],
  });
  assert.deepEqual(failed(pinned), ["ask-signature"]);
});

Deno.test("sev: malformed input is MalformedEvidenceError (exit 65), never a stack trace", async () => {
  const prng = new Prng(0x5e2);
  const good = naples();
  const cases: [string, () => unknown][] = [];
  for (const kind of ["pdh", "pek", "oca", "cek"] as const) {
    for (const len of [0, 1, 0x414, SEV_CERT_SIZE - 1, SEV_CERT_SIZE + 1]) {
      const bytes = new Uint8Array(len);
      bytes.set(good[kind].subarray(0, Math.min(len, SEV_CERT_SIZE)));
      cases.push([`${kind} of ${len} bytes`, () => verifySevChain({ ...good, [kind]: bytes })]);
    }
    cases.push([
      `garbage ${kind}`,
      () => verifySevChain({ ...good, [kind]: prng.bytes(SEV_CERT_SIZE) }),
    ]);
  }
  for (const len of [0, 63, 64, 576, 831, 833, 1599, 1601, 5000]) {
    const bytes = new Uint8Array(len);
    const ark = read("naples_ark.cert", ROOTS);
    bytes.set(ark.subarray(0, Math.min(len, ark.length)));
    cases.push([`ARK of ${len} bytes`, () => verifySevChain({ ...good, ark: bytes })]);
    cases.push([`ASK of ${len} bytes`, () => verifySevChain({ ...good, ask: bytes })]);
  }
  cases.push(["garbage ARK", () => verifySevChain({ ...good, ark: prng.bytes(832) })]);
  const badCurve = good.pdh.slice();
  badCurve[0x10] = 7;
  cases.push(["curve 7", () => verifySevChain({ ...good, pdh: badCurve })]);
  const badVersion = good.cek.slice();
  badVersion[0] = 2;
  cases.push(["version 2", () => verifySevChain({ ...good, cek: badVersion })]);
  cases.push(["no PEK", () => sevChainFromBlobs([good.pdh, good.oca, good.cek])]);
  cases.push([
    "two PDHs",
    () => sevChainFromBlobs([good.pdh, flipBit(good.pdh, 0x100 * 8), good.pek]),
  ]);
  cases.push(["blob of 100 bytes", () => sevChainFromBlobs([prng.bytes(100)])]);
  cases.push([
    "garbage evidence",
    () => verifyEvidence(prng.bytes(SEV_CERT_SIZE), { at: new Date(), format: "sev" }),
  ]);
  cases.push(["PDH alone", () => verifyEvidence(good.pdh, { at: new Date() })]);
  for (const [label, fn] of cases) {
    await assert.rejects(async () => await fn(), (e: unknown) => {
      const err = assertCleanError(e, label, { exit: 65 });
      assert.ok(err instanceof MalformedEvidenceError, label);
      assert.match(err.message, /^[A-Z]/, label);
      return true;
    }, label);
  }
});

Deno.test("sev: verifyEvidence takes PDH‖PEK‖OCA‖CEK, a PDH with certs, and a CBOR bundle", async () => {
  const c = naples();
  const all = new Uint8Array(4 * SEV_CERT_SIZE);
  [c.pdh, c.pek, c.oca, c.cek].forEach((b, i) => all.set(b, i * SEV_CERT_SIZE));
  const at = new Date("2026-01-01");
  const raw = await verifyEvidence(all, { at });
  assert.equal(raw.format, "sev");
  assert.equal(raw.ok, true, JSON.stringify(raw.checks));
  const split = await verifyEvidence(c.pdh, { at, format: "sev", certs: [c.cek, c.oca, c.pek] });
  assert.equal(split.ok, true);
  const bundle = encodeEvidenceBundle({
    format: "sev",
    report: c.pdh,
    certs: [c.pek, c.oca, c.cek],
  });
  const viaBundle = await verifyEvidence(bundle, { at });
  assert.equal(viaBundle.format, "sev");
  assert.equal(viaBundle.ok, true);
  const wrong = await verifyEvidence(bundle, {
    at,
    certs: [read("rome_ask.cert", ROOTS)],
  });
  assert.deepEqual(failed(wrong), ["cek-signature"]);
  await assert.rejects(() => verifyEvidence(all, { at, format: "snp" }), /looks like sev/);
});

async function enarx(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("sev CLI: the Naples directory passes (exit 0); with the Rome ASK it fails (exit 1)", async () => {
  const dir = NAPLES.pathname;
  const pass = await enarx(["attest", "verify", dir, "--format", "sev"]);
  assert.equal(pass.code, 0, pass.stderr);
  assert.match(pass.stdout, /^PASS: sev evidence/);
  assert.match(pass.stdout, /ok {3}cek-signature/);
  const json = await enarx(["attest", "verify", dir, "--format", "sev", "--json"]);
  assert.equal(json.code, 0, json.stderr);
  const doc = JSON.parse(json.stdout);
  assert.equal(doc.format, "sev");
  assert.equal(doc.claims.cek.apiVersion, "0.14");
  const fail = await enarx([
    "attest",
    "verify",
    dir,
    "--format",
    "sev",
    "--certs",
    new URL("rome_ask.cert", ROOTS).pathname,
  ]);
  assert.equal(fail.code, 1, fail.stderr);
  assert.match(fail.stdout, /^FAIL: sev evidence/);
  assert.match(fail.stdout, /FAIL cek-signature/);
});

Deno.test("sev CLI: the truncated ARK is exit 65, a directory without the certificates exit 66", async () => {
  const bad = await enarx([
    "attest",
    "verify",
    NAPLES.pathname,
    "--format",
    "sev",
    "--certs",
    new URL("ark.cert.bad", NAPLES).pathname,
  ]);
  assert.equal(bad.code, 65, bad.stderr);
  assert.match(bad.stderr, /^enarx: .*truncated/);
  assert.doesNotMatch(bad.stderr, /\bat .*\.ts:\d+/);
  const empty = Deno.makeTempDirSync({ prefix: "enarx-sev-" });
  try {
    const missing = await enarx(["attest", "verify", empty, "--format", "sev"]);
    assert.equal(missing.code, 66, missing.stderr);
    assert.match(missing.stderr, /pdh\.cert/);
    const usage = await enarx(["attest", "verify", empty, "--format", "snp"]);
    assert.equal(usage.code, 64, usage.stderr);
  } finally {
    Deno.removeSync(empty, { recursive: true });
  }
});

Deno.test("sev: a policy's platforms decide whether sev evidence is accepted", async () => {
  const c = naples();
  const all = new Uint8Array(4 * SEV_CERT_SIZE);
  [c.pdh, c.pek, c.oca, c.cek].forEach((b, i) => all.set(b, i * SEV_CERT_SIZE));
  const at = new Date("2026-01-01");
  const refused = await verifyEvidence(all, {
    at,
    policy: parsePolicy('platforms = ["snp"]', { source: "test" }),
  });
  assert.deepEqual(failed(refused), ["platform"]);
  const accepted = await verifyEvidence(all, {
    at,
    policy: parsePolicy('platforms = ["sev"]', { source: "test" }),
  });
  assert.equal(accepted.ok, true);
  assert.ok(accepted.checks.some((x) => x.id === "platform" && x.ok));
});
