/**
 * `prot = "tls"` on `enarx deploy`: a real keepmgr (child process), a real
 * deploy of the C echo server (sockets.wasm) on the nil backend, and real
 * TLS clients. With `--ca`/`--ca-key` (a CA this test makes in memory, P-256
 * or RSA) the keep's certificate is issued by it: Deno.connectTls trusting
 * only that CA reaches the service by the printed host, one trusting another
 * CA is refused. A --ca-key that is not the CA's is refused before anything
 * is sent. Without --ca the printed fingerprint is the served certificate's.
 */
import assert from "node:assert/strict";
import * as tls from "node:tls";
import type { Socket } from "node:net";
import { join } from "node:path";
import { deployArgs, startKeepmgr } from "./_deploy_fixture.ts";
import { enarx, ensureLibwasmtime, workload } from "../workloads/helpers.ts";
import { makeTestCa, pemFingerprint, presentedCertificate } from "../workloads/tls_helpers.ts";
import * as x509 from "../../runtime/x509.ts";
import { loadServiceCa } from "../../runtime/client/service_ca.ts";
import { parseDeployedConfig } from "../../runtime/wasm/config.ts";
import type { LocalKeepmgr } from "../../runtime/keepmgr/local.ts";

ensureLibwasmtime();
const SOCKETS = workload("sockets.wasm");
const TOML = '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n' +
  '[[files]]\nkind = "listen"\nprot = "tls"\nname = "web"\nport = 0\n';

function pem(der: ArrayBuffer, label: string): string {
  const lines = new Uint8Array(der).toBase64().match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** A CA made here: its certificate and its PKCS#8 key, PEM (written only to a temp dir). */
async function makeCa(name: string, kind: "p256" | "rsa") {
  const alg = kind === "p256" ? { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } : {
    name: "RSASSA-PKCS1-v1_5",
    modulusLength: 2048,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: "SHA-256",
  };
  const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: `CN=${name}`,
    notBefore: new Date(now - 3_600_000),
    notAfter: new Date(now + 30 * 86_400_000),
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
    ],
  }, crypto);
  const keyPem = pem(await crypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY");
  return { certPem: cert.toString("pem"), keyPem };
}

async function withFiles<T>(
  files: Record<string, string>,
  fn: (paths: Record<string, string>) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir();
  try {
    const paths: Record<string, string> = {};
    for (const [name, text] of Object.entries(files)) {
      paths[name] = join(dir, name);
      await Deno.writeTextFile(paths[name], text);
    }
    return await fn(paths);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Sends `text` over `conn`, half-closes, returns what comes back. */
async function talk(conn: Deno.TlsConn, text: string): Promise<string> {
  const reading = new Response(conn.readable).text();
  await conn.write(new TextEncoder().encode(text));
  await conn.closeWrite();
  return await reading;
}

/** How many hours a certificate is valid, rounded. */
function validHours(cert: x509.X509Certificate): number {
  return Math.round((cert.notAfter.getTime() - cert.notBefore.getTime()) / 3_600_000);
}

async function stopKeep(mgr: LocalKeepmgr, keep: string): Promise<void> {
  const r = await enarx([
    "keep",
    "stop",
    keep,
    "--keepmgr",
    mgr.url,
    "--keepmgr-token",
    mgr.tokenFile,
  ]);
  assert.equal(r.code, 0, r.stderr);
}

for (const kind of ["p256", "rsa"] as const) {
  Deno.test(`deploy tls: --ca (${kind}) issues the keep's certificate; only that CA's clients get through`, async () => {
    const ca = await makeCa(`enarx deploy test CA ${kind}`, kind);
    const other = await makeCa("another CA", "p256");
    const mgr = await startKeepmgr();
    try {
      await withFiles(
        { "Enarx.toml": TOML, "ca.pem": ca.certPem, "ca.key": ca.keyPem },
        async (p) => {
          const r = await enarx(deployArgs(mgr, p["Enarx.toml"], [
            "--ca",
            p["ca.pem"],
            "--ca-key",
            p["ca.key"],
            "--detach",
            "--json",
            SOCKETS,
            "echo",
            "web",
            "100",
          ]));
          assert.equal(r.code, 0, r.stderr);
          const out = JSON.parse(r.stdout);
          assert.equal(out.certificate.issued, true);
          assert.deepEqual(out.certificate.names, ["localhost", "127.0.0.1"]);
          assert.ok(out.steps.some((s: { id: string }) => s.id === "certify"));
          const [endpoint] = out.endpoints;
          assert.equal(endpoint.prot, "tls");
          assert.equal(endpoint.url, `tls://${endpoint.host}:${endpoint.port}`);
          assert.equal(endpoint.fingerprint, out.certificate.fingerprint);
          // Trusting only the deployer's CA, by the printed host.
          const conn = await Deno.connectTls({
            hostname: endpoint.host,
            port: endpoint.port,
            caCerts: [ca.certPem],
          });
          assert.equal(await talk(conn, "through the keep's TLS\n"), "through the keep's TLS\n");
          // The served certificate is the one the client issued and reported.
          const served = await presentedCertificate(endpoint.port);
          assert.equal(await pemFingerprint(served), endpoint.fingerprint);
          const leaf = new x509.X509Certificate(served);
          assert.equal(leaf.issuer, new x509.X509Certificate(ca.certPem).subject);
          assert.equal(validHours(leaf), 7 * 24 + 1, "an hour back to 7 days ahead by default");
          // A client trusting another CA is refused.
          const stranger = await Deno.connectTls({
            hostname: endpoint.host,
            port: endpoint.port,
            caCerts: [other.certPem],
          });
          await assert.rejects(() => stranger.handshake(), /certificate|UnknownIssuer/i);
          stranger.close();
          await stopKeep(mgr, out.keep);
        },
      );
    } finally {
      await mgr.close();
    }
  });
}

Deno.test("deploy tls: without --ca the printed fingerprint is the served self-signed certificate's", async () => {
  const mgr = await startKeepmgr();
  try {
    await withFiles({ "Enarx.toml": TOML }, async (p) => {
      const r = await enarx(deployArgs(mgr, p["Enarx.toml"], [
        "--service-name",
        "api.example.test",
        "--detach",
        SOCKETS,
        "echo",
        "web",
        "100",
      ]));
      assert.equal(r.code, 0, r.stderr);
      const match =
        /endpoint web: tls:\/\/127\.0\.0\.1:(\d+) \(certificate sha256 ([0-9a-f]{64})\)\n/
          .exec(r.stderr);
      assert.ok(match, r.stderr);
      const served = await presentedCertificate(Number(match[1]), "api.example.test");
      assert.equal(await pemFingerprint(served), match[2]);
      const cert = new x509.X509Certificate(served);
      assert.equal(cert.subject, cert.issuer, "self-signed");
      const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
      assert.deepEqual(san?.names.toJSON(), [{ type: "dns", value: "api.example.test" }]);
      // Pinning the printed certificate (as a trust anchor) reaches the service by its name.
      const conn = await Deno.connectTls({
        hostname: "127.0.0.1",
        port: Number(match[1]),
        caCerts: [served],
      });
      // The certificate names api.example.test only, not the address: refused by name.
      await assert.rejects(() => conn.handshake(), /NotValidForName|not valid for|name/i);
      conn.close();
      await stopKeep(mgr, r.stdout.trim());
    });
  } finally {
    await mgr.close();
  }
});

Deno.test("deploy tls: a --ca-key that is not the CA's, or not a key, is refused before anything is sent", async () => {
  const ca = await makeCa("the CA", "p256");
  const other = await makeCa("another CA", "p256");
  await withFiles({
    "Enarx.toml": TOML,
    "ca.pem": ca.certPem,
    "other.key": other.keyPem,
    "cert-as-key.pem": ca.certPem,
  }, async (p) => {
    // Nothing listens on port 1: reaching the network would be exit 69.
    const base = ["deploy", "--keepmgr", "https://127.0.0.1:1", "--wasmcfgfile", p["Enarx.toml"]];
    const mismatched = await enarx([
      ...base,
      "--ca",
      p["ca.pem"],
      "--ca-key",
      p["other.key"],
      SOCKETS,
    ]);
    assert.equal(mismatched.code, 65, mismatched.stderr);
    assert.match(mismatched.stderr, /--ca-key ".*other\.key" is not the key of --ca ".*ca\.pem"/);
    const notKey = await enarx([
      ...base,
      "--ca",
      p["ca.pem"],
      "--ca-key",
      p["cert-as-key.pem"],
      SOCKETS,
    ]);
    assert.equal(notKey.code, 65, notKey.stderr);
    assert.match(notKey.stderr, /--ca-key ".*cert-as-key\.pem" is not a PKCS#8 PEM/);
    const missing = await enarx([
      ...base,
      "--ca",
      p["ca.pem"],
      "--ca-key",
      "/nonexistent.key",
      SOCKETS,
    ]);
    assert.equal(missing.code, 66, missing.stderr);
    assert.match(missing.stderr, /Cannot read --ca-key "\/nonexistent\.key"/);
    const notCa = await enarx([
      ...base,
      "--ca",
      p["Enarx.toml"],
      "--ca-key",
      p["other.key"],
      SOCKETS,
    ]);
    assert.equal(notCa.code, 65, notCa.stderr);
    assert.match(notCa.stderr, /--ca ".*Enarx\.toml" holds no readable PEM certificate/);
    const alone = await enarx([...base, "--ca", p["ca.pem"], SOCKETS]);
    assert.equal(alone.code, 64, alone.stderr);
    for (const r of [mismatched, notKey, missing, notCa, alone]) {
      assert.doesNotMatch(r.stderr, /Deploy step|keepmgr/i);
    }
  });
  // The library call says the same.
  await withFiles({ "ca.pem": ca.certPem, "other.key": other.keyPem }, async (p) => {
    await assert.rejects(
      () => loadServiceCa(p["ca.pem"], p["other.key"]),
      (e: unknown) => (e as { exitStatus?: number }).exitStatus === 65,
    );
  });
});

Deno.test("deploy tls: a deployed config may have tls sockets, but not a ca file of the keep's host", () => {
  assert.equal(parseDeployedConfig(TOML).files.at(-1)?.prot, "tls");
  assert.throws(
    () =>
      parseDeployedConfig(
        TOML +
          '[[files]]\nkind = "connect"\nprot = "tls"\nname = "up"\nhost = "h"\nca = "/etc/ca.pem"\n',
      ),
    (e: unknown) =>
      (e as { exitStatus?: number }).exitStatus === 69 &&
      /"up" has ca = a file path.*put the PEM text in Enarx\.toml/.test((e as Error).message),
  );
});

/** `[[files]]` for the workload's fd 3: TLS to 127.0.0.1:`port`, trusting `caPem`, with mTLS. */
function mtlsConnectToml(port: number, caPem: string): string {
  return TOML.replace(/\[\[files\]\]\nkind = "listen"[^]*$/, "") +
    '[[files]]\nkind = "connect"\nprot = "tls"\nname = "peer"\nhost = "127.0.0.1"\n' +
    `port = ${port}\nca = """${caPem}"""\nmtls = true\n`;
}

/**
 * A TLS server on 127.0.0.1 (node:tls: Deno.listenTls cannot ask for a
 * client certificate) that requires one issued by `clientCa`, records each
 * client's certificate and answers "hello NAME" (the certificate's CN).
 */
async function mtlsServer(chain: { certPem: string; keyPem: string }, clientCa: string) {
  const seen: { authorized: boolean; der: Uint8Array<ArrayBuffer> }[] = [];
  const server = tls.createServer(
    {
      cert: chain.certPem,
      key: chain.keyPem,
      ca: [clientCa],
      requestCert: true,
      rejectUnauthorized: true,
    },
    (socket) => {
      const der = new Uint8Array(socket.getPeerCertificate(false).raw);
      seen.push({ authorized: socket.authorized, der });
      socket.end(`hello ${new x509.X509Certificate(der).subjectName.getField("CN")[0]}`);
    },
  );
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  });
  server.on("tlsClientError", () => {});
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    seen,
    close() {
      server.close();
      for (const socket of sockets) socket.destroy();
    },
  };
}

Deno.test("deploy tls: connect with mtls presents the certificate the deployer's CA issued; a wrong server certificate is exit 76", async () => {
  const deployerCa = await makeCa("enarx deploy test CA mtls", "p256");
  const serverCa = await makeTestCa("the server's CA");
  const stranger = await makeTestCa("a CA the keep does not trust");
  const server = await mtlsServer(await serverCa.issue("localhost"), deployerCa.certPem);
  const impostor = await mtlsServer(await stranger.issue("localhost"), deployerCa.certPem);
  const mgr = await startKeepmgr();
  try {
    await withFiles({
      "Enarx.toml": mtlsConnectToml(server.port, serverCa.certPem),
      "impostor.toml": mtlsConnectToml(impostor.port, serverCa.certPem),
      "ca.pem": deployerCa.certPem,
      "ca.key": deployerCa.keyPem,
    }, async (p) => {
      const ca = ["--ca", p["ca.pem"], "--ca-key", p["ca.key"], "--service-name", "client.test"];
      const r = await enarx(deployArgs(mgr, p["Enarx.toml"], [
        ...ca,
        "--json",
        SOCKETS,
        "connect",
        "peer",
        "hi",
      ]));
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.equal(out.certificate.issued, true);
      assert.equal(
        new TextDecoder().decode(Uint8Array.fromBase64(out.stdout)),
        "hello client.test",
      );
      // The server verified the keep's certificate against the deployer's CA, and it is the one reported.
      assert.equal(server.seen.length, 1);
      assert.equal(server.seen[0].authorized, true);
      assert.equal(await x509.sha256Fingerprint(server.seen[0].der), out.certificate.fingerprint);
      const leaf = new x509.X509Certificate(server.seen[0].der);
      assert.equal(leaf.issuer, new x509.X509Certificate(deployerCa.certPem).subject);

      // A server whose certificate the entry's ca does not vouch for: the deploy ends with 76.
      const bad = await enarx(deployArgs(mgr, p["impostor.toml"], [
        ...ca,
        SOCKETS,
        "connect",
        "peer",
        "secret",
      ]));
      assert.equal(bad.code, 76, bad.stderr);
      assert.match(
        bad.stderr,
        new RegExp(
          `The TLS handshake with 127\\.0\\.0\\.1:${impostor.port} for \\[\\[files\\]\\] "peer" ` +
            `failed: .*certificate`,
        ),
      );
      assert.equal(bad.stdout, "");
      assert.deepEqual(impostor.seen, [], "the workload reached a server it should not trust");
    });
  } finally {
    await mgr.close();
    server.close();
    impostor.close();
  }
});

Deno.test("deploy tls: a policy's [service_ca] issues the keep's certificate, for --cert-days days", async () => {
  const ca = await makeCa("policy CA", "p256");
  const mgr = await startKeepmgr();
  try {
    await withFiles({
      "Enarx.toml": TOML,
      "policy.toml": '[service_ca]\ncert = "ca.pem"\nkey = "ca.key"\n',
      "ca.pem": ca.certPem,
      "ca.key": ca.keyPem,
    }, async (p) => {
      const r = await enarx(deployArgs(mgr, p["Enarx.toml"], [
        "--policy",
        p["policy.toml"],
        "--cert-days",
        "30",
        "--detach",
        "--json",
        SOCKETS,
        "echo",
        "web",
        "100",
      ]));
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.equal(out.certificate.issued, true);
      const leaf = new x509.X509Certificate(await presentedCertificate(out.endpoints[0].port));
      assert.equal(leaf.issuer, new x509.X509Certificate(ca.certPem).subject);
      assert.equal(validHours(leaf), 30 * 24 + 1);
      await stopKeep(mgr, out.keep);
    });
  } finally {
    await mgr.close();
  }
});

Deno.test("deploy tls: a policy's [service_ca] is checked as --ca is; --ca overrides it; --cert-days is bounded", async () => {
  const ca = await makeCa("the CA", "p256");
  const other = await makeCa("another CA", "p256");
  await withFiles({
    "Enarx.toml": TOML,
    "ca.pem": ca.certPem,
    "ca.key": ca.keyPem,
    "other.key": other.keyPem,
    "mismatched.toml": '[service_ca]\ncert = "ca.pem"\nkey = "other.key"\n',
    "missing.toml": '[service_ca]\ncert = "ca.pem"\nkey = "missing.key"\n',
  }, async (p) => {
    // Nothing listens on port 1: reaching the network is exit 69.
    const base = ["deploy", "--keepmgr", "https://127.0.0.1:1", "--wasmcfgfile", p["Enarx.toml"]];
    const mismatched = await enarx([...base, "--policy", p["mismatched.toml"], SOCKETS]);
    assert.equal(mismatched.code, 65, mismatched.stderr);
    assert.match(
      mismatched.stderr,
      /^enarx: service_ca\.key ".*\/other\.key" \(policy ".*mismatched\.toml"\) is not the key of service_ca\.cert ".*\/ca\.pem" \(policy ".*mismatched\.toml"\); pass the CA's own key\n$/,
    );
    const missing = await enarx([...base, "--policy", p["missing.toml"], SOCKETS]);
    assert.equal(missing.code, 66, missing.stderr);
    assert.match(
      missing.stderr,
      /^enarx: Cannot read service_ca\.key ".*\/missing\.key" \(policy ".*missing\.toml"\): /,
    );
    // --ca/--ca-key override the policy's: its broken key is not even read.
    const flags = ["--ca", p["ca.pem"], "--ca-key", p["ca.key"]];
    const overridden = await enarx([...base, "--policy", p["missing.toml"], ...flags, SOCKETS]);
    assert.equal(overridden.code, 69, overridden.stderr);
    for (const days of ["0", "201", "7d", "1.5"]) {
      const r = await enarx([...base, ...flags, "--cert-days", days, SOCKETS]);
      assert.equal(r.code, 64, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(`^enarx: --cert-days "${days}" is not a whole number of days from 1 to 200`),
      );
    }
    const noCa = await enarx([...base, "--cert-days", "30", SOCKETS]);
    assert.equal(noCa.code, 64, noCa.stderr);
    assert.match(noCa.stderr, /--cert-days sets the lifetime of the certificate your CA issues/);
  });
});

Deno.test("deploy tls: a listen with mtls serves only clients with a certificate from its ca", async () => {
  const ca = await makeCa("enarx deploy test CA listen", "p256");
  const clients = await makeTestCa("the clients' CA");
  const alice = await clients.issue("alice", "client");
  const mgr = await startKeepmgr();
  try {
    const toml = TOML + `ca = """${clients.certPem}"""\nmtls = true\n`;
    await withFiles(
      { "Enarx.toml": toml, "ca.pem": ca.certPem, "ca.key": ca.keyPem },
      async (p) => {
        const r = await enarx(deployArgs(mgr, p["Enarx.toml"], [
          ...["--ca", p["ca.pem"], "--ca-key", p["ca.key"], "--detach", "--json"],
          SOCKETS,
          "echo",
          "web",
          "100",
        ]));
        assert.equal(r.code, 0, r.stderr);
        const out = JSON.parse(r.stdout);
        const { host, port } = out.endpoints[0];
        const caCerts = [ca.certPem];
        const anonymous = await Deno.connectTls({ hostname: host, port, caCerts });
        // TLS 1.3 checks the client after the client's handshake: the refusal comes on reading
        // (an alert, or through keepmgr's relay just the end of the connection).
        await assert.rejects(
          () => talk(anonymous, "no certificate\n"),
          /CertificateRequired|close_notify|UnexpectedEof/i,
        );
        const conn = await Deno.connectTls({
          hostname: host,
          port,
          caCerts,
          cert: alice.certPem,
          key: alice.keyPem,
        });
        assert.equal(await talk(conn, "alice\n"), "alice\n");
        await stopKeep(mgr, out.keep);
      },
    );
  } finally {
    await mgr.close();
  }
});
