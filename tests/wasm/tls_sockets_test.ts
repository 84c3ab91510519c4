/**
 * `enarx run` with `prot = "tls"` sockets: the real CLI, real TLS on
 * loopback (Deno's and node:tls), tests/workloads/c/sockets.c as the guest.
 * The guest speaks plaintext; the tests check what crosses the wire.
 */
import assert from "node:assert/strict";
import * as tls from "node:tls";
import { join } from "node:path";
import { enarx, ensureLibwasmtime, workload } from "../workloads/helpers.ts";
import {
  makeTestCa,
  pemFingerprint,
  presentedCertificate,
  startKeep,
} from "../workloads/tls_helpers.ts";
import * as x509 from "../../runtime/x509.ts";

ensureLibwasmtime();
const SOCKETS = workload("sockets.wasm");
const STDIO = '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n';
const LISTEN = '[[files]]\nkind = "listen"\nprot = "tls"\nname = "web"\naddr = "127.0.0.1"\n' +
  "port = 0\n";

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir();
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Reads `conn` to end of stream with read() (so that it stays open for writing). */
async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  const buf = new Uint8Array(65536);
  while (true) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  return new Uint8Array(await new Blob(chunks).arrayBuffer());
}

/** Sends `data`, half-closes, and returns everything that comes back. */
async function talk(conn: Deno.Conn, data: Uint8Array): Promise<Uint8Array> {
  const reading = readAll(conn);
  for (let at = 0; at < data.length;) at += await conn.write(data.subarray(at));
  await conn.closeWrite();
  const reply = await reading;
  conn.close();
  return reply;
}

function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/** A TCP relay to 127.0.0.1:`port` that records every byte each way. */
function recordingRelay(
  port: number,
): { port: number; up: Uint8Array<ArrayBuffer>[]; down: Uint8Array<ArrayBuffer>[] } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const relay = {
    port: listener.addr.port,
    up: [] as Uint8Array<ArrayBuffer>[],
    down: [] as Uint8Array<ArrayBuffer>[],
  };
  (async () => {
    const client = await listener.accept();
    listener.close();
    const server = await Deno.connect({ hostname: "127.0.0.1", port });
    const pump = async (from: Deno.Conn, to: Deno.Conn, log: Uint8Array<ArrayBuffer>[]) => {
      const buf = new Uint8Array(65536);
      try {
        while (true) {
          const n = await from.read(buf);
          if (n === null) break;
          const chunk = buf.slice(0, n);
          log.push(chunk);
          for (let at = 0; at < n;) at += await to.write(chunk.subarray(at));
        }
        await to.closeWrite();
      } catch {
        // the other side went away
      }
    };
    await Promise.all([pump(client, server, relay.up), pump(server, client, relay.down)]);
    client.close();
    server.close();
  })();
  return relay;
}

async function joined(chunks: Uint8Array<ArrayBuffer>[]): Promise<Uint8Array> {
  return new Uint8Array(await new Blob(chunks).arrayBuffer());
}

Deno.test("tls listen: a client trusting the printed certificate gets plaintext echoed; the wire sees TLS only", async () => {
  await withDir(async (dir) => {
    const toml = join(dir, "Enarx.toml");
    await Deno.writeTextFile(toml, STDIO + LISTEN);
    const tmp = join(dir, "tmp");
    await Deno.mkdir(tmp);
    const keep = await startKeep(["--wasmcfgfile", toml, SOCKETS, "echo", "web", "3"], {
      env: { TMPDIR: tmp },
    });
    // The plaintext side: one private directory of the keep's, mode 0700.
    const dirs = [...Deno.readDirSync(tmp)].filter((e) => e.name.startsWith("enarx-tls-"));
    assert.equal(dirs.length, 1);
    assert.equal(Deno.statSync(join(tmp, dirs[0].name)).mode! & 0o777, 0o700);

    const pem = await presentedCertificate(keep.port); // guest connection 1
    assert.equal(await pemFingerprint(pem), keep.fingerprint);

    // A plaintext client gets no answer from the guest: TLS refuses it.
    const raw = await Deno.connect({ hostname: "127.0.0.1", port: keep.port });
    const request = new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n");
    await raw.write(request);
    const answer = await readAll(raw).catch(() => new Uint8Array(0));
    assert.ok(!contains(answer, request), "a plaintext request came back");

    const message = new TextEncoder().encode("plaintext for the guest only ".repeat(40));
    const direct = await Deno.connectTls({
      hostname: "localhost",
      port: keep.port,
      caCerts: [pem],
    });
    assert.deepEqual(await talk(direct, message), message); // guest connection 2

    const relay = recordingRelay(keep.port);
    const relayed = await Deno.connectTls({
      hostname: "localhost",
      port: relay.port,
      caCerts: [pem],
    });
    assert.deepEqual(await talk(relayed, message), message); // guest connection 3
    const up = await joined(relay.up);
    const down = await joined(relay.down);
    assert.equal(up[0], 0x16, "the client's first record is a TLS handshake");
    assert.equal(down[0], 0x16, "the keep's first record is a TLS handshake");
    assert.ok(up.length > message.length && down.length > message.length);
    assert.ok(!contains(up, message.subarray(0, 16)), "plaintext on the wire to the keep");
    assert.ok(!contains(down, message.subarray(0, 16)), "plaintext on the wire from the keep");

    const end = await keep.done();
    assert.equal(end.code, 0, end.stderr);
    assert.equal(end.stdout, "served 3\n");
    assert.deepEqual([...Deno.readDirSync(tmp)], [], "the private directory outlived the run");
  });
});

Deno.test("tls listen: --service-name sets the certificate's names", async () => {
  await withDir(async (dir) => {
    const toml = join(dir, "Enarx.toml");
    await Deno.writeTextFile(toml, STDIO + LISTEN);
    const keep = await startKeep([
      "--wasmcfgfile",
      toml,
      "--service-name",
      "api.example.test",
      "--service-name",
      "[::1]",
      SOCKETS,
      "echo",
      "web",
      "1",
    ]);
    const cert = new x509.X509Certificate(
      await presentedCertificate(keep.port, "api.example.test"),
    );
    const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
    assert.deepEqual(
      san?.names.toJSON().map((n) => `${n.type}:${n.value}`),
      ["dns:api.example.test", "ip:::1"],
    );
    assert.equal((await keep.done()).code, 0);
  });
});

Deno.test("tls listen: many concurrent clients, and clients that leave mid-handshake, stall or leave mid-stream", async () => {
  await withDir(async (dir) => {
    const toml = join(dir, "Enarx.toml");
    await Deno.writeTextFile(toml, STDIO + LISTEN);
    const clients = 200;
    const keep = await startKeep([
      "--wasmcfgfile",
      toml,
      SOCKETS,
      "poll-echo",
      "web",
      String(clients + 2),
    ]);
    const pem = await presentedCertificate(keep.port);
    // One sends half a ClientHello and leaves; one connects and says nothing.
    const leaver = await Deno.connect({ hostname: "127.0.0.1", port: keep.port });
    await leaver.write(new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]));
    leaver.close();
    const staller = await Deno.connect({ hostname: "127.0.0.1", port: keep.port });
    // One leaves mid-stream, without close_notify: the guest sees its connection end.
    const dropper = await Deno.connectTls({
      hostname: "localhost",
      port: keep.port,
      caCerts: [pem],
    });
    await dropper.write(new Uint8Array(100_000));
    dropper.close();
    const replies = await Promise.all(
      Array.from({ length: clients }, async (_, i) => {
        const data = new TextEncoder().encode(`client ${i} `.repeat(1000));
        const conn = await Deno.connectTls({
          hostname: "localhost",
          port: keep.port,
          caCerts: [pem],
        });
        return { data, reply: await talk(conn, data) };
      }),
    );
    for (const { data, reply } of replies) assert.deepEqual(reply, data);
    const end = await keep.done();
    staller.close();
    assert.equal(end.code, 0, end.stderr);
    assert.match(end.stdout, new RegExp(`^served ${clients + 2}, at most \\d+ at once\\n$`));
  });
});

/** A Deno TLS server on loopback: answers each client "peer got: " + what it sent. */
function startPeer(chain: { certPem: string; keyPem: string }): {
  port: number;
  heard: string[];
  close(): void;
} {
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: chain.certPem,
    key: chain.keyPem,
  });
  const heard: string[] = [];
  (async () => {
    for await (const conn of listener) {
      (async () => {
        try {
          const text = new TextDecoder().decode(await readAll(conn));
          heard.push(text);
          await conn.write(new TextEncoder().encode(`peer got: ${text}`));
        } catch {
          // a client that did not trust us
        } finally {
          try {
            conn.close();
          } catch {
            // already closed
          }
        }
      })();
    }
  })().catch(() => {});
  return { port: listener.addr.port, heard, close: () => listener.close() };
}

function connectEntry(port: number, extra: string): string {
  return '[[files]]\nkind = "connect"\nprot = "tls"\nname = "peer"\nhost = "localhost"\n' +
    `port = ${port}\n${extra}`;
}

Deno.test("tls connect: the peer is verified with the entry's ca; a wrong or no ca exits 76", async () => {
  const ca = await makeTestCa("enarx test CA");
  const other = await makeTestCa("another CA");
  const peer = startPeer(await ca.issue("localhost"));
  try {
    await withDir(async (dir) => {
      await Deno.writeTextFile(join(dir, "ca.pem"), ca.certPem);
      const good = join(dir, "good.toml");
      await Deno.writeTextFile(good, STDIO + connectEntry(peer.port, 'ca = "ca.pem"\n'));
      const r = await enarx(["run", "--wasmcfgfile", good, SOCKETS, "connect", "peer", "hi tls"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "peer got: hi tls");
      assert.deepEqual(peer.heard, ["hi tls"]);

      const wrong = join(dir, "wrong.toml");
      const inline = `ca = """${other.certPem}"""\n`;
      for (const [file, extra] of [[wrong, inline], [join(dir, "none.toml"), ""]]) {
        await Deno.writeTextFile(file, STDIO + connectEntry(peer.port, extra));
        const bad = await enarx(["run", "--wasmcfgfile", file, SOCKETS, "connect", "peer", "x"]);
        assert.equal(bad.code, 76, bad.stderr);
        assert.match(
          bad.stderr,
          new RegExp(
            `^enarx: The TLS handshake with localhost:${peer.port} for \\[\\[files\\]\\] "peer" ` +
              `failed: .*certificate.*; check the peer's certificate, or add its CA with ca = `,
          ),
        );
        assert.equal(bad.stderr.trim().split("\n").length, 1, bad.stderr);
        assert.equal(bad.stdout, "");
      }
      assert.deepEqual(peer.heard, ["hi tls"], "the guest sent to a peer it should not trust");
    });
  } finally {
    peer.close();
  }
});

Deno.test("tls connect with mtls: a server that requires a client certificate sees the keep's", async () => {
  const ca = await makeTestCa("enarx test CA");
  const chain = await ca.issue("localhost");
  const seen: string[] = [];
  const server = tls.createServer(
    { cert: chain.certPem, key: chain.keyPem, requestCert: true, rejectUnauthorized: false },
    (socket) => {
      const raw = socket.getPeerCertificate(false)?.raw;
      if (!raw) {
        socket.destroy(); // required: no certificate, no service
        return;
      }
      x509.sha256Fingerprint(new Uint8Array(raw)).then((fp) => {
        seen.push(fp);
        socket.end(`hello client ${fp.slice(0, 16)}`);
      });
    },
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  try {
    await withDir(async (dir) => {
      const toml = join(dir, "Enarx.toml");
      const extra = `ca = ["""${ca.certPem}"""]\nmtls = true\n`;
      await Deno.writeTextFile(toml, STDIO + connectEntry(port, extra));
      const r = await enarx(["run", "--wasmcfgfile", toml, SOCKETS, "connect", "peer", "x"]);
      assert.equal(r.code, 0, r.stderr);
      const printed = /connected to localhost:\d+ \(tls, certificate sha256 ([0-9a-f]{64})\)/
        .exec(r.stderr)?.[1];
      assert.ok(printed, r.stderr);
      assert.deepEqual(seen, [printed]);
      assert.equal(r.stdout, `hello client ${printed.slice(0, 16)}`);
    });
  } finally {
    server.close();
  }
});

Deno.test("tls sockets: a port in use and a host that does not resolve are the tcp errors (69); a missing ca is 66", async () => {
  await withDir(async (dir) => {
    using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = taken.addr.port;
    const inUse = join(dir, "in_use.toml");
    await Deno.writeTextFile(inUse, STDIO + LISTEN.replace("port = 0", `port = ${port}`));
    const a = await enarx(["run", "--wasmcfgfile", inUse, SOCKETS, "echo", "web", "1"]);
    assert.equal(a.code, 69, a.stderr);
    assert.match(
      a.stderr,
      new RegExp(
        `^enarx: Cannot listen on 127\\.0\\.0\\.1:${port} for \\[\\[files\\]\\] "web": ` +
          `port ${port} is already in use; stop what uses it or choose another with --listen web=`,
      ),
    );
    const unresolved = join(dir, "unresolved.toml");
    await Deno.writeTextFile(
      unresolved,
      STDIO + connectEntry(443, "").replace('"localhost"', '"no-such-host.invalid"'),
    );
    const b = await enarx(["run", "--wasmcfgfile", unresolved, SOCKETS, "connect", "peer", "x"]);
    assert.equal(b.code, 69, b.stderr);
    assert.match(
      b.stderr,
      /^enarx: Cannot resolve host "no-such-host\.invalid" of \[\[files\]\] "peer"/,
    );
    assert.equal(b.stderr.trim().split("\n").length, 1, b.stderr);
    const noCa = join(dir, "no_ca.toml");
    await Deno.writeTextFile(noCa, STDIO + connectEntry(443, 'ca = "missing.pem"\n'));
    const c = await enarx(["run", "--wasmcfgfile", noCa, SOCKETS, "connect", "peer", "x"]);
    assert.equal(c.code, 66, c.stderr);
    assert.ok(
      c.stderr.startsWith(
        `enarx: Cannot read ca "${join(dir, "missing.pem")}" of [[files]] "peer"`,
      ),
      c.stderr,
    );
  });
});

/** The names in `dir`, sorted. */
function names(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

/** Waits until `dir` holds `n` entries starting with "enarx-" (the run makes them one by one). */
async function runDirs(dir: string, n: number): Promise<string[]> {
  for (let i = 0; i < 200; i++) {
    const found = names(dir).filter((name) => name.startsWith("enarx-"));
    if (found.length >= n) return found;
    await new Promise((r) => setTimeout(r, 50));
  }
  return names(dir);
}

Deno.test("tls sockets: a run killed with SIGKILL leaves its private directories; the next run removes them, not a live run's", async () => {
  await withDir(async (dir) => {
    const toml = join(dir, "Enarx.toml");
    await Deno.writeTextFile(toml, STDIO + LISTEN);
    const tmp = join(dir, "tmp");
    await Deno.mkdir(tmp);
    const env = { TMPDIR: tmp };
    const killed = await startKeep(["--wasmcfgfile", toml, SOCKETS, "echo", "web", "1"], { env });
    const left = await runDirs(tmp, 2);
    assert.deepEqual(left.map((n) => n.replace(/[^-]+$/, "")), ["enarx-sockets-", "enarx-tls-"]);
    assert.ok(names(join(tmp, left[1])).includes("listen-0.sock"));
    killed.child.kill("SIGKILL");
    assert.equal((await killed.child.status).signal, "SIGKILL");
    await killed.done();
    assert.deepEqual(names(tmp), left, "the killed run removed its directories itself");

    const alive = await startKeep(["--wasmcfgfile", toml, SOCKETS, "echo", "web", "1"], { env });
    const all = await runDirs(tmp, 4);
    const mine = all.filter((n) => !left.includes(n));
    assert.equal(mine.length, 2, all.join(" "));
    // Look-alikes that are not a run's: a link, a folder others may enter, one holding a file.
    Deno.symlinkSync(join(tmp, left[1]), join(tmp, "enarx-tls-link"));
    Deno.mkdirSync(join(tmp, "enarx-tls-open"), { mode: 0o755 });
    Deno.writeTextFileSync(join(tmp, "enarx-tls-open", "owner.lock"), "");
    Deno.chmodSync(join(tmp, "enarx-tls-open"), 0o755);
    Deno.mkdirSync(join(tmp, "enarx-tls-kept"), { mode: 0o700 });
    Deno.writeTextFileSync(join(tmp, "enarx-tls-kept", "owner.lock"), "");
    Deno.writeTextFileSync(join(tmp, "enarx-tls-kept", "notes.txt"), "not a socket");
    const foreign = ["enarx-tls-kept", "enarx-tls-link", "enarx-tls-open"];

    // The next run with tls sockets sweeps: the killed run's go, the live run's and the rest stay.
    const next = await startKeep(["--wasmcfgfile", toml, SOCKETS, "echo", "web", "0"], { env });
    const after = await next.done();
    assert.equal(after.code, 0, after.stderr);
    assert.deepEqual(names(tmp), [...mine, ...foreign].sort());
    assert.deepEqual(names(join(tmp, "enarx-tls-kept")), ["notes.txt", "owner.lock"]);

    // The live run was not disturbed: it still serves, then removes its own.
    const pem = await presentedCertificate(alive.port);
    assert.equal(await pemFingerprint(pem), alive.fingerprint);
    const end = await alive.done();
    assert.equal(end.code, 0, end.stderr);
    assert.deepEqual(names(tmp), foreign);
  });
});

/** Whether a client trusting `caCerts` (with `client`'s certificate) gets "ping" echoed at `port`. */
async function echoes(
  port: number,
  options: { caCerts: string[]; client?: { certPem: string; keyPem: string } },
): Promise<boolean> {
  let conn: Deno.TlsConn | undefined;
  const { caCerts, client } = options;
  try {
    conn = client === undefined
      ? await Deno.connectTls({ hostname: "localhost", port, caCerts })
      : await Deno.connectTls({
        hostname: "localhost",
        port,
        caCerts,
        cert: client.certPem,
        key: client.keyPem,
      });
    await conn.handshake();
    const reply = await talk(conn, new TextEncoder().encode("ping"));
    return new TextDecoder().decode(reply) === "ping";
  } catch {
    return false; // refused in the handshake, or cut off after it (TLS 1.3 checks the client late)
  } finally {
    try {
      conn?.close();
    } catch { /* closed by talk */ }
  }
}

Deno.test("tls listen with mtls: only clients with a certificate from the entry's ca reach the guest", async () => {
  const clients = await makeTestCa("the clients' CA");
  const stranger = await makeTestCa("another CA");
  const good = await clients.issue("alice", "client");
  const other = await stranger.issue("mallory", "client");
  await withDir(async (dir) => {
    await Deno.writeTextFile(join(dir, "clients.pem"), clients.certPem);
    const toml = join(dir, "Enarx.toml");
    await Deno.writeTextFile(toml, STDIO + LISTEN + 'ca = "clients.pem"\nmtls = true\n');
    const keep = await startKeep(["--wasmcfgfile", toml, SOCKETS, "echo", "web", "2"]);
    const caCerts = [await certificateOf(keep.port)];
    assert.equal(await echoes(keep.port, { caCerts }), false, "no certificate");
    assert.equal(
      await echoes(keep.port, { caCerts, client: other }),
      false,
    );
    assert.equal(await echoes(keep.port, { caCerts, client: good }), true);
    assert.equal(await echoes(keep.port, { caCerts, client: good }), true);
    const end = await keep.done();
    assert.equal(end.code, 0, end.stderr);
    assert.equal(end.stdout, "served 2\n", "a refused client reached the guest");
  });
});

/** The certificate the keep at `port` serves (read from a handshake that then fails). */
async function certificateOf(port: number): Promise<string> {
  const { promise, resolve, reject } = Promise.withResolvers<string>();
  const socket = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false });
  socket.once("secureConnect", () => {
    resolve(
      new x509.X509Certificate(new Uint8Array(socket.getPeerCertificate(false).raw)).toString(
        "pem",
      ),
    );
    socket.destroy();
  });
  socket.once("error", reject);
  return await promise;
}

Deno.test("tls listen: ALPN offers http/1.1 only; a client that offers none is served too", async () => {
  await withDir(async (dir) => {
    const toml = join(dir, "Enarx.toml");
    await Deno.writeTextFile(toml, STDIO + LISTEN);
    const keep = await startKeep(["--wasmcfgfile", toml, SOCKETS, "echo", "web", "2"]);
    const pem = await presentedCertificate(keep.port); // guest connection 1
    const h2Only = await Deno.connectTls({
      hostname: "localhost",
      port: keep.port,
      caCerts: [pem],
      alpnProtocols: ["h2"],
    });
    await assert.rejects(() => h2Only.handshake(), /NoApplicationProtocol/);
    h2Only.close();
    const offered = await Deno.connectTls({
      hostname: "localhost",
      port: keep.port,
      caCerts: [pem],
      alpnProtocols: ["h2", "http/1.1"],
    });
    assert.equal((await offered.handshake()).alpnProtocol, "http/1.1");
    offered.close(); // guest connection 2
    const end = await keep.done();
    assert.equal(end.code, 0, end.stderr);
    assert.equal(end.stdout, "served 2\n");
  });
});
