/**
 * The deploy client's way to keepmgr (runtime/client/keepmgr_client.ts): a
 * first contact goes through Node's TLS, unverified as by default, and
 * caches the certificate it saw; later requests go through Deno's TLS with
 * that certificate as their root, without rewriting the cache; a cached
 * certificate that the keepmgr does not hold is refused by Deno's TLS, and
 * the request then takes the first-contact path, which replaces it;
 * `--keepmgr-ca` with a foreign CA still refuses. And http1_client's body
 * read as chunks, which spares a deploy Deno's web streams.
 */
import assert from "node:assert/strict";
import { KeepmgrClient } from "../../runtime/client/keepmgr_client.ts";
import { http1Request } from "../../runtime/client/http1_client.ts";
import {
  certificatePem,
  keepmgrCertPath,
  readKeepmgrCert,
  recordKeepmgrCert,
} from "../../runtime/client/keepmgr_cert_cache.ts";
import { pemBlocks } from "../../runtime/der_reader.ts";
import { EnarxError } from "../../runtime/errors.ts";
import { SIM_ROOT, startKeepmgr } from "../deploy/_deploy_fixture.ts";

/** A self-signed P-256 certificate with the keepmgr's subject and names, made by openssl. */
async function foreignCertificate(dir: string): Promise<string> {
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      `${dir}/foreign.key`,
      "-out",
      `${dir}/foreign.pem`,
      "-subj",
      "/CN=enarx keepmgr",
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
      "-days",
      "2",
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return await Deno.readTextFile(`${dir}/foreign.pem`);
}

/** The DER of the first certificate of `pem`, as hex. */
function derHex(pem: string): string {
  return pemBlocks(pem)[0].toHex();
}

Deno.test("keepmgr client: the cache file of an origin, and PEM that round-trips", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(
      keepmgrCertPath(dir, "https://[::1]:8443"),
      `${dir}/https_1_8443.pem`,
    );
    assert.equal(readKeepmgrCert(dir, "https://127.0.0.1:1"), undefined);
    const der = crypto.getRandomValues(new Uint8Array(300));
    await recordKeepmgrCert(`${dir}/sub`, "https://127.0.0.1:1", der);
    const pem = readKeepmgrCert(`${dir}/sub`, "https://127.0.0.1:1")!;
    assert.equal(pem, certificatePem(der));
    assert.equal(derHex(pem), der.toHex());
    assert.equal((await Deno.stat(`${dir}/sub`)).mode! & 0o777, 0o700);
    assert.equal(
      (await Deno.stat(keepmgrCertPath(`${dir}/sub`, "https://127.0.0.1:1"))).mode! &
        0o777,
      0o600,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("keepmgr client: the certificate cache keeps the most recently recorded origins only", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const der = crypto.getRandomValues(new Uint8Array(64));
    const origin = (port: number) => `https://127.0.0.1:${port}`;
    for (let port = 1; port <= 5; port++) {
      await recordKeepmgrCert(dir, origin(port), der, 3);
      // Distinct modification times, oldest first, whatever the file system's resolution.
      const at = new Date(Date.UTC(2026, 0, 1, 0, 0, port));
      await Deno.utime(keepmgrCertPath(dir, origin(port)), at, at);
    }
    await Deno.writeTextFile(`${dir}/note.txt`, "not a certificate");
    await recordKeepmgrCert(dir, origin(6), der, 3);
    const left = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(left, [
      "https_127.0.0.1_4.pem",
      "https_127.0.0.1_5.pem",
      "https_127.0.0.1_6.pem",
      "note.txt",
    ]);
    assert.equal(readKeepmgrCert(dir, origin(6)), certificatePem(der));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("keepmgr client: first contact caches the certificate, later ones use it", async () => {
  await using mgr = await startKeepmgr();
  const cache = await Deno.makeTempDir();
  try {
    const own = await Deno.readTextFile(`${mgr.stateDir}/tls/cert.pem`);
    const client = new KeepmgrClient(mgr.url, { token: mgr.token, certCache: cache });
    assert.equal((await client.info()).simulator_root, SIM_ROOT);
    const file = keepmgrCertPath(cache, new URL(mgr.url).origin);
    const cached = await Deno.readTextFile(file);
    assert.equal(derHex(cached), derHex(own));
    // Marked: the Node path would rewrite the file; the Deno path only reads it.
    await Deno.writeTextFile(file, `${cached}# read by Deno's TLS\n`);
    assert.equal((await client.info()).simulator_root, SIM_ROOT);
    assert.ok(Array.isArray((await client.listKeeps()).keeps));
    assert.match(await Deno.readTextFile(file), /# read by Deno's TLS/);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("keepmgr client: a cached certificate the keepmgr does not hold is refused, then replaced", async () => {
  await using mgr = await startKeepmgr();
  const cache = await Deno.makeTempDir();
  try {
    const own = await Deno.readTextFile(`${mgr.stateDir}/tls/cert.pem`);
    const foreign = await foreignCertificate(cache);
    const origin = new URL(mgr.url).origin;
    await recordKeepmgrCert(cache, origin, pemBlocks(foreign)[0]);
    // Deno's TLS with only the foreign certificate as its root refuses the keepmgr.
    await assert.rejects(
      Deno.connectTls({
        hostname: "127.0.0.1",
        port: Number(new URL(mgr.url).port),
        caCerts: [foreign],
        unsafelyDisableHostnameVerification: true,
      }).then((c) => c.handshake().finally(() => c.close())),
      /invalid peer certificate/,
    );
    const client = new KeepmgrClient(mgr.url, { token: mgr.token, certCache: cache });
    assert.equal((await client.info()).simulator_root, SIM_ROOT);
    assert.equal(derHex(readKeepmgrCert(cache, origin)!), derHex(own));
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("keepmgr client: --keepmgr-ca still refuses a keepmgr its CA did not certify", async () => {
  await using mgr = await startKeepmgr();
  const cache = await Deno.makeTempDir();
  try {
    const foreign = await foreignCertificate(cache);
    // Even with the keepmgr's own certificate cached: --keepmgr-ca does not use the cache.
    const own = await Deno.readTextFile(`${mgr.stateDir}/tls/cert.pem`);
    await recordKeepmgrCert(cache, new URL(mgr.url).origin, pemBlocks(own)[0]);
    const client = new KeepmgrClient(mgr.url, { caCerts: [foreign], certCache: cache });
    await assert.rejects(
      client.info(),
      (e: unknown) => e instanceof EnarxError && e.code === "keepmgr-unreachable",
    );
    assert.equal(
      (await new KeepmgrClient(mgr.url, { caCerts: [own], certCache: false }).info())
        .simulator_root,
      SIM_ROOT,
    );
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});

for (const contact of ["a later contact (Deno's TLS)", "a first contact (Node's TLS)"]) {
  Deno.test(`keepmgr client: a server that never answers fails within the timeout, ${contact}`, async () => {
    await neverAnswers(contact.startsWith("a later"));
  });
}

/** A server that accepts and says nothing: the request fails after the client's timeout. */
async function neverAnswers(cached: boolean): Promise<void> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) held.push(conn);
  })();
  const cache = await Deno.makeTempDir();
  try {
    const url = `https://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`;
    if (cached) {
      const own = await foreignCertificate(cache);
      await recordKeepmgrCert(cache, new URL(url).origin, pemBlocks(own)[0]);
    }
    const client = new KeepmgrClient(url, { certCache: cache, timeoutMs: 1_000 });
    const started = performance.now();
    await assert.rejects(
      client.info(),
      (e: unknown) =>
        e instanceof EnarxError && e.code === "keepmgr-unreachable" &&
        /no reply within 1000 ms/.test(e.message),
    );
    // Within the timeout, not twice it (Node's socket timeout, alone, fired
    // only after 2 s here: Deno's node:https restarts it once connected).
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 1_800, `${elapsed.toFixed(0)} ms`);
  } finally {
    listener.close();
    for (const conn of held) conn.close();
    await accepting.catch(() => {});
    await Deno.remove(cache, { recursive: true });
  }
}

/** A one-connection HTTP server that answers with a chunked body of `parts`, then waits for EOF. */
function chunkedServer(parts: string[]) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedByClient = (async () => {
    const conn = await listener.accept();
    listener.close();
    const buf = new Uint8Array(4096);
    await conn.read(buf); // the request
    const body = parts.map((p) => `${p.length.toString(16)}\r\n${p}\r\n`).join("") + "0\r\n\r\n";
    await conn.write(
      new TextEncoder().encode(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n${body}`),
    );
    // The client closes its side once the body is read or abandoned.
    const n = await conn.read(buf).catch(() => null);
    conn.close();
    return n === null;
  })();
  return { port: (listener.addr as Deno.NetAddr).port, closedByClient };
}

Deno.test("http1 client: a body read as chunks (no web stream) closes the connection, read or abandoned", async () => {
  for (const readAll of [true, false]) {
    const server = chunkedServer(["hello ", "keep", "mgr"]);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    const response = await http1Request(conn, { method: "GET", path: "/", host: "x" });
    let text = "";
    for await (const chunk of response.chunks()) {
      text += new TextDecoder().decode(chunk);
      if (!readAll) break;
    }
    assert.equal(text, readAll ? "hello keepmgr" : "hello ");
    assert.equal(await server.closedByClient, true);
  }
  // The stream is still there for callers that want one.
  const server = chunkedServer(["a", "b"]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const response = await http1Request(conn, { method: "GET", path: "/", host: "x" });
  assert.equal(await new Response(response.body).text(), "ab");
  assert.equal(await server.closedByClient, true);
});
