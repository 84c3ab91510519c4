import assert from "node:assert/strict";
import {
  connectPinned,
  generateTlsKey,
  importTlsKey,
  keepHostname,
  makeKeepCertificate,
  pemFromDer,
  pinningTrustProblem,
} from "../../runtime/protocol/keep_tls.ts";
import { http1Request } from "../../runtime/client/http1_client.ts";
import { EnarxError } from "../../runtime/errors.ts";
import * as x509 from "../../runtime/x509.ts";

const KEEP = "k7f3a";

/** Serves HTTPS with `cert`/`key` PEM until disposed; the handler defaults to "hello". */
function serve(
  cert: string,
  key: string,
  handler: (req: Request) => Response | Promise<Response> = () => new Response("hello"),
) {
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, cert, key, signal: ac.signal, onListen() {} },
    handler,
  );
  return {
    port: (server.addr as Deno.NetAddr).port,
    async [Symbol.asyncDispose]() {
      ac.abort();
      await server.finished;
    },
  };
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  return await new Response(stream).text();
}

Deno.test("keep tls: the keep's own certificate for the sealed key passes the client's pin", async () => {
  const client = await generateTlsKey();
  const anchorPem = await makeKeepCertificate(client, KEEP, { serial: "01" });
  // wasmldr's side: it only has the PKCS#8 bytes that were sealed to it.
  const inKeep = await importTlsKey(client.pkcs8);
  const keepPem = await makeKeepCertificate(inKeep, KEEP);
  assert.notEqual(keepPem, anchorPem);
  await using server = serve(keepPem, pemFromDer(inKeep.pkcs8, "PRIVATE KEY"));
  const tls = await connectPinned("127.0.0.1", server.port, { keepId: KEEP, anchorPem });
  const res = await http1Request(tls, { method: "GET", path: "/", host: keepHostname(KEEP) });
  assert.equal(res.status, 200);
  assert.equal(await readAll(res.body), "hello");
});

Deno.test("keep tls: a certificate with the same names for another key is refused", async () => {
  const client = await generateTlsKey();
  const anchorPem = await makeKeepCertificate(client, KEEP, { serial: "01" });
  const impostor = await generateTlsKey();
  const fakePem = await makeKeepCertificate(impostor, KEEP, { serial: "01" });
  await using server = serve(fakePem, pemFromDer(impostor.pkcs8, "PRIVATE KEY"));
  await assert.rejects(
    connectPinned("127.0.0.1", server.port, { keepId: KEEP, anchorPem }),
    (e: unknown) => e instanceof EnarxError && e.code === "keep-cert-mismatch",
  );
});

Deno.test("keep tls: the right key under another keep's name is refused", async () => {
  const client = await generateTlsKey();
  const anchorPem = await makeKeepCertificate(client, KEEP);
  const otherName = await makeKeepCertificate(client, "other");
  await using server = serve(otherName, pemFromDer(client.pkcs8, "PRIVATE KEY"));
  await assert.rejects(
    connectPinned("127.0.0.1", server.port, { keepId: KEEP, anchorPem }),
    (e: unknown) => e instanceof EnarxError && e.code === "keep-cert-mismatch",
  );
});

Deno.test("keep tls: nothing listening is keep-unreachable; a bad keep id is refused", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const client = await generateTlsKey();
  const anchorPem = await makeKeepCertificate(client, KEEP);
  await assert.rejects(
    connectPinned("127.0.0.1", port, { keepId: KEEP, anchorPem }),
    (e: unknown) => e instanceof EnarxError && e.code === "keep-unreachable",
  );
  assert.throws(() => keepHostname("a.b"), (e: unknown) => e instanceof EnarxError);
  assert.throws(() => keepHostname(""), (e: unknown) => e instanceof EnarxError);
  await assert.rejects(
    importTlsKey(new Uint8Array([1, 2, 3])),
    (e: unknown) => e instanceof EnarxError && e.code === "tls-key-invalid",
  );
});

Deno.test("http1 client: POST body, streamed chunked reply arrives piece by piece", async () => {
  const client = await generateTlsKey();
  const pem = await makeKeepCertificate(client, KEEP);
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  let received = "";
  let auth = "";
  await using server = serve(pem, pemFromDer(client.pkcs8, "PRIVATE KEY"), async (req) => {
    received = await req.text();
    auth = req.headers.get("authorization") ?? "";
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(new TextEncoder().encode("first;"));
        await gate;
        controller.enqueue(new TextEncoder().encode("second"));
        controller.close();
      },
    });
    return new Response(body, { status: 200, headers: { "content-type": "text/plain" } });
  });
  const tls = await connectPinned("127.0.0.1", server.port, { keepId: KEEP, anchorPem: pem });
  const res = await http1Request(tls, {
    method: "POST",
    path: "/v1/workload",
    host: keepHostname(KEEP),
    headers: { authorization: "Bearer abc" },
    body: new TextEncoder().encode("x".repeat(200_000)),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/plain");
  const reader = res.body.getReader();
  // The first piece arrives while the server still holds the second back.
  const first = await reader.read();
  assert.equal(new TextDecoder().decode(first.value), "first;");
  release();
  let rest = "";
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    rest += new TextDecoder().decode(value);
  }
  assert.equal(rest, "second");
  assert.equal(received.length, 200_000);
  assert.equal(auth, "Bearer abc");
});

Deno.test("http1 client: content-length reply and error statuses", async () => {
  const client = await generateTlsKey();
  const pem = await makeKeepCertificate(client, KEEP);
  await using server = serve(
    pem,
    pemFromDer(client.pkcs8, "PRIVATE KEY"),
    () => new Response(new Uint8Array([1, 2, 3]), { status: 401 }),
  );
  const tls = await connectPinned("127.0.0.1", server.port, { keepId: KEEP, anchorPem: pem });
  const res = await http1Request(tls, { method: "POST", path: "/", host: "h" });
  assert.equal(res.status, 401);
  assert.equal(res.headers.get("content-length"), "3");
  assert.deepEqual(
    new Uint8Array(await new Response(res.body).arrayBuffer()),
    new Uint8Array([1, 2, 3]),
  );
});

/** An in-memory stream that replies with fixed bytes, in pieces. */
function scripted(reply: string, pieceSize = 7) {
  const bytes = new TextEncoder().encode(reply);
  let at = 0;
  let written = "";
  let closed = false;
  return {
    read(p: Uint8Array): Promise<number | null> {
      if (at >= bytes.length) return Promise.resolve(null);
      const n = Math.min(pieceSize, p.length, bytes.length - at);
      p.set(bytes.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
    write(p: Uint8Array): Promise<number> {
      written += new TextDecoder().decode(p);
      return Promise.resolve(p.length);
    },
    close() {
      closed = true;
    },
    written: () => written,
    closed: () => closed,
  };
}

Deno.test("http1 client: chunked bodies with extensions and trailers, 100 Continue, read to close", async () => {
  const chunked = scripted(
    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n" +
      "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
  );
  const res = await http1Request(chunked, {
    method: "POST",
    path: "/p",
    host: "h",
    body: new Uint8Array([1]),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("x-a"), "1, 2");
  assert.equal(await readAll(res.body), "hello world");
  assert.ok(chunked.closed());
  assert.match(chunked.written(), /^POST \/p HTTP\/1\.1\r\nhost: h\r\ncontent-length: 1\r\n/);

  const untilClose = scripted("HTTP/1.0 200 OK\r\n\r\nall of it");
  const res2 = await http1Request(untilClose, { method: "GET", path: "/", host: "h" });
  assert.equal(await readAll(res2.body), "all of it");
});

Deno.test("http1 client: malformed replies are http-protocol errors, never hangs", async () => {
  const bad = [
    "SMTP ready\r\n\r\n",
    "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    "HTTP/1.1 200 OK\r\n", // closed in the headers
  ];
  for (const reply of bad) {
    await assert.rejects(
      http1Request(scripted(reply), { method: "GET", path: "/", host: "h" }),
      (e: unknown) => e instanceof EnarxError && e.code === "http-protocol",
      JSON.stringify(reply),
    );
  }
  const badBodies = [
    "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhelloXX",
  ];
  for (const reply of badBodies) {
    const res = await http1Request(scripted(reply), { method: "GET", path: "/", host: "h" });
    await assert.rejects(
      readAll(res.body),
      (e: unknown) => e instanceof EnarxError && e.code === "http-protocol",
      JSON.stringify(reply),
    );
  }
  await assert.rejects(
    http1Request(scripted("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n"), {
      method: "GET",
      path: "/",
      host: "h",
    }),
    (e: unknown) => e instanceof EnarxError && e.code === "http-protocol",
  );
});

Deno.test("keep tls: a trust store that could vouch for an impostor keep is named, a plain one is fine", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  assert.equal(pinningTrustProblem(env({})), undefined);
  assert.equal(pinningTrustProblem(env({ DENO_TLS_CA_STORE: "mozilla" })), undefined);
  assert.match(
    pinningTrustProblem(env({ DENO_TLS_CA_STORE: "mozilla, system" }))!,
    /DENO_TLS_CA_STORE is "mozilla, system"/,
  );
  assert.match(
    pinningTrustProblem(env({ DENO_CERT: "/etc/ca.pem" }))!,
    /DENO_CERT is "\/etc\/ca.pem"/,
  );
});

Deno.test("enarx deploy refuses to run with DENO_CERT set, before contacting the keepmgr", async () => {
  // Nothing listens on this keepmgr: reaching it would be keepmgr-unreachable (69), not 78.
  const out = await new Deno.Command(new URL("../../enarx", import.meta.url).pathname, {
    args: ["deploy", "--json", "--keepmgr", "https://127.0.0.1:9", "examples/hello.wat"],
    cwd: new URL("../../", import.meta.url).pathname,
    env: { DENO_CERT: "/nonexistent/ca.pem" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 78, new TextDecoder().decode(out.stderr));
  const record = JSON.parse(new TextDecoder().decode(out.stdout));
  assert.equal(record.error.code, "tls-trust-store");
  assert.deepEqual(record.steps, []);
});

Deno.test("keep tls: the keep's certificate reads back in an independent X.509 parser, signed by its key", async () => {
  const key = await generateTlsKey();
  const id = "0123456789abcdef0123456789abcdef";
  const now = new Date("2026-12-06T12:00:00Z");
  const pem = await makeKeepCertificate(key, id, { serial: "01ab", now });
  const cert = new x509.X509Certificate(pem);
  assert.equal(cert.subject, `CN=enarx-keep-${id}`);
  assert.equal(cert.issuer, cert.subject);
  assert.equal(cert.serialNumber, "01ab");
  assert.equal(cert.notBefore.toISOString(), "2026-12-05T12:00:00.000Z");
  assert.equal(cert.notAfter.toISOString(), "2026-12-07T12:00:00.000Z");
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension)!;
  assert.deepEqual(san.names.toJSON(), [{ type: "dns", value: `${id}.keep.enarx.invalid` }]);
  assert.equal(cert.signatureAlgorithm.name, "ECDSA");
  assert.ok(await cert.verify({ publicKey: key.keys.publicKey, signatureOnly: true }, crypto));
  // Another key's signature would not verify.
  const other = await generateTlsKey();
  assert.ok(!await cert.verify({ publicKey: other.keys.publicKey, signatureOnly: true }, crypto));
});
