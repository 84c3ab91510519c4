import assert from "node:assert/strict";
import { generateP256, p256KeyPairFromScalar } from "../../runtime/protocol/p256_keys.ts";

const hex = (s: string) => new Uint8Array(s.match(/../g)!.map((b) => parseInt(b, 16)));
const toHex = (b: ArrayBuffer | Uint8Array) =>
  [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, "0")).join("");

Deno.test("p256 keys: a published scalar gives its published public point (RFC 9180 A.3.1 skRm, pkRm)", async () => {
  const pair = await p256KeyPairFromScalar(
    hex("f3ce7fdae57e1a310d87f1ebbde6f328be0a99cdbcadf4d6589cf29de4b8ffd2"),
    "ECDH",
  );
  assert.equal(
    toHex(await crypto.subtle.exportKey("raw", pair.publicKey)),
    "04fe8c19ce0905191ebc298a9245792531f26f0cece2460639e8bc39cb7f706a826a779b4cf969b8a0e539c7f62fb3d30ad6aa8f80e30f1d128aafd68a2ce72ea0",
  );
  assert.equal(pair.privateKey.extractable, false);
  await assert.rejects(crypto.subtle.exportKey("pkcs8", pair.privateKey));
});

Deno.test("p256 keys: fresh ECDH pairs agree, and each pair is new", async () => {
  const a = await generateP256("ECDH");
  const b = await generateP256("ECDH");
  const ab = await crypto.subtle.deriveBits(
    { name: "ECDH", public: b.publicKey },
    a.privateKey,
    256,
  );
  const ba = await crypto.subtle.deriveBits(
    { name: "ECDH", public: a.publicKey },
    b.privateKey,
    256,
  );
  assert.equal(toHex(ab), toHex(ba));
  assert.notEqual(
    toHex(await crypto.subtle.exportKey("raw", a.publicKey)),
    toHex(await crypto.subtle.exportKey("raw", b.publicKey)),
  );
});

Deno.test("p256 keys: an ECDSA pair signs what its public key verifies; extractable when asked", async () => {
  const pair = await generateP256("ECDSA", true);
  const data = new TextEncoder().encode("signed");
  const alg = { name: "ECDSA", hash: "SHA-256" };
  const sig = await crypto.subtle.sign(alg, pair.privateKey, data);
  assert.ok(await crypto.subtle.verify(alg, pair.publicKey, sig, data));
  const other = await generateP256("ECDSA");
  assert.ok(!(await crypto.subtle.verify(alg, other.publicKey, sig, data)));
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  assert.ok(pkcs8.length > 32);
});

Deno.test("p256 keys: a scalar of 0, n or above, or of the wrong length is refused", async () => {
  const n = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
  const nMinus1 = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632550";
  for (const bad of ["00".repeat(32), n, "ff".repeat(32), "01".repeat(31)]) {
    await assert.rejects(p256KeyPairFromScalar(hex(bad), "ECDH"), RangeError);
  }
  await p256KeyPairFromScalar(hex(nMinus1), "ECDH"); // the largest valid scalar
});
