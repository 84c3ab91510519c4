import assert from "node:assert/strict";
import {
  SEALING_PUBLIC_KEY_LENGTH,
  SealingKeyPair,
  sealToKeep,
} from "../../runtime/protocol/sealing.ts";
import { computeReportData, freshNonce } from "../../runtime/protocol/report_data.ts";
import { EnarxError } from "../../runtime/errors.ts";

const text = (s: string) => new TextEncoder().encode(s);

Deno.test("sealing: a keep opens what was sealed to its key, keep id and nonce", async () => {
  const keep = await SealingKeyPair.generate();
  assert.equal(keep.publicKey.length, SEALING_PUBLIC_KEY_LENGTH);
  assert.equal(keep.publicKey[0], 0x04);
  const nonce = freshNonce();
  const sealed = await sealToKeep(keep.publicKey, text("secret tls key"), { keepId: "k1", nonce });
  assert.equal(sealed.enc.length, 65);
  assert.ok(!new TextDecoder().decode(sealed.ct).includes("secret"));
  const opened = await keep.open(sealed, { keepId: "k1", nonce });
  assert.equal(new TextDecoder().decode(opened), "secret tls key");
});

Deno.test("sealing: another keep id, nonce, key or a flipped bit does not open", async () => {
  const keep = await SealingKeyPair.generate();
  const other = await SealingKeyPair.generate();
  const nonce = freshNonce();
  const sealed = await sealToKeep(keep.publicKey, text("x"), { keepId: "k1", nonce });
  const fails = async (p: Promise<unknown>) =>
    await assert.rejects(p, (e: unknown) => e instanceof EnarxError && e.code === "unseal-failed");
  await fails(keep.open(sealed, { keepId: "k2", nonce }));
  await fails(keep.open(sealed, { keepId: "k1", nonce: freshNonce() }));
  await fails(other.open(sealed, { keepId: "k1", nonce }));
  const ct = sealed.ct.slice();
  ct[0] ^= 1;
  await fails(keep.open({ enc: sealed.enc, ct }, { keepId: "k1", nonce }));
});

Deno.test("sealing: a bad public key is a protocol error, not a crash", async () => {
  const nonce = freshNonce();
  for (const bad of [new Uint8Array(0), new Uint8Array(65), new Uint8Array(65).fill(4)]) {
    await assert.rejects(
      sealToKeep(bad, text("x"), { keepId: "k", nonce }),
      (e: unknown) => e instanceof EnarxError && e.code === "sealing-key-invalid",
    );
  }
});

Deno.test("report data: SHA-512 over label, nonce and key; every input changes it", async () => {
  const nonce = new Uint8Array(32).fill(1);
  const key = new Uint8Array(65).fill(2);
  const rd = await computeReportData(nonce, key);
  assert.equal(rd.length, 64);
  const label = text("enarx/v1 report-data\0");
  const input = new Uint8Array([...label, ...nonce, ...key]);
  assert.deepEqual(rd, new Uint8Array(await crypto.subtle.digest("SHA-512", input)));
  assert.notDeepEqual(await computeReportData(new Uint8Array(32).fill(3), key), rd);
  assert.notDeepEqual(await computeReportData(nonce, new Uint8Array(65).fill(3)), rd);
  await assert.rejects(
    computeReportData(new Uint8Array(31), key),
    (e: unknown) => e instanceof EnarxError && e.code === "nonce-invalid",
  );
});
