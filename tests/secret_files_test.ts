/**
 * runtime/fs.ts: every private key the project writes is 0600 in a 0700
 * directory of the running user, written atomically, with no temporary left
 * behind on failure; and the writers that hold keys (keepmgr's TLS key, the
 * snp-sim state) use it.
 */
import assert from "node:assert/strict";
import { ensurePrivateDirectory, writeFileAtomic, writeSecretFile } from "../runtime/fs.ts";
import { EnarxError } from "../runtime/errors.ts";
import { loadOrCreateKeepmgrTls } from "../runtime/keepmgr/tls.ts";
import { SNP_SIM_STATE_FILE, SnpSimulator } from "../runtime/attestation/amd/snp_sim.ts";

async function mode(path: string): Promise<number> {
  return (await Deno.stat(path)).mode! & 0o777;
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test("secret files: 0600 in a 0700 directory, a wider existing directory tightened", async () => {
  const root = await Deno.makeTempDir({ prefix: "enarx-secret-" });
  try {
    await Deno.mkdir(`${root}/wide`);
    await Deno.chmod(`${root}/wide`, 0o755);
    await writeSecretFile(`${root}/wide/key.pem`, "secret");
    assert.equal(await mode(`${root}/wide`), 0o700);
    assert.equal(await mode(`${root}/wide/key.pem`), 0o600);
    assert.equal(await Deno.readTextFile(`${root}/wide/key.pem`), "secret");
    // A directory that does not exist yet is made 0700, parents included.
    await writeSecretFile(`${root}/new/deeper/key`, new Uint8Array([1, 2, 3]));
    assert.equal(await mode(`${root}/new/deeper`), 0o700);
    assert.equal(await mode(`${root}/new/deeper/key`), 0o600);
    // Replacing keeps the mode, even when the old file was wider.
    await Deno.chmod(`${root}/wide/key.pem`, 0o644);
    await writeSecretFile(`${root}/wide/key.pem`, "again");
    assert.equal(await mode(`${root}/wide/key.pem`), 0o600);
    assert.deepEqual(await names(`${root}/wide`), ["key.pem"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("secret files: createNew lets the first writer win", async () => {
  const root = await Deno.makeTempDir({ prefix: "enarx-secret-" });
  try {
    await writeSecretFile(`${root}/s`, "first", { createNew: true });
    await assert.rejects(
      () => writeSecretFile(`${root}/s`, "second", { createNew: true }),
      Deno.errors.AlreadyExists,
    );
    assert.equal(await Deno.readTextFile(`${root}/s`), "first");
    assert.deepEqual(await names(root), ["s"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("secret files: a failed write is an io error and leaves no temporary", async () => {
  const root = await Deno.makeTempDir({ prefix: "enarx-secret-" });
  try {
    // The target is a non-empty directory: the rename fails after the temporary is written.
    await Deno.mkdir(`${root}/key`);
    await Deno.writeTextFile(`${root}/key/x`, "");
    await assert.rejects(() => writeFileAtomic(`${root}/key`, "data"), (e: unknown) => {
      assert.ok(e instanceof EnarxError);
      assert.equal(e.code, "io");
      assert.equal(e.exitStatus, 74);
      assert.match(e.message, /Cannot write ".*\/key"/);
      return true;
    });
    assert.deepEqual(await names(root), ["key"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("secret files: a path that is a file is not taken for a directory", async () => {
  const root = await Deno.makeTempDir({ prefix: "enarx-secret-" });
  try {
    await Deno.writeTextFile(`${root}/f`, "");
    await assert.rejects(() => ensurePrivateDirectory(`${root}/f`), EnarxError);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("secret files: keepmgr's generated TLS key is 0600 in a 0700 directory", async () => {
  const root = await Deno.makeTempDir({ prefix: "enarx-secret-tls-" });
  try {
    await Deno.mkdir(`${root}/tls`);
    await Deno.chmod(`${root}/tls`, 0o755);
    await loadOrCreateKeepmgrTls(root);
    assert.equal(await mode(`${root}/tls`), 0o700);
    assert.equal(await mode(`${root}/tls/key.pem`), 0o600);
    assert.equal(await mode(`${root}/tls/cert.pem`), 0o644);
    assert.deepEqual(await names(`${root}/tls`), ["cert.pem", "key.pem"]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("secret files: the snp-sim state (simulated private keys) is 0600 in a 0700 directory", async () => {
  const root = await Deno.makeTempDir({ prefix: "enarx-secret-sim-" });
  try {
    await Deno.mkdir(`${root}/sim`);
    await Deno.chmod(`${root}/sim`, 0o755);
    await SnpSimulator.open(`${root}/sim`);
    assert.equal(await mode(`${root}/sim`), 0o700);
    assert.equal(await mode(`${root}/sim/${SNP_SIM_STATE_FILE}`), 0o600);
    assert.deepEqual(await names(`${root}/sim`), [SNP_SIM_STATE_FILE]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
