/**
 * tests/workloads/c/http_server.c (an HTTP/1.1 server on poll()) as the guest
 * of the real `enarx run`: many concurrent keep-alive clients, clients that
 * leave mid-request or send garbage, and the same server behind `prot = "tls"`
 * reached with Deno's fetch trusting the certificate the keep printed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ensureLibwasmtime, workload } from "../workloads/helpers.ts";
import {
  concurrentKeepAliveClients,
  get,
  leaveMidRequest,
  RawClient,
  REFUSED_REQUESTS,
  refusedRequests,
} from "../workloads/http_client.ts";
import { pemFingerprint, presentedCertificate, startKeep } from "../workloads/tls_helpers.ts";

ensureLibwasmtime();
const HTTP = workload("http_server.wasm");
const HELLO = "hello from the keep\n";
const STDIO = '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n';
const TCP_LINE = /listening on 127\.0\.0\.1:(\d+)\n/;

async function withToml<T>(toml: string, fn: (path: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "Enarx.toml");
    await Deno.writeTextFile(path, toml);
    return await fn(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("http server: 200 concurrent keep-alive clients, several requests each (some pipelined), all answered", async () => {
  const clients = 200;
  const keep = await startKeep(
    ["--listen", "web=127.0.0.1:0", HTTP, "web", String(clients)],
    { line: TCP_LINE },
  );
  await concurrentKeepAliveClients(keep.port, clients, HELLO);
  const end = await keep.done();
  assert.equal(end.code, 0, end.stderr);
  assert.equal(
    end.stdout,
    `served ${
      clients * 6
    } requests on ${clients} connections, at most ${clients} at once, 0 refused\n`,
  );
});

/** Clients that misbehave, each on its own connection; returns how many connections it made. */
async function misbehave(port: number): Promise<number> {
  await leaveMidRequest(port);
  // Asks twice in one write (one read for the server), then leaves before reading.
  const rude = await RawClient.open(port);
  await rude.send(get("/echo?rude").repeat(2));
  rude.close();
  // Garbage of several kinds: each gets its error status, then the server closes.
  const cases: [string | Uint8Array, number][] = [
    ...REFUSED_REQUESTS,
    // Exactly the server's 8 KiB for headers, all read: its close is a FIN, not a reset.
    [crypto.getRandomValues(new Uint8Array(8192)).map((b) => b === 13 ? 0 : b), 431],
  ];
  await refusedRequests(port, cases);
  return 3 + cases.length;
}

Deno.test("http server: clients that leave mid-request or send garbage do not stop it; later clients are served", async () => {
  const keep = await startKeep(
    ["--listen", "web=127.0.0.1:0", HTTP, "web", "12"],
    { line: TCP_LINE },
  );
  // One client stays connected throughout, with a request answered before and after.
  const steady = await RawClient.open(keep.port);
  await steady.send(get("/echo?before"));
  assert.equal((await steady.reply())?.body, "before");
  const bad = await misbehave(keep.port);
  await steady.send(get("/echo?after"));
  assert.equal((await steady.reply())?.body, "after");
  // Other statuses that keep the connection open, then HTTP/1.0 (closes unless asked).
  await steady.send(get("/nowhere") + "DELETE / HTTP/1.1\r\n\r\n" + "HEAD / HTTP/1.1\r\n\r\n");
  const statuses = [await steady.reply(), await steady.reply()].map((r) => r?.status);
  assert.deepEqual(statuses, [404, 405]);
  const head = await steady.reply(true); // HEAD: the length of GET's body, no body
  assert.equal(head?.status, 200);
  assert.match(head!.head, new RegExp(`\\r\\nContent-Length: ${HELLO.length}`));
  await steady.send(get("/") + get("/echo"));
  assert.deepEqual([(await steady.reply())?.body, (await steady.reply())?.body], [HELLO, ""]);
  steady.close();
  const old = await RawClient.open(keep.port);
  await old.send("GET /echo?ten HTTP/1.0\r\n\r\n");
  assert.equal((await old.reply())?.body, "ten");
  assert.ok(await old.ended());
  old.close();
  const response = await fetch(`http://127.0.0.1:${keep.port}/echo?fetch`, {
    headers: { connection: "close" },
  });
  assert.equal(await response.text(), "fetch");
  const end = await keep.done();
  assert.equal(end.code, 0, end.stderr);
  assert.equal(bad + 3, 12);
  // Answered: before, the rude client's two, after, 404, 405, HEAD, two GETs, 1.0, fetch; refused: 6 + 404 + 405.
  // (How many were open at once depends on when the server saw each leaver go.)
  assert.match(
    end.stdout,
    /^served 11 requests on 12 connections, at most \d+ at once, 8 refused\n$/,
  );
});

/** Deno's fetch init also takes `client` (a type @types/node's fetch hides). */
function via(client: Deno.HttpClient): RequestInit {
  return { client } as RequestInit;
}

Deno.test('http server behind prot = "tls": fetch trusting the printed certificate gets the right bodies', async () => {
  const toml = STDIO +
    '[[files]]\nkind = "listen"\nprot = "tls"\nname = "web"\naddr = "127.0.0.1"\nport = 0\n';
  await withToml(toml, async (path) => {
    const keep = await startKeep(["--wasmcfgfile", path, HTTP, "web"]);
    try {
      const pem = await presentedCertificate(keep.port);
      assert.equal(await pemFingerprint(pem), keep.fingerprint); // the one enarx printed
      const client = Deno.createHttpClient({ caCerts: [pem] });
      try {
        const bodies = await Promise.all(Array.from({ length: 20 }, async (_, i) => {
          const response = await fetch(`https://localhost:${keep.port}/echo?tls-${i}`, via(client));
          assert.equal(response.status, 200);
          return await response.text();
        }));
        assert.deepEqual(bodies, Array.from({ length: 20 }, (_, i) => `tls-${i}`));
        const hello = await fetch(`https://localhost:${keep.port}/`, via(client));
        assert.equal(await hello.text(), HELLO);
      } finally {
        client.close();
      }
      // Without the certificate, fetch refuses the keep.
      await assert.rejects(fetch(`https://localhost:${keep.port}/`));
    } finally {
      keep.child.kill("SIGTERM");
      await keep.done();
    }
  });
});
