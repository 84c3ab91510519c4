/**
 * tests/workloads/rust/tokio_http (tokio's current-thread runtime on the
 * listener of an Enarx.toml `listen` entry, taken from its fd in FD_NAMES) as
 * the guest of the real `enarx run`: a real async runtime for wasm32-wasip1
 * on enarx's sockets, with non-blocking fds and one poll_oneoff over every
 * connection. Many concurrent keep-alive clients, clients that leave
 * mid-request or send garbage, and I/O errors that reach the workload as
 * error codes (a peer that left while it wrote) instead of stopping it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { enarx, ensureLibwasmtime, workload } from "../../workloads/helpers.ts";
import {
  concurrentKeepAliveClients,
  get,
  leaveMidRequest,
  RawClient,
  REFUSED_REQUESTS,
  refusedRequests,
} from "../../workloads/http_client.ts";
import {
  type KeepProcess,
  pemFingerprint,
  presentedCertificate,
  startKeep,
} from "../../workloads/tls_helpers.ts";

ensureLibwasmtime();
const TOKIO = workload("tokio_http-rs.wasm");
const HELLO = "hello from the keep\n";
const STDIO = '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n';

/** Enarx.toml with the listen entry "web" on a free loopback port. */
function toml(prot: "tcp" | "tls"): string {
  return STDIO +
    `[[files]]\nkind = "listen"\nprot = "${prot}"\nname = "web"\naddr = "127.0.0.1"\nport = 0\n`;
}
const HEADERS = "GET / HTTP/1.1\r\nX: ";
const LINE = /"web" listening on 127\.0\.0\.1:(\d+)\n/;

/** Runs tokio_http under `enarx run` with a listen entry (tcp unless `prot`), serving N connections. */
async function withServer<T>(
  n: number,
  fn: (keep: KeepProcess) => Promise<T>,
  options: { prot?: "tcp" | "tls"; enarxArgs?: string[] } = {},
): Promise<T> {
  const prot = options.prot ?? "tcp";
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "Enarx.toml");
    await Deno.writeTextFile(path, toml(prot));
    const args = [...options.enarxArgs ?? [], "--wasmcfgfile", path, TOKIO, "web", String(n)];
    const keep = await startKeep(args, prot === "tcp" ? { line: LINE } : {});
    try {
      return await fn(keep);
    } catch (error) {
      keep.child.kill("SIGTERM");
      await keep.done();
      throw error;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("tokio http: 200 concurrent keep-alive clients, several requests each (some pipelined), all answered", async () => {
  const clients = 200;
  await withServer(clients, async (keep) => {
    await concurrentKeepAliveClients(keep.port, clients, HELLO);
    const end = await keep.done();
    assert.equal(end.code, 0, end.stderr);
    assert.equal(
      end.stdout,
      `served ${
        clients * 6
      } requests on ${clients} connections, at most ${clients} at once, 0 refused, 0 failed\n`,
    );
  });
});

/** Clients that leave mid-request or send garbage, each on its own connection; returns how many. */
async function misbehave(port: number): Promise<number> {
  await leaveMidRequest(port);
  const cases: [string, number][] = [
    ...REFUSED_REQUESTS,
    // Exactly the server's 8 KiB for headers, all read: its close is a FIN, not a reset.
    [HEADERS + "y".repeat(8192 - HEADERS.length), 431],
  ];
  await refusedRequests(port, cases);
  return 2 + cases.length;
}

Deno.test("tokio http: clients that leave mid-request or send garbage do not stop it; the others are served", async () => {
  await withServer(10, async (keep) => {
    const steady = await RawClient.open(keep.port);
    await steady.send(get("/echo?before"));
    assert.equal((await steady.reply())?.body, "before");
    const bad = await misbehave(keep.port);
    await steady.send(get("/echo?after"));
    assert.equal((await steady.reply())?.body, "after");
    await steady.send(get("/nowhere") + "DELETE / HTTP/1.1\r\n\r\n" + "HEAD / HTTP/1.1\r\n\r\n");
    assert.deepEqual([(await steady.reply())?.status, (await steady.reply())?.status], [404, 405]);
    const head = await steady.reply(true);
    assert.equal(head?.status, 200);
    assert.match(head!.head, new RegExp(`\\r\\nContent-Length: ${HELLO.length}`));
    steady.close();
    const response = await fetch(`http://127.0.0.1:${keep.port}/echo?fetch`, {
      headers: { connection: "close" },
    });
    assert.equal(await response.text(), "fetch");
    const end = await keep.done();
    assert.equal(end.code, 0, end.stderr);
    assert.equal(bad + 2, 10);
    // Answered: before, after, 404, 405, HEAD, fetch; refused: the six garbage cases, 404, 405.
    // (How many were open at once depends on when the server saw each leaver go.)
    assert.match(
      end.stdout,
      /^served 6 requests on 10 connections, at most \d+ at once, 8 refused, 0 failed\n$/,
    );
  });
});

Deno.test("tokio http: a write to a client that left is an error code in the workload, not a trap; it goes on", async () => {
  await withServer(3, async (keep) => {
    // 32 MiB asked for, then gone before reading any: the guest's writes meet the reset.
    const leaver = await RawClient.open(keep.port);
    await leaver.send(get(`/bytes?${32 << 20}`));
    leaver.close();
    // Served after it, on a new connection: the large answer is read whole.
    const next = await RawClient.open(keep.port);
    await next.send(get(`/bytes?${4 << 20}`));
    const big = await next.reply();
    assert.equal(big?.body, "x".repeat(4 << 20));
    next.close();
    const last = await RawClient.open(keep.port);
    await last.send(get("/echo?last", "Connection: close\r\n"));
    assert.equal((await last.reply())?.body, "last");
    last.close();
    const end = await keep.done();
    assert.equal(end.code, 0, end.stderr);
    assert.match(
      end.stderr,
      /tokio_http: connection 1 ended by an error: [^\n]* \((BrokenPipe|ConnectionReset)\)\n/,
    );
    assert.match(
      end.stdout,
      /^served 3 requests on 3 connections, at most [12] at once, 0 refused, 1 failed\n$/,
    );
  });
});

Deno.test('tokio http behind prot = "tls": fetch trusting the printed certificate gets the right bodies', async () => {
  await withServer(21, async (keep) => {
    const pem = await presentedCertificate(keep.port);
    assert.equal(await pemFingerprint(pem), keep.fingerprint); // the one enarx printed
    const client = Deno.createHttpClient({ caCerts: [pem], http2: false });
    try {
      // Each its own connection (Connection: close), all at once: 20 tasks in the guest.
      const bodies = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
        const response = await fetch(`https://localhost:${keep.port}/echo?tls-${i}`, {
          client,
          headers: { connection: "close" },
        } as RequestInit);
        assert.equal(response.status, 200);
        return await response.text();
      }));
      assert.deepEqual(bodies, Array.from({ length: 20 }, (_, i) => `tls-${i}`));
      // Without the certificate, fetch refuses the keep (its handshake never completes, so the
      // guest never sees it: its 21 connections are presentedCertificate's and the 20 above).
      await assert.rejects(fetch(`https://localhost:${keep.port}/`));
    } finally {
      client.close();
    }
    const end = await keep.done();
    assert.equal(end.code, 0, end.stderr);
    assert.match(
      end.stdout,
      /^served 20 requests on 21 connections, at most \d+ at once, 0 refused, 0 failed\n$/,
    );
  }, { prot: "tls" });
});

Deno.test("tokio http: large answers pipelined all at once are sent as they are made, in bounded memory", async () => {
  // 40 answers of 4 MiB asked in one write: 160 MiB in all, in a guest allowed 64 MiB of memory.
  const size = 4 << 20, count = 40;
  await withServer(1, async (keep) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: keep.port });
    const ask = get(`/bytes?${size}`).repeat(count) + get("/echo?end", "Connection: close\r\n");
    await conn.write(new TextEncoder().encode(ask));
    const head = `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${size}\r\n\r\n`;
    const tail = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n" +
      "Connection: close\r\n\r\nend";
    let total = 0, last = new Uint8Array(0);
    const chunk = new Uint8Array(1 << 16);
    for (let n; (n = await conn.read(chunk)) !== null;) {
      total += n;
      last = chunk.slice(Math.max(0, n - tail.length), n);
    }
    conn.close();
    assert.equal(total, count * (head.length + size) + tail.length);
    assert.ok(new TextDecoder().decode(last).endsWith("end"));
    const end = await keep.done();
    assert.equal(end.code, 0, end.stderr);
    assert.equal(
      end.stdout,
      "served 41 requests on 1 connections, at most 1 at once, 0 refused, 0 failed\n",
    );
  }, { enarxArgs: ["--max-memory", "64MiB"] });
});

Deno.test("tokio http: a listener name not in FD_NAMES is a one-line error and exit 69, before tokio serves", async () => {
  const result = await enarx(["run", "--listen", "web=127.0.0.1:0", TOKIO, "nope", "1"]);
  assert.equal(result.code, 69, result.stderr);
  assert.match(
    result.stderr,
    /\ntokio_http: no socket named "nope" in FD_NAMES \(stdin:stdout:stderr:web\)\n$/,
  );
  assert.equal(result.stdout, "");
});
