/**
 * The keep's TLS identity (runtime/wasm/keep_identity.ts) and the names of
 * its certificate (runtime/wasm/certificate_names.ts).
 */
import assert from "node:assert/strict";
import * as x509 from "../../runtime/x509.ts";
import { EnarxError, UsageError } from "../../runtime/errors.ts";
import { parseServiceName, serviceNames } from "../../runtime/wasm/certificate_names.ts";
import { type CertificateRequest, createKeepIdentity } from "../../runtime/wasm/keep_identity.ts";

const P256 = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN = { name: "ECDSA", hash: "SHA-256" } as const;

function sans(pem: string): string[] {
  const cert = new x509.X509Certificate(pem);
  const ext = cert.getExtension(x509.SubjectAlternativeNameExtension);
  return ext?.names.toJSON().map((n) => `${n.type}:${n.value}`) ?? [];
}

Deno.test("keep identity: a self-signed certificate for the default names, its key and fingerprint", async () => {
  const id = await createKeepIdentity();
  assert.deepEqual(sans(id.certPem), ["dns:localhost", "ip:127.0.0.1"]);
  const der = x509.pemBlocks(id.certPem)[0];
  assert.equal(id.fingerprint, await x509.sha256Fingerprint(der));
  const cert = new x509.X509Certificate(der);
  assert.ok(await cert.verify({ signatureOnly: true }, crypto), "not self-signed");
  // The PEM key is the certificate's: what it signs, the certificate's key verifies.
  const key = await crypto.subtle.importKey(
    "pkcs8",
    x509.pemBlocks(id.keyPem, "PRIVATE KEY")[0],
    P256,
    false,
    ["sign"],
  );
  const data = new TextEncoder().encode("keep");
  const signature = await crypto.subtle.sign(SIGN, key, data);
  const publicKey = await cert.publicKey.export(P256, ["verify"], crypto);
  assert.ok(await crypto.subtle.verify(SIGN, publicKey, signature, data));
  // Each identity is new.
  assert.notEqual((await createKeepIdentity()).fingerprint, id.fingerprint);
});

Deno.test("keep identity: an issuer gets the key and a CSR for the names, and its chain is used", async () => {
  const caKeys = await crypto.subtle.generateKey(P256, true, ["sign", "verify"]);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "02",
    name: "CN=deployer CA",
    signingAlgorithm: SIGN,
    keys: caKeys,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true)],
  }, crypto);
  let asked: CertificateRequest | undefined;
  const id = await createKeepIdentity({
    names: ["svc.example.test", "10.1.2.3"],
    issuer: async (request) => {
      asked = request;
      const csr = new x509.Pkcs10CertificateRequest(request.csrPem);
      assert.ok(await csr.verify(), "the CSR's signature does not verify");
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: "01",
        subject: csr.subject,
        issuer: "CN=deployer CA",
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 3_600_000),
        signingAlgorithm: SIGN,
        publicKey: csr.publicKey,
        signingKey: caKeys.privateKey,
        extensions: csr.extensions,
      }, crypto);
      return cert.toString("pem") + ca.toString("pem");
    },
  });
  assert.ok(asked);
  assert.deepEqual(asked.names, [
    { type: "dns", value: "svc.example.test" },
    { type: "ip", value: "10.1.2.3" },
  ]);
  const csr = new x509.Pkcs10CertificateRequest(asked.csrPem);
  assert.equal(new Uint8Array(csr.publicKey.rawData).toHex(), asked.publicKey.toHex());
  const chain = x509.pemBlocks(id.certPem);
  assert.equal(chain.length, 2);
  const leaf = new x509.X509Certificate(chain[0]);
  assert.equal(leaf.issuer, "CN=deployer CA");
  assert.ok(await leaf.verify({ publicKey: ca.publicKey, signatureOnly: true }, crypto));
  assert.deepEqual(sans(id.certPem), ["dns:svc.example.test", "ip:10.1.2.3"]);
  assert.equal(id.fingerprint, await x509.sha256Fingerprint(chain[0]));
});

Deno.test("keep identity: a chain for another key is refused (76)", async () => {
  const other = await createKeepIdentity();
  await assert.rejects(
    createKeepIdentity({ issuer: () => Promise.resolve(other.certPem) }),
    (e: unknown) =>
      e instanceof EnarxError && e.exitStatus === 76 &&
      /not start with a certificate for the keep's key/
        .test(e.message),
  );
});

Deno.test("certificate names: DNS names and addresses; bad ones are usage errors that name them", () => {
  assert.deepEqual(parseServiceName("Api.Example.COM."), { type: "dns", value: "api.example.com" });
  assert.deepEqual(parseServiceName("*.example.com"), { type: "dns", value: "*.example.com" });
  assert.deepEqual(parseServiceName("[::1]"), { type: "ip", value: "::1" });
  assert.deepEqual(parseServiceName("192.0.2.7"), { type: "ip", value: "192.0.2.7" });
  assert.deepEqual(serviceNames(undefined), [
    { type: "dns", value: "localhost" },
    { type: "ip", value: "127.0.0.1" },
  ]);
  assert.deepEqual(serviceNames(["a.test", "A.test"]), [{ type: "dns", value: "a.test" }]);
  for (const bad of ["", "bad_name", "a..b", "-a.test", "*", "*.com", "x".repeat(64) + ".test"]) {
    assert.throws(
      () => parseServiceName(bad),
      (e: unknown) =>
        e instanceof UsageError && e.exitStatus === 64 &&
        e.message.startsWith(`Invalid --service-name "${bad}": `),
      bad,
    );
  }
});
