import assert from "node:assert/strict";
import {
  BasicConstraintsExtension,
  pemBlocks,
  readDerElement,
  signedParts,
  verifySignedBy,
  X509Certificate,
  X509Crl,
} from "../../runtime/x509.ts";
import {
  type CertificateFields,
  checkSignedBy,
  readCertificate,
  readCrl,
} from "../../runtime/x509_reader.ts";
import { AMD_SNP_ROOTS } from "../../runtime/attestation/amd/amd_roots.ts";
import { certificateFromDer } from "../../runtime/attestation/_x509_chain.ts";
import { MalformedEvidenceError } from "../../runtime/attestation/result.ts";

const TESTDATA = new URL("../testdata/", import.meta.url);

/** Every file under tests/testdata, with its path relative to it. */
function testdataFiles(dir = TESTDATA, prefix = ""): { path: string; bytes: Uint8Array }[] {
  const out: { path: string; bytes: Uint8Array }[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const url = new URL(entry.name + (entry.isDirectory ? "/" : ""), dir);
    if (entry.isDirectory) out.push(...testdataFiles(url, `${prefix}${entry.name}/`));
    else out.push({ path: prefix + entry.name, bytes: Deno.readFileSync(url) });
  }
  return out;
}

/**
 * The DER certificates and CRLs in `bytes`: PEM blocks anywhere (quotes and
 * collateral embed them), and every `30 82 …` element that @peculiar/x509
 * parses as one (DER files, CBOR bundles, certificate tables).
 */
function embeddedDer(bytes: Uint8Array, label: string): Uint8Array[] {
  const found = new Map<string, Uint8Array>();
  const text = Array.from(bytes, (b) => String.fromCharCode(b)).join("").replaceAll("\\n", "\n");
  for (const der of pemBlocks(text, label)) found.set(der.toHex(), der);
  for (let i = 0; i + 4 < bytes.length; i++) {
    if (bytes[i] !== 0x30 || bytes[i + 1] !== 0x82 || bytes[i + 4] !== 0x30) continue;
    let der: Uint8Array;
    try {
      const e = readDerElement(bytes, i);
      der = bytes.slice(e.start, e.end);
      signedParts(der);
      if (label === "CERTIFICATE") void new X509Certificate(der.slice()).subject;
      else void new X509Crl(der.slice()).issuer;
    } catch {
      continue;
    }
    found.set(der.toHex(), der);
  }
  return [...found.values()];
}

const FILES = testdataFiles();
const CERTIFICATES = new Map<string, Uint8Array>();
for (const f of FILES) {
  for (const der of embeddedDer(f.bytes, "CERTIFICATE")) CERTIFICATES.set(der.toHex(), der);
}
for (const r of AMD_SNP_ROOTS) {
  for (const pem of [r.arkPem, r.askPem, r.asvkPem]) {
    const der = pemBlocks(pem)[0];
    CERTIFICATES.set(der.toHex(), der);
  }
}

function assertSameFields(mine: CertificateFields, theirs: X509Certificate, what: string): void {
  assert.equal(mine.serialNumber, theirs.serialNumber, `${what}: serial`);
  assert.equal(mine.subject, theirs.subject, `${what}: subject`);
  assert.equal(mine.issuer, theirs.issuer, `${what}: issuer`);
  assert.equal(mine.subjectCommonName, theirs.subjectName.getField("CN")[0] ?? null, what);
  assert.equal(mine.notBefore.getTime(), theirs.notBefore.getTime(), `${what}: notBefore`);
  assert.equal(mine.notAfter.getTime(), theirs.notAfter.getTime(), `${what}: notAfter`);
  assert.deepEqual(mine.publicKey.spki, new Uint8Array(theirs.publicKey.rawData), `${what}: spki`);
  const key = theirs.publicKey.algorithm as EcKeyAlgorithm;
  if (key.name === "ECDSA") assert.equal(mine.publicKey.namedCurve, key.namedCurve, what);
  else assert.match(mine.publicKey.name, /^RSA/, `${what}: ${key.name}`);
  assert.equal(mine.publicKey.name === "ECDSA", key.name === "ECDSA", `${what}: key type`);
  const alg = theirs.signatureAlgorithm as Algorithm & { hash?: Algorithm; saltLength?: number };
  assert.equal(mine.signatureAlgorithm.name, alg.name, `${what}: signature algorithm`);
  assert.equal(mine.signatureAlgorithm.hash, alg.hash?.name, `${what}: hash`);
  if (alg.name === "RSA-PSS") assert.equal(mine.signatureAlgorithm.saltLength, alg.saltLength);
  assert.deepEqual(
    mine.extensions.map((e) => [e.oid, e.critical, e.value.toHex()]),
    [...theirs.extensions].map((e) => [e.type, e.critical, new Uint8Array(e.value).toHex()]),
    `${what}: extensions`,
  );
  assert.equal(
    mine.basicConstraintsCa,
    theirs.getExtension(BasicConstraintsExtension)?.ca ?? null,
    `${what}: BasicConstraints`,
  );
  const parts = signedParts(mine.der);
  assert.deepEqual(mine.tbs, parts.tbs, `${what}: signed bytes`);
  assert.deepEqual(mine.signature, parts.signature, `${what}: signature`);
}

Deno.test("x509 reader: every certificate under tests/testdata reads as @peculiar/x509 reads it", () => {
  assert.ok(CERTIFICATES.size >= 20, `only ${CERTIFICATES.size} certificates found`);
  const subjects = new Set<string>();
  for (const der of CERTIFICATES.values()) {
    const theirs = new X509Certificate(der.slice());
    assertSameFields(readCertificate(der), theirs, theirs.subject);
    subjects.add(theirs.subject);
  }
  // AMD's, Intel's and AWS's chains are all among them.
  for (const name of ["CN=ARK-Milan", "CN=Intel SGX PCK Certificate", "aws.nitro-enclaves"]) {
    assert.ok([...subjects].some((s) => s.includes(name)), name);
  }
});

Deno.test("x509 reader: every signature between certificates under tests/testdata agrees with @peculiar/x509", async () => {
  const all = [...CERTIFICATES.values()].map((der) => ({
    mine: readCertificate(der),
    theirs: new X509Certificate(der.slice()),
  }));
  let valid = 0;
  for (const child of all) {
    for (const parent of all.filter((p) => p.mine.subject === child.mine.issuer)) {
      const expected = await verifySignedBy(child.theirs, parent.theirs);
      assert.equal(await checkSignedBy(child.mine, parent.mine), expected, child.mine.subject);
      if (expected) valid++;
    }
  }
  assert.ok(valid >= 10, `only ${valid} valid links`);
});

Deno.test("x509 reader: the CRLs under tests/testdata read as @peculiar/x509 reads them", async () => {
  const crls = FILES.flatMap((f) => embeddedDer(f.bytes, "X509 CRL"));
  assert.ok(crls.length >= 2, `only ${crls.length} CRLs found`);
  const certs = [...CERTIFICATES.values()].map((der) => readCertificate(der));
  for (const der of crls) {
    const mine = readCrl(der);
    const theirs = new X509Crl(der.slice());
    assert.equal(mine.issuer, theirs.issuer);
    assert.equal(mine.thisUpdate.getTime(), theirs.thisUpdate.getTime());
    assert.equal(mine.nextUpdate?.getTime(), theirs.nextUpdate?.getTime());
    assert.deepEqual(
      mine.entries.map((e) => [e.serialNumber, e.revocationDate.getTime()]),
      theirs.entries.map((e) => [e.serialNumber, e.revocationDate.getTime()]),
    );
    const issuer = certs.find((c) => c.subject === mine.issuer);
    assert.ok(issuer !== undefined, mine.issuer);
    assert.equal(await checkSignedBy(mine, issuer), true, `CRL of ${mine.issuer}`);
  }
});

/** Variants of `der` that are not the certificate: framing errors, every truncation, every byte flipped. */
function malformedVariants(der: Uint8Array): [string, Uint8Array][] {
  const out: [string, Uint8Array][] = [
    ["empty", new Uint8Array(0)],
    ["trailing byte", Uint8Array.of(...der, 0)],
    ["wrong outer tag", Uint8Array.of(0x31, ...der.subarray(1))],
    ["length past the end", Uint8Array.of(...der.subarray(0, 2), 0xff, 0xff, ...der.subarray(4))],
    ["indefinite length", Uint8Array.of(0x30, 0x80, ...der.subarray(4))],
  ];
  for (let n = 1; n < der.length; n++) out.push([`truncated to ${n}`, der.subarray(0, n)]);
  for (let i = 0; i < der.length; i++) {
    const bad = der.slice();
    bad[i] ^= 0xff;
    out.push([`byte ${i} flipped`, bad]);
  }
  return out;
}

Deno.test("x509 reader: malformed DER is a MalformedEvidenceError, never a crash or a hang", async () => {
  const all = [...CERTIFICATES.values()].map((der) => readCertificate(der));
  // An AMD VCEK (RSA-PSS signed, AMD extensions), an Intel PCK and a Nitro leaf (ECDSA).
  const samples = [
    all.find((c) => c.subjectCommonName === "SEV-VCEK")!,
    all.find((c) => c.subjectCommonName === "Intel SGX PCK Certificate")!,
    all.find((c) => c.issuer.includes("aws.nitro-enclaves") && c.basicConstraintsCa !== true)!,
  ];
  for (const original of samples) {
    const issuer = all.find((c) => c.subject === original.issuer)!;
    assert.equal(await checkSignedBy(original, issuer), true, original.subject);
    let accepted = 0;
    for (const [what, bad] of malformedVariants(original.der)) {
      let parsed: CertificateFields;
      try {
        parsed = certificateFromDer(bad, "test certificate");
      } catch (error) {
        assert.ok(error instanceof MalformedEvidenceError, `${what}: ${error}`);
        assert.match(error.message, /^Cannot parse the test certificate as an X\.509 certificate/);
        // The reader's own message, not a TypeError from reading past what it checked.
        assert.ok(error.cause instanceof RangeError, `${what}: ${error.cause}`);
        continue;
      }
      // A flipped byte inside a string, a key or the signature may still be
      // a certificate: then it is another one, and its signature fails.
      assert.ok(what.includes("flipped"), `${what} was accepted`);
      assert.notDeepEqual(parsed.der, original.der);
      if (accepted++ % 16 === 0) assert.equal(await checkSignedBy(parsed, issuer), false, what);
    }
  }
});

Deno.test("x509 reader: wrong tags, bad times and bad BasicConstraints are named", () => {
  const ark = pemBlocks(AMD_SNP_ROOTS[0].arkPem)[0];
  const cert = readCertificate(ark);
  // notBefore's UTCTime tag (0x17) turned into an OCTET STRING.
  const at = ark.indexOf(0x17, cert.tbs.byteOffset + 100);
  const badTime = ark.slice();
  badTime[at] = 0x04;
  assert.throws(() => readCertificate(badTime), /Time at \d+ is malformed/);
  const badMonth = ark.slice();
  badMonth[at + 4] = 0x31; // "2013…" month "13"
  badMonth[at + 5] = 0x33;
  assert.throws(() => readCertificate(badMonth), /not a valid date/);
  assert.throws(() => readCrl(ark), /CRL/);
  // The ASK's BasicConstraints `SEQUENCE { BOOLEAN TRUE }` with the BOOLEAN's tag made NULL.
  const ask = pemBlocks(AMD_SNP_ROOTS[0].askPem)[0];
  assert.equal(readCertificate(ask).basicConstraintsCa, true);
  const oid = ask.toHex().indexOf("0603551d13") / 2;
  const bc = ask.toHex().indexOf("0101ff", 2 * (oid + 5) + (ask[oid + 5] === 0x01 ? 6 : 0)) / 2;
  const badBc = ask.slice();
  badBc[bc] = 0x05;
  assert.throws(() => readCertificate(badBc), /BasicConstraints is malformed/);
  assert.throws(() => readCertificate(Uint8Array.of(0x30, 0x00)), /SEQUENCE \{ SEQUENCE/);
});

Deno.test("x509 reader: a deploy client verifying SNP evidence never loads @peculiar/x509", async () => {
  // reflect-metadata defines Reflect.getMetadata, and runtime/x509.ts loads it
  // before @peculiar/x509: the probe sees whether that pair was ever loaded.
  const root = new URL("../../", import.meta.url).href;
  const script = `
    const probe = () => typeof Reflect.getMetadata;
    await import("${root}runtime/client/deploy.ts");
    const { verifySnpReport } = await import("${root}runtime/attestation/amd/snp_verify.ts");
    const { loadSample, SNP_SAMPLES } = await import("${root}tests/attestation/amd/_snp_samples.ts");
    const s = SNP_SAMPLES[0];
    const { report, certs } = loadSample(s);
    const result = await verifySnpReport(report, { certs, at: s.at, trustedRoots: [] });
    const failed = result.checks.filter((c) => !c.ok).map((c) => c.id);
    const before = probe();
    await import("${root}runtime/x509.ts");
    console.log(JSON.stringify({ failed, before, after: probe() }));
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    cwd: new URL(root).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const seen = JSON.parse(new TextDecoder().decode(out.stdout));
  // The chain, signature and extensions were all checked (the policy's
  // measurement and TCB are the sample's business, not this test's).
  for (const id of ["chain", "root", "validity", "tcb-match", "chip-id", "signature"]) {
    assert.ok(!seen.failed.includes(id), `${id} failed: ${seen.failed}`);
  }
  assert.equal(seen.before, "undefined", "@peculiar/x509 was loaded while verifying");
  assert.equal(seen.after, "function", "the probe does not see @peculiar/x509 at all");
});

Deno.test("x509 reader: a malformed CRL given to the SNP verifier is a MalformedEvidenceError", async () => {
  const { verifySnpReport } = await import("../../runtime/attestation/amd/snp_verify.ts");
  const { loadSample, SNP_SAMPLES } = await import("./amd/_snp_samples.ts");
  const s = SNP_SAMPLES[0];
  const { report, certs } = loadSample(s);
  const crl = FILES.flatMap((f) => embeddedDer(f.bytes, "X509 CRL"))[0];
  for (
    const bad of [crl.subarray(0, crl.length - 1), Uint8Array.of(...crl, 0), crl.subarray(0, 9)]
  ) {
    await assert.rejects(
      verifySnpReport(report, { certs, at: s.at, crls: [bad] }),
      (e: unknown) => e instanceof MalformedEvidenceError && /^A CRL \(\d+ bytes\)/.test(e.message),
    );
  }
});
