import assert from "node:assert/strict";
import { Aes128Gcm, CipherSuite, DhkemP256HkdfSha256, HkdfSha256 } from "@hpke/core";
import {
  generateP256KeyPair,
  hpkeOpen,
  hpkeSeal,
  importP256PublicKey,
  serializeP256PublicKey,
} from "../../runtime/protocol/hpke.ts";

// RFC 9180, Appendix A.3.1: DHKEM(P-256, HKDF-SHA256), HKDF-SHA256,
// AES-128-GCM, mode_base, the encryption of sequence number 0.
const A31 = {
  info: "4f6465206f6e2061204772656369616e2055726e",
  skEm: "4995788ef4b9d6132b249ce59a77281493eb39af373d236a1fe415cb0c2d7beb",
  pkEm:
    "04a92719c6195d5085104f469a8b9814d5838ff72b60501e2c4466e5e67b325ac98536d7b61a1af4b78e5b7f951c0900be863c403ce65c9bfcb9382657222d18c4",
  skRm: "f3ce7fdae57e1a310d87f1ebbde6f328be0a99cdbcadf4d6589cf29de4b8ffd2",
  pkRm:
    "04fe8c19ce0905191ebc298a9245792531f26f0cece2460639e8bc39cb7f706a826a779b4cf969b8a0e539c7f62fb3d30ad6aa8f80e30f1d128aafd68a2ce72ea0",
  aad: "436f756e742d30",
  pt: "4265617574792069732074727574682c20747275746820626561757479",
  ct: "5ad590bb8baa577f8619db35a36311226a896e7342a6d836d8b7bcd2f20b6c7f9076ac232e3ab2523f39513434",
};

const hex = (s: string) => new Uint8Array(s.match(/../g)!.map((b) => parseInt(b, 16)));
const toHex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
const b64url = (b: Uint8Array) =>
  btoa(String.fromCharCode(...b)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");

/** A WebCrypto ECDH key pair from the RFC's serialized scalar and point. */
async function vectorPair(sk: string, pk: string): Promise<CryptoKeyPair> {
  const point = hex(pk);
  const jwk = {
    kty: "EC",
    crv: "P-256",
    x: b64url(point.subarray(1, 33)),
    y: b64url(point.subarray(33)),
  };
  const privateKey = await crypto.subtle.importKey(
    "jwk",
    { ...jwk, d: b64url(hex(sk)) },
    { name: "ECDH", namedCurve: "P-256" },
    false,
    ["deriveBits"],
  );
  return { privateKey, publicKey: await importP256PublicKey(point) };
}

Deno.test("hpke: sealing with the RFC 9180 A.3.1 keys gives its enc and ciphertext", async () => {
  const ephemeral = await vectorPair(A31.skEm, A31.pkEm);
  const recipient = await importP256PublicKey(hex(A31.pkRm));
  const sealed = await hpkeSeal(recipient, hex(A31.pkRm), hex(A31.pt), {
    info: hex(A31.info),
    aad: hex(A31.aad),
  }, ephemeral);
  assert.equal(toHex(sealed.enc), A31.pkEm);
  assert.equal(toHex(sealed.ct), A31.ct);
});

Deno.test("hpke: opening the RFC 9180 A.3.1 ciphertext gives its plaintext; any change fails", async () => {
  const recipient = await vectorPair(A31.skRm, A31.pkRm);
  const params = { info: hex(A31.info), aad: hex(A31.aad) };
  const pt = await hpkeOpen(recipient, hex(A31.pkRm), hex(A31.pkEm), hex(A31.ct), params);
  assert.equal(toHex(pt), A31.pt);
  const ct = hex(A31.ct);
  ct[ct.length - 1] ^= 1;
  await assert.rejects(hpkeOpen(recipient, hex(A31.pkRm), hex(A31.pkEm), ct, params));
  await assert.rejects(
    hpkeOpen(recipient, hex(A31.pkRm), hex(A31.pkEm), hex(A31.ct), { ...params, aad: hex("00") }),
  );
  await assert.rejects(
    hpkeOpen(recipient, hex(A31.pkRm), hex(A31.pkEm), hex(A31.ct), { ...params, info: hex("00") }),
  );
  // An enc that is not a point on the curve.
  const enc = hex(A31.pkEm);
  enc[64] ^= 1;
  await assert.rejects(hpkeOpen(recipient, hex(A31.pkRm), enc, hex(A31.ct), params));
});

Deno.test("hpke: what this module seals @hpke/core opens, and the other way round", async () => {
  const suite = new CipherSuite({
    kem: new DhkemP256HkdfSha256(),
    kdf: new HkdfSha256(),
    aead: new Aes128Gcm(),
  });
  const params = { info: new TextEncoder().encode("info"), aad: new Uint8Array([1, 2, 3]) };
  for (let i = 0; i < 8; i++) {
    const pt = crypto.getRandomValues(new Uint8Array(i * 37));
    const recipient = await generateP256KeyPair();
    const raw = await serializeP256PublicKey(recipient.publicKey);
    const ours = await hpkeSeal(recipient.publicKey, raw, pt, params);
    const opened = await suite.open(
      { recipientKey: recipient, enc: ours.enc, info: params.info },
      ours.ct,
      params.aad,
    );
    assert.deepEqual(new Uint8Array(opened), pt);
    const theirs = await suite.seal(
      { recipientPublicKey: recipient.publicKey, info: params.info },
      pt,
      params.aad,
    );
    const back = await hpkeOpen(
      recipient,
      raw,
      new Uint8Array(theirs.enc),
      new Uint8Array(theirs.ct),
      params,
    );
    assert.deepEqual(back, pt);
  }
});
