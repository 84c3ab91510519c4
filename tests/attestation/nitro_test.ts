import assert from "node:assert/strict";
import { claimsToJson } from "../../runtime/attestation/claims_json.ts";
import { decode, encode } from "cborg";
import { verifyNitroDocument } from "../../runtime/attestation/aws/nitro.ts";
import {
  coseSign1ToBeSigned,
  parseCoseSign1,
  signCoseSign1,
  verifyCoseSign1,
} from "../../runtime/attestation/aws/cose.ts";
import { EnarxError } from "../../runtime/errors.ts";
import {
  BasicConstraintsExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  X509Certificate,
  X509CertificateGenerator,
} from "../../runtime/x509.ts";
import { attemptVerify, failingChecks as failing, findCheck as check } from "./_verification.ts";

const EVIDENCE = new URL("../testdata/evidence/", import.meta.url);
const DOC = Deno.readFileSync(new URL("nitro/blocky-nitrite/nitro_attestation.cbor", EVIDENCE));
const SELF = Deno.readFileSync(
  new URL("nitro/blocky-nitrite/selfsigned_attestation.cbor", EVIDENCE),
);
const SELF_CERT = Deno.readFileSync(new URL("nitro/blocky-nitrite/selfsigned_cert.der", EVIDENCE));
const TIMESTAMP = 1725719859545;
const AT = new Date(TIMESTAMP);
const NOW = new Date("2026-11-27T00:00:00Z");

Deno.test("nitro: the real document verifies with the facts the evidence README lists", async () => {
  const r = await verifyNitroDocument(DOC, { at: AT });
  assert.deepEqual(failing(r), []);
  assert.equal(r.ok, true);
  assert.equal(r.format, "nitro");
  assert.deepEqual(r.checks.map((c) => c.id), [
    "cose",
    "payload",
    "signature",
    "chain",
    "root",
    "validity",
    "timestamp",
    "debug",
  ]);
  const c = claimsToJson(r.claims);
  assert.equal(DOC[0], 0x84);
  assert.equal(c.coseTagged, false);
  const sign1 = parseCoseSign1(DOC);
  assert.equal(sign1.protectedBytes.toHex(), "a1013822");
  assert.ok(sign1.unprotectedHeader instanceof Map && sign1.unprotectedHeader.size === 0);
  assert.equal(sign1.signature.length, 96);
  assert.equal(c.moduleId, "i-0a22e5c5f24d22174-enc0191cceb4289903f");
  assert.equal(c.digest, "SHA384");
  assert.equal(c.timestamp, TIMESTAMP);
  assert.equal(c.time, "2024-09-07T14:37:39.545Z");
  const pcrs = c.pcrs as Record<string, string>;
  assert.equal(Object.keys(pcrs).length, 16);
  assert.ok(Object.values(pcrs).every((v) => v.length === 96));
  assert.equal(
    pcrs["0"],
    "e72a46ca80a260fb044a125442f0c7e331813bcbaf9724d9f3857758992766f2d65710a27aa94ae3949dd54e7c9fe86a",
  );
  assert.equal(c.measurement, pcrs["0"]);
  assert.ok(pcrs["1"].startsWith("0343b056") && pcrs["1"].endsWith("d8b0c6aa"));
  assert.ok(pcrs["2"].startsWith("d5dcbdea") && pcrs["2"].endsWith("24b9b75c"));
  assert.ok(pcrs["4"].startsWith("45706d7b") && pcrs["4"].endsWith("9dc96b44"));
  for (const k of ["publicKey", "userData", "nonce"]) assert.equal(c[k], "01".repeat(1024), k);
  assert.equal(c.cabundleLength, 4);
  assert.equal(check(r, "chain").detail, "5 certificates");
  const leaf = c.certificate as Record<string, string>;
  assert.equal(leaf.notBefore, "2024-09-07T14:37:36.000Z");
  assert.equal(leaf.notAfter, "2024-09-07T17:37:39.000Z");
  assert.equal(c.debug, false);
});

Deno.test("nitro: checked now, the real document's leaf has expired", async () => {
  const r = await verifyNitroDocument(DOC, { at: NOW });
  assert.deepEqual(failing(r), ["validity"]);
  assert.match(check(r, "validity").detail!, /expired 2024-09-07T17:37:39/);
  // Before the leaf was issued, neither the leaf nor the timestamp is acceptable.
  const early = await verifyNitroDocument(DOC, { at: new Date("2024-09-07T14:00:00Z") });
  assert.deepEqual(failing(early), ["validity", "timestamp"]);
  assert.match(check(early, "timestamp").detail!, /after the verification time/);
});

Deno.test("nitro: a tagged COSE_Sign1 verifies like the untagged one", async () => {
  const tagged = new Uint8Array([0xd2, ...DOC]);
  const r = await verifyNitroDocument(tagged, { at: AT });
  assert.deepEqual(failing(r), []);
  assert.equal(claimsToJson(r.claims).coseTagged, true);
});

Deno.test("nitro: the self-signed document is invalid for the reasons the README lists", async () => {
  const r = await verifyNitroDocument(SELF, { at: AT });
  assert.equal(r.ok, false);
  // Its COSE signature is internally consistent...
  assert.equal(check(r, "signature").ok, true);
  // ...but: unprotected header null, cabundle null, no chain to the AWS root, seconds timestamp.
  assert.deepEqual(failing(r), ["cose", "payload", "chain", "root", "timestamp"]);
  assert.match(check(r, "cose").detail!, /unprotected header is null/);
  assert.match(check(r, "payload").detail!, /cabundle/);
  assert.match(check(r, "root").detail!, /self-signed attester.*not a trusted root/);
  assert.match(check(r, "timestamp").detail!, /1713379906.*milliseconds/);
  assert.equal(claimsToJson(r.claims).timestamp, 1713379906);
  assert.equal(Object.keys(claimsToJson(r.claims).pcrs as object).length, 32);
  assert.equal((claimsToJson(r.claims).pcrs as Record<string, string>)["0"], "30".repeat(48));
  assert.equal(
    (claimsToJson(r.claims).certificate as Record<string, string>).subject,
    "CN=self-signed attester",
  );
  assert.equal(
    (claimsToJson(r.claims).certificate as Record<string, string>).notAfter.slice(0, 4),
    "7499",
  );
  // The embedded leaf is the published self-signed certificate.
  const payload = decode(parseCoseSign1(SELF).payload, { useMaps: true }) as Map<string, unknown>;
  assert.deepEqual(payload.get("certificate"), SELF_CERT);
  // Trusting that certificate as a root does not make the document valid.
  const trusted = await verifyNitroDocument(SELF, { at: AT, trustedRoots: [SELF_CERT] });
  assert.equal(trusted.ok, false);
  assert.ok(failing(trusted).includes("payload"));
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

Deno.test("nitro: flipping bits of the protected header, signature and payload fails", async () => {
  const sign1 = parseCoseSign1(DOC);
  const payloadStart = 10; // 84, 44 a1013822, a0, 59 LLLL
  assert.deepEqual(DOC.subarray(payloadStart, payloadStart + 8), sign1.payload.subarray(0, 8));
  const sigStart = DOC.length - 96;
  const copy = DOC.slice();
  let verified = 0;
  const flip = async (byte: number, bit: number) => {
    copy[byte] ^= 1 << bit;
    const r = await attemptVerify(verifyNitroDocument, copy, { at: AT });
    copy[byte] ^= 1 << bit;
    if (r === "dataError") return;
    verified++;
    assert.equal(r.ok, false, `bit ${bit} of byte ${byte} still verifies`);
    assert.equal(check(r, "signature").ok, false, `byte ${byte}: ${failing(r)}`);
  };
  // Every bit of the protected header and of the signature.
  for (let byte = 2; byte < 6; byte++) for (let bit = 0; bit < 8; bit++) await flip(byte, bit);
  for (let byte = sigStart; byte < DOC.length; byte++) {
    for (let bit = 0; bit < 8; bit++) await flip(byte, bit);
  }
  assert.ok(verified >= 768, `only ${verified} flips got past the parser`);
  // The payload: one bit of every byte up to the certificate (module id, digest,
  // timestamp, PCRs), then a random sample of the certificates and user fields.
  const random = prng(1);
  const certAt = payloadStart + indexOf(sign1.payload, new TextEncoder().encode("certificate"));
  for (let byte = payloadStart; byte < certAt; byte++) {
    await flip(byte, Math.floor(random() * 8));
  }
  for (let n = 0; n < 300; n++) {
    const byte = certAt + Math.floor(random() * (sigStart - 2 - certAt));
    await flip(byte, Math.floor(random() * 8));
  }
});

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  throw new Error("not found");
}

Deno.test("nitro: malformed documents are dataErrors, never other exceptions", async () => {
  for (let n = 0; n < DOC.length; n += 1) {
    assert.equal(
      await attemptVerify(verifyNitroDocument, DOC.subarray(0, n), { at: AT }),
      "dataError",
      `length ${n}`,
    );
  }
  const payload = parseCoseSign1(DOC).payload;
  const cases: [string, Uint8Array, RegExp][] = [
    ["empty", new Uint8Array(0), /empty/],
    ["not COSE", new TextEncoder().encode("hello"), /first byte 0x68/],
    ["array of 3", encode([new Uint8Array(0), new Map(), new Uint8Array(1)]), /COSE_Sign1/],
    ["text payload", encode([new Uint8Array(0), new Map(), "x", new Uint8Array(96)]), /payload/],
    [
      "payload not a map",
      encode([encode(new Map([[1, -35]])), new Map(), encode([1, 2]), new Uint8Array(96)]),
      /not a CBOR map/,
    ],
    [
      "payload not CBOR",
      encode([encode(new Map([[1, -35]])), new Map(), Uint8Array.of(0xff), new Uint8Array(96)]),
      /not valid CBOR/,
    ],
    ["trailing bytes", new Uint8Array([...DOC, 0]), /not valid CBOR/],
    ["huge", new Uint8Array(2 << 20).fill(0x84), /more than/],
    ["garbage", new Uint8Array(4096).fill(0x84), /not valid CBOR|COSE_Sign1/],
    [
      "bad certificate",
      encode([
        encode(new Map([[1, -35]])),
        new Map(),
        encode(new Map<string, unknown>([["certificate", Uint8Array.of(0x30, 0x03, 1, 2, 3)]])),
        new Uint8Array(96),
      ]),
      /Cannot parse the Nitro document certificate/,
    ],
  ];
  for (const [name, bytes, message] of cases) {
    await assert.rejects(
      verifyNitroDocument(bytes, { at: AT }),
      (e: unknown) => e instanceof EnarxError && e.exitStatus === 65 && message.test(e.message),
      name,
    );
  }
  const random = prng(9);
  for (let n = 1; n < 600; n++) {
    const bytes = new Uint8Array(n).map(() => Math.floor(random() * 256));
    bytes[0] = 0x84;
    assert.equal(
      await attemptVerify(verifyNitroDocument, bytes, { at: AT }),
      "dataError",
      `garbage of ${n} bytes`,
    );
  }
  assert.ok(payload.length > 0);
});

// --- documents built here with a test chain ------------------------------------

const EC384 = { name: "ECDSA", namedCurve: "P-384" } as const;
const SIGN384 = { name: "ECDSA", hash: "SHA-384" } as const;

interface TestChain {
  root: X509Certificate;
  intermediate: X509Certificate;
  leaf: X509Certificate;
  leafKey: CryptoKeyPair;
}

async function makeChain(leafNotAfter = new Date("2024-09-07T18:00:00Z")): Promise<TestChain> {
  const gen = () =>
    crypto.subtle.generateKey(EC384, true, ["sign", "verify"]) as Promise<CryptoKeyPair>;
  const [rootKey, midKey, leafKey] = await Promise.all([gen(), gen(), gen()]);
  const ca = [
    new BasicConstraintsExtension(true, undefined, true),
    new KeyUsagesExtension(KeyUsageFlags.keyCertSign, true),
  ];
  const notBefore = new Date("2024-01-01T00:00:00Z");
  const root = await X509CertificateGenerator.createSelfSigned({
    name: "CN=test.nitro-enclaves",
    notBefore,
    notAfter: new Date("2049-01-01T00:00:00Z"),
    keys: rootKey,
    signingAlgorithm: SIGN384,
    extensions: ca,
  });
  const intermediate = await X509CertificateGenerator.create({
    subject: "CN=zonal.test.nitro-enclaves",
    issuer: root.subject,
    notBefore,
    notAfter: new Date("2025-01-01T00:00:00Z"),
    publicKey: midKey.publicKey,
    signingKey: rootKey.privateKey,
    signingAlgorithm: SIGN384,
    extensions: ca,
  });
  const leaf = await X509CertificateGenerator.create({
    subject: "CN=i-0123.enc0123",
    issuer: intermediate.subject,
    notBefore,
    notAfter: leafNotAfter,
    publicKey: leafKey.publicKey,
    signingKey: midKey.privateKey,
    signingAlgorithm: SIGN384,
    extensions: [new KeyUsagesExtension(KeyUsageFlags.digitalSignature, true)],
  });
  return { root, intermediate, leaf, leafKey };
}

const der = (c: X509Certificate) => new Uint8Array(c.rawData);

function payloadOf(chain: TestChain, changes: Record<string, unknown> = {}): Uint8Array {
  const pcrs = new Map<number, Uint8Array>();
  for (let i = 0; i < 16; i++) pcrs.set(i, new Uint8Array(48).fill(i === 0 ? 0xaa : 0));
  const fields = new Map<string, unknown>([
    ["module_id", "i-0123-enc0123"],
    ["digest", "SHA384"],
    ["timestamp", TIMESTAMP],
    ["pcrs", pcrs],
    ["certificate", der(chain.leaf)],
    ["cabundle", [der(chain.root), der(chain.intermediate)]],
    ["public_key", null],
    ["user_data", new Uint8Array(32).fill(0x0d)],
    ["nonce", new Uint8Array(16).fill(0x0e)],
  ]);
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined) fields.delete(k);
    else fields.set(k, v);
  }
  return encode(fields);
}

const chain = await makeChain();
const trusted = { at: AT, trustedRoots: [der(chain.root)] };

Deno.test("nitro: a document signed with a test chain verifies under that root only", async () => {
  const doc = await signCoseSign1(payloadOf(chain), chain.leafKey.privateKey);
  const r = await verifyNitroDocument(doc, trusted);
  assert.deepEqual(failing(r), []);
  assert.equal(claimsToJson(r.claims).measurement, "aa".repeat(48));
  assert.equal(claimsToJson(r.claims).userData, "0d".repeat(32));
  assert.equal(claimsToJson(r.claims).nonce, "0e".repeat(16));
  assert.equal(claimsToJson(r.claims).publicKey, null);
  assert.equal(claimsToJson(r.claims).cabundleLength, 2);
  // Against the AWS root the same document is anchored nowhere.
  const aws = await verifyNitroDocument(doc, { at: AT });
  assert.deepEqual(failing(aws), ["root"]);
  // And a tagged encoding verifies too.
  const tagged = await signCoseSign1(payloadOf(chain), chain.leafKey.privateKey, { tagged: true });
  assert.equal(tagged[0], 0xd2);
  assert.deepEqual(failing(await verifyNitroDocument(tagged, trusted)), []);
});

Deno.test("nitro: each broken part of a built document fails its own check", async () => {
  const other = await makeChain();
  const key = chain.leafKey.privateKey;
  const zeros = new Map<number, Uint8Array>([[0, new Uint8Array(48)], [1, new Uint8Array(48)]]);
  const cases: [string, Promise<Uint8Array>, string[]][] = [
    ["signed by another key", signCoseSign1(payloadOf(chain), other.leafKey.privateKey), [
      "signature",
    ]],
    ["debug PCRs", signCoseSign1(payloadOf(chain, { pcrs: zeros }), key), ["debug"]],
    [
      "timestamp in the future",
      signCoseSign1(payloadOf(chain, { timestamp: TIMESTAMP + 3.6e6 }), key),
      [
        "timestamp",
      ],
    ],
    ["timestamp in seconds", signCoseSign1(payloadOf(chain, { timestamp: 1725719859 }), key), [
      "timestamp",
    ]],
    ["digest SHA256", signCoseSign1(payloadOf(chain, { digest: "SHA256" }), key), ["payload"]],
    ["no module id", signCoseSign1(payloadOf(chain, { module_id: undefined }), key), ["payload"]],
    [
      "32-byte PCR",
      signCoseSign1(
        payloadOf(chain, { pcrs: new Map([[0, new Uint8Array(32).fill(1)]]) }),
        key,
      ),
      ["payload"],
    ],
    [
      "PCR index 40",
      signCoseSign1(
        payloadOf(chain, { pcrs: new Map([[40, new Uint8Array(48).fill(1)]]) }),
        key,
      ),
      ["payload"],
    ],
    [
      "user data too big",
      signCoseSign1(
        payloadOf(chain, { user_data: new Uint8Array(1025) }),
        key,
      ),
      ["payload"],
    ],
    ["ES256 header", signCoseSign1(payloadOf(chain), key, { alg: -7 }), ["cose", "signature"]],
    ["unprotected not a map", signCoseSign1(payloadOf(chain), key, { unprotected: null }), [
      "cose",
    ]],
    [
      "bundle from another chain",
      signCoseSign1(
        payloadOf(chain, { cabundle: [der(chain.root), der(other.intermediate)] }),
        key,
      ),
      ["chain"],
    ],
    [
      "bundle without the root",
      signCoseSign1(
        payloadOf(chain, { cabundle: [der(chain.intermediate)] }),
        key,
      ),
      ["root"],
    ],
    [
      "bundle rooted elsewhere",
      signCoseSign1(
        payloadOf(chain, { cabundle: [der(other.root), der(chain.intermediate)] }),
        key,
      ),
      ["chain", "root"],
    ],
  ];
  for (const [name, doc, expected] of cases) {
    const r = await attemptVerify(verifyNitroDocument, await doc, trusted);
    assert.ok(r !== "dataError", name);
    assert.deepEqual(failing(r), expected, name);
  }
  const debugDoc = await signCoseSign1(payloadOf(chain, { pcrs: zeros }), key);
  const allowed = await verifyNitroDocument(debugDoc, { ...trusted, policy: { allowDebug: true } });
  assert.equal(allowed.ok, true);
  assert.equal(claimsToJson(allowed.claims).debug, true);
});

Deno.test("nitro: an expired leaf fails validity with its date", async () => {
  const short = await makeChain(new Date("2024-09-07T14:40:00Z"));
  const doc = await signCoseSign1(payloadOf(short), short.leafKey.privateKey);
  const r = await verifyNitroDocument(doc, {
    at: new Date("2024-09-07T15:00:00Z"),
    trustedRoots: [der(short.root)],
  });
  assert.deepEqual(failing(r), ["validity"]);
  assert.match(check(r, "validity").detail!, /i-0123.*expired 2024-09-07T14:40:00/);
});

Deno.test("cose: Sig_structure bytes and verification follow RFC 9052", async () => {
  const sign1 = parseCoseSign1(DOC);
  const tbs = coseSign1ToBeSigned(sign1);
  // 84, "Signature1", bstr(a1013822), bstr(''), bstr(payload) with a 2-byte length.
  assert.equal(
    tbs.subarray(0, 19).toHex(),
    "846a5369676e617475726531" + "44a1013822" + "40" + "59",
  );
  assert.equal(tbs.length, 1 + 11 + 5 + 1 + 3 + sign1.payload.length);
  const payload = decode(sign1.payload, { useMaps: true }) as Map<string, unknown>;
  const leaf = await new X509Certificate((payload.get("certificate") as Uint8Array).slice())
    .publicKey
    .export(EC384, ["verify"]);
  assert.equal(await verifyCoseSign1(sign1, leaf), true);
  assert.equal(await verifyCoseSign1(sign1, leaf, { externalAad: Uint8Array.of(1) }), false);
});
