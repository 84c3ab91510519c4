import assert from "node:assert/strict";
import {
  cachedParse,
  cachedSignature,
  clearCertificateCache,
} from "../../runtime/attestation/_cert_cache.ts";
import { certificateFromDer, findIssuer, signedBy } from "../../runtime/attestation/_x509_chain.ts";
import { pemBlocks } from "../../runtime/x509.ts";
import { AMD_SNP_ROOTS } from "../../runtime/attestation/amd/amd_roots.ts";

Deno.test("certificate cache: one parse per kind and bytes; a parse that throws is not kept", () => {
  clearCertificateCache();
  let calls = 0;
  const bytes = Uint8Array.of(1, 2, 3);
  const a = cachedParse("test", bytes, () => ({ n: ++calls }));
  const b = cachedParse("test", Uint8Array.of(1, 2, 3), () => ({ n: ++calls }));
  assert.equal(a, b);
  assert.equal(calls, 1);
  assert.notEqual(cachedParse("other", bytes, () => ({ n: ++calls })), a);
  assert.throws(() =>
    cachedParse("test", Uint8Array.of(9), () => {
      throw new Error("bad");
    })
  );
  assert.equal(cachedParse("test", Uint8Array.of(9), () => ({ n: 7 })).n, 7);
  clearCertificateCache();
  assert.notEqual(cachedParse("test", bytes, () => ({ n: ++calls })), a);
});

Deno.test("certificate cache: a signature is checked once per pair and scheme; a throw is false", async () => {
  clearCertificateCache();
  const subject = {};
  const issuer = {};
  let calls = 0;
  const verify = () => Promise.resolve(++calls > 0);
  assert.equal(await cachedSignature("s", { subject, issuer }, verify), true);
  assert.equal(await cachedSignature("s", { subject, issuer }, verify), true);
  assert.equal(calls, 1);
  await cachedSignature("t", { subject, issuer }, verify);
  assert.equal(calls, 2);
  const failing = () => Promise.reject(new Error("bad key"));
  assert.equal(await cachedSignature("s", { subject: {}, issuer }, failing), false);
});

Deno.test("certificate cache: AMD's RSA-PSS chain checks through the shared builder's x509 scheme", async () => {
  const milan = AMD_SNP_ROOTS.find((r) => r.product === "Milan")!;
  const ark = certificateFromDer(pemBlocks(milan.arkPem)[0], "ARK");
  const ask = certificateFromDer(pemBlocks(milan.askPem)[0], "ASK");
  assert.equal(certificateFromDer(pemBlocks(milan.arkPem)[0], "ARK"), ark);
  assert.equal(await signedBy(ask, ark, "x509"), true);
  assert.equal(await signedBy(ark, ask, "x509"), false);
  // Intel's and AWS's scheme takes ECDSA only.
  assert.equal(await signedBy(ask, ark, "ecdsa-strict"), false);
});

Deno.test("certificate chains: findIssuer, the one issuer search, wants the name and the signature", async () => {
  const [milan, genoa] = ["Milan", "Genoa"].map((p) => AMD_SNP_ROOTS.find((r) => r.product === p)!);
  const parse = (pem: string) => certificateFromDer(pemBlocks(pem)[0], "test");
  const [arkM, askM, arkG] = [parse(milan.arkPem), parse(milan.askPem), parse(genoa.arkPem)];
  const same = { certificate: (c: typeof arkM) => c, scheme: "x509" as const };
  // Found among unordered candidates, whatever comes first.
  assert.equal(await findIssuer(askM, [arkG, askM, arkM], same), arkM);
  // Genoa's ARK neither has the name nor made the signature; the ASK is not its own issuer.
  assert.equal(await findIssuer(askM, [arkG, askM], same), undefined);
  // A root is its own issuer (self-signed), checked by signature, not by name alone.
  assert.equal(await findIssuer(arkM, [arkM], same), arkM);
  // The right name is not enough under a scheme the key cannot make.
  assert.equal(await findIssuer(askM, [arkM], { ...same, scheme: "ecdsa-strict" }), undefined);
});
