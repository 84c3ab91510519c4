/**
 * wasmldr in-process, with keepldr's side of the frame channel played by the
 * test and a stand-in for the platform's evidence (the report data itself),
 * so that the keep's own rules can be checked one by one.
 */
import assert from "node:assert/strict";
import https from "node:https";
import { runWasmldr, type WasmldrOutcome } from "../../runtime/keep/wasmldr.ts";
import { runWorkload } from "../../runtime/wasm/workload.ts";
import { parseEnarxConfig } from "../../runtime/wasm/config.ts";
import { FrameReader, FrameWriter } from "../../runtime/protocol/frames.ts";
import { decodeCbor, encodeCbor, readCborSequence } from "../../runtime/protocol/cbor.ts";
import {
  parseErrorResponse,
  parseServiceKeyResponse,
  parseWorkloadOutput,
} from "../../runtime/protocol/messages.ts";
import { checkServiceKeyAnswer } from "../../runtime/client/service_ca.ts";
import { prepareKeepIdentity } from "../../runtime/wasm/keep_identity.ts";
import { computeReportData, freshNonce } from "../../runtime/protocol/report_data.ts";
import { sealToKeep } from "../../runtime/protocol/sealing.ts";
import {
  connectPinned,
  generateTlsKey,
  keepHostname,
  makeKeepCertificate,
} from "../../runtime/protocol/keep_tls.ts";
import { http1Request } from "../../runtime/client/http1_client.ts";
import { LOOP_WAT, STREAMS_WAT as HELLO_WAT } from "./_deploy_fixture.ts";

const text = (s: string) => new TextEncoder().encode(s);
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** A wasmldr running in this process with its frame channel in the test's hands. */
function startKeep() {
  const down = new TransformStream<Uint8Array, Uint8Array>();
  const up = new TransformStream<Uint8Array, Uint8Array>();
  const logs: string[] = [];
  const done: Promise<WasmldrOutcome> = runWasmldr({
    input: down.readable,
    output: up.writable,
    evidence: (reportData) => Promise.resolve(reportData.slice()),
    run: runWorkload,
    parseConfig: (t) => parseEnarxConfig(t),
    log: (line) => logs.push(line),
  });
  return {
    toKeep: new FrameWriter(down.writable),
    fromKeep: new FrameReader(up.readable, { peer: "wasmldr" }),
    done,
    logs,
  };
}

async function handshake(keepId: string, sealedFor?: { keep?: string; nonce?: Uint8Array }) {
  const keep = startKeep();
  const nonce = freshNonce();
  await keep.toKeep.write({ t: "hello", v: 1, keep: keepId, backend: "nil", nonce, limits: {} });
  const evidence = await keep.fromKeep.read() as Record<string, Uint8Array>;
  assert.equal(evidence.t, "evidence");
  assert.deepEqual(evidence.evidence, await computeReportData(nonce, evidence.sealing_key));
  const tlsKey = await generateTlsKey();
  const anchorPem = await makeKeepCertificate(tlsKey, keepId, { serial: "01" });
  const token = crypto.getRandomValues(new Uint8Array(32));
  const payload = encodeCbor({
    v: 1,
    keep: sealedFor?.keep ?? keepId,
    nonce: sealedFor?.nonce ?? nonce,
    tls_key: tlsKey.pkcs8,
    token,
  });
  const sealed = await sealToKeep(evidence.sealing_key, payload, { keepId, nonce });
  await keep.toKeep.write({ t: "sealed-key", enc: sealed.enc, ct: sealed.ct });
  return { ...keep, nonce, anchorPem, token };
}

async function upload(
  port: number,
  keepId: string,
  anchorPem: string,
  token: Uint8Array,
  module: string,
) {
  const tls = await connectPinned("127.0.0.1", port, { keepId, anchorPem });
  return await http1Request(tls, {
    method: "POST",
    path: "/v1/workload",
    host: keepHostname(keepId),
    headers: { authorization: `Bearer ${hex(token)}` },
    body: encodeCbor({
      v: 1,
      module: text(module),
      config: null,
      args: [],
      env: {},
      stdin: text(""),
    }),
  });
}

/** An uploader that skips certificate checks, as the untrusted host could. */
function hostileUpload(
  port: number,
  authorization?: string,
): Promise<{ status: number; code: string }> {
  const body = encodeCbor({
    v: 1,
    module: text("(module)"),
    config: null,
    args: [],
    env: {},
    stdin: text(""),
  });
  return hostileRequest(port, {
    method: "POST",
    path: "/v1/workload",
    headers: authorization ? { authorization } : {},
    body,
  });
}

Deno.test("wasmldr: serves one workload to the token holder; the host's uploads get 401", async () => {
  const keep = await handshake("k1");
  const listening = await keep.fromKeep.read() as { t: string; port: number };
  assert.equal(listening.t, "listening");
  // The host connects first, with no token and with a guessed one.
  assert.deepEqual(await hostileUpload(listening.port), { status: 401, code: "unauthorized" });
  assert.deepEqual(await hostileUpload(listening.port, `Bearer ${"0".repeat(64)}`), {
    status: 401,
    code: "unauthorized",
  });

  const res = await upload(listening.port, "k1", keep.anchorPem, keep.token, HELLO_WAT);
  assert.equal(res.status, 200);
  const items = [];
  for await (const v of readCborSequence(res.body)) items.push(parseWorkloadOutput(v));
  const out = items.filter((i) => i.t === "stdout").map((i) =>
    new TextDecoder().decode((i as { data: Uint8Array }).data)
  ).join("");
  const err = items.filter((i) => i.t === "stderr").map((i) =>
    new TextDecoder().decode((i as { data: Uint8Array }).data)
  ).join("");
  assert.equal(out, "out\n");
  assert.equal(err, "err\n");
  assert.deepEqual(items.at(-1), { t: "exit", status: 7, reason: "exit" });
  assert.deepEqual(await keep.fromKeep.read(), { t: "running" });
  assert.deepEqual(await keep.fromKeep.read(), { t: "exited", status: 7, reason: "exit" });
  assert.equal((await keep.done).exitStatus, 0);
  assert.equal(await keep.fromKeep.read(), null);
});

Deno.test("wasmldr: a second upload is 409; a client that goes away stops the workload", async () => {
  const keep = await handshake("k2");
  const { port } = await keep.fromKeep.read() as { port: number };
  const res = await upload(port, "k2", keep.anchorPem, keep.token, LOOP_WAT);
  assert.equal(res.status, 200);
  assert.deepEqual(await keep.fromKeep.read(), { t: "running" });
  assert.deepEqual(await hostileUpload(port, `Bearer ${hex(keep.token)}`), {
    status: 409,
    code: "workload-taken",
  });
  await res.body.cancel();
  const exited = await keep.fromKeep.read() as { t: string; reason: string };
  assert.equal(exited.t, "exited");
  assert.equal(exited.reason, "timeout");
  await keep.done;
});

Deno.test("wasmldr: a sealed key made for another keep or nonce is refused", async () => {
  for (const other of [{ keep: "k9" }, { nonce: freshNonce() }]) {
    const keep = await handshake("k3", other);
    const frame = await keep.fromKeep.read() as { t: string; code: string };
    assert.equal(frame.t, "error");
    assert.equal(frame.code, "sealed-key-mismatch");
    assert.notEqual((await keep.done).exitStatus, 0);
  }
});

Deno.test("wasmldr: another protocol version gets a version error; a closed channel ends it", async () => {
  const keep = startKeep();
  await keep.toKeep.write({
    t: "hello",
    v: 2,
    keep: "k4",
    backend: "nil",
    nonce: freshNonce(),
    limits: {},
  });
  const frame = await keep.fromKeep.read() as { t: string; code: string };
  assert.deepEqual([frame.t, frame.code], ["error", "version"]);
  await keep.done;

  const keep2 = await handshake("k5");
  await keep2.fromKeep.read(); // listening
  await keep2.toKeep.close();
  assert.notEqual((await keep2.done).exitStatus, 0);
});

/** Any request the untrusted host can make without the token: method, path, headers, body. */
function hostileRequest(
  port: number,
  request: { method: string; path: string; headers: Record<string, string>; body: Uint8Array },
): Promise<{ status: number; code: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: "127.0.0.1",
      port,
      method: request.method,
      path: request.path,
      rejectUnauthorized: false,
      headers: request.headers,
    }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => chunks.push(new Uint8Array(c)));
      res.on("end", () => {
        const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
        let at = 0;
        for (const c of chunks) {
          all.set(c, at);
          at += c.length;
        }
        let code: string;
        try {
          code = parseErrorResponse(decodeCbor(all)).error.code;
        } catch (error) {
          code = `not a CBOR error map (${all.length} bytes): ${error}`;
        }
        resolve({ status: res.statusCode ?? 0, code });
      });
    });
    req.on("error", reject);
    req.end(request.body);
  });
}

Deno.test("wasmldr: 60 seeded random requests without the token get CBOR errors; the real client still gets its run", async () => {
  const keep = await handshake("k6");
  const { port } = await keep.fromKeep.read() as { port: number };
  // xorshift32 with a fixed seed: a failure names the request that caused it.
  let state = 0x2545f491;
  const next = (n: number) => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % n;
  };
  const methods = ["GET", "POST", "PUT", "DELETE", "PATCH"];
  const paths = ["/v1/workload", "/", "/v1", "/v1/workload/x", "/v2/workload", "/%zz", "/v1/keeps"];
  const auths = [undefined, "Bearer", "Bearer zz", `Bearer ${"0".repeat(64)}`, "Basic abc"];
  for (let i = 0; i < 60; i++) {
    const body = crypto.getRandomValues(new Uint8Array(next(2048)));
    if (next(2) === 0) {
      body.set(encodeCbor({ v: 1, module: text("(module)") }).slice(0, body.length));
    }
    const auth = auths[next(auths.length)];
    const request = {
      method: methods[next(methods.length)],
      path: paths[next(paths.length)],
      headers: {
        // Explicit, so that every method frames its body the same way.
        "content-length": String(body.length),
        "content-type": next(2) === 0 ? "application/cbor" : "text/plain",
        ...(auth === undefined ? {} : { authorization: auth }),
      },
      body,
    };
    const got = await hostileRequest(port, request);
    assert.ok(
      got.status >= 400 && got.status < 500 && !got.code.startsWith("not a CBOR"),
      `request ${i} ${request.method} ${request.path} ${auth}: ${got.status} ${got.code}`,
    );
  }
  // None of that touched the keep: the client's one upload runs as usual.
  const res = await upload(port, "k6", keep.anchorPem, keep.token, HELLO_WAT);
  assert.equal(res.status, 200);
  const items = [];
  for await (const v of readCborSequence(res.body)) items.push(parseWorkloadOutput(v));
  assert.deepEqual(items.at(-1), { t: "exit", status: 7, reason: "exit" });
  assert.deepEqual(await keep.fromKeep.read(), { t: "running" });
  assert.deepEqual(await keep.fromKeep.read(), { t: "exited", status: 7, reason: "exit" });
  assert.equal((await keep.done).exitStatus, 0);
});

Deno.test("wasmldr: the service key is made once, for the token holder; a chain for another key is refused", async () => {
  const keep = await handshake("k7");
  const listening = await keep.fromKeep.read() as { t: string; port: number };
  const ask = (names: unknown, authorization?: string) =>
    hostileRequest(listening.port, {
      method: "POST",
      path: "/v1/service-key",
      headers: authorization ? { authorization } : {},
      body: encodeCbor({ v: 1, names }),
    });
  const bearer = `Bearer ${hex(keep.token)}`;
  assert.deepEqual(await ask(["localhost"]), { status: 401, code: "unauthorized" });
  assert.equal((await ask(["not a name!"], bearer)).status, 400);
  // The real request, over the pinned connection.
  const tls = await connectPinned("127.0.0.1", listening.port, {
    keepId: "k7",
    anchorPem: keep.anchorPem,
  });
  const res = await http1Request(tls, {
    method: "POST",
    path: "/v1/service-key",
    host: keepHostname("k7"),
    headers: { authorization: bearer },
    body: encodeCbor({ v: 1, names: ["api.example.test"] }),
  });
  assert.equal(res.status, 200);
  const answer = parseServiceKeyResponse(
    decodeCbor(new Uint8Array(await new Response(res.body).arrayBuffer())),
  );
  const { csr, selfSigned } = await checkServiceKeyAnswer(answer);
  assert.equal(csr.subject, "CN=api.example.test");
  assert.equal(selfSigned.subject, selfSigned.issuer);
  assert.deepEqual(await ask(["localhost"], bearer), { status: 409, code: "service-key-taken" });
  // An upload whose chain is for another key: 400, and the keep ends.
  const other = await prepareKeepIdentity({ names: ["api.example.test"] });
  const pinned = await connectPinned("127.0.0.1", listening.port, {
    keepId: "k7",
    anchorPem: keep.anchorPem,
  });
  const refused = await http1Request(pinned, {
    method: "POST",
    path: "/v1/workload",
    host: keepHostname("k7"),
    headers: { authorization: bearer },
    body: encodeCbor({
      v: 1,
      module: text(HELLO_WAT),
      config: null,
      args: [],
      env: {},
      stdin: text(""),
      chain: [other.selfSigned],
    }),
  });
  assert.equal(refused.status, 400);
  const error = parseErrorResponse(
    decodeCbor(new Uint8Array(await new Response(refused.body).arrayBuffer())),
  );
  assert.equal(error.error.code, "keep-certificate-mismatch");
  // The host hears only the code.
  const frame = await keep.fromKeep.read() as { t: string; code: string };
  assert.deepEqual([frame.t, frame.code], ["error", "keep-certificate-mismatch"]);
  assert.notEqual((await keep.done).exitStatus, 0);
});

/**
 * The modules `enarx wasmldr` loads when it starts (static imports that carry code, as
 * `deno info` resolves them), with the module that imports each.
 */
async function wasmldrStartupGraph(): Promise<Map<string, string>> {
  const entry = new URL("../../cli/wasmldr.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "info",
      "--json",
      "--config",
      new URL("../../deno.json", import.meta.url).pathname,
      entry,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.equal(out.code, 0);
  type Dep = { code?: { specifier?: string }; isDynamic?: boolean };
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    roots: string[];
    modules: { specifier: string; dependencies?: Dep[] }[];
  };
  const deps = new Map(info.modules.map((m) => [m.specifier, m.dependencies ?? []]));
  const seen = new Map<string, string>([[info.roots[0], ""]]);
  const pending = [info.roots[0]];
  while (pending.length > 0) {
    const from = pending.pop()!;
    for (const dep of deps.get(from) ?? []) {
      const to = dep.code?.specifier;
      if (to === undefined || dep.isDynamic || seen.has(to)) continue;
      seen.set(to, from);
      pending.push(to);
    }
  }
  return seen;
}

Deno.test("wasmldr: starts without Node's compatibility layer or any npm package", async () => {
  // Either starts Deno's Node layer in every keep (~20 ms of CPU each, BENCHMARKS.md).
  const graph = await wasmldrStartupGraph();
  const foreign = [...graph].filter(([to]) =>
    to.startsWith("node:") || to.startsWith("npm:") || to.includes("/node_modules/")
  );
  assert.deepEqual(foreign, []);
  // The graph is the real one: wasmldr's own modules are in it.
  assert.ok([...graph.keys()].some((m) => m.endsWith("/runtime/keep/wasmldr.ts")));
  assert.ok([...graph.keys()].some((m) => m.endsWith("/runtime/protocol/hpke.ts")));
});
