/** keepldr in-process (runKeepldr) over in-memory streams, and the TCP forward. */
import assert from "node:assert/strict";
import { runKeepldr } from "../../runtime/keepmgr/keepldr.ts";
import { encodeFrame, FrameReader } from "../../runtime/protocol/frames.ts";
import { parseUpstreamFrame } from "../../runtime/protocol/messages.ts";
import { TcpForward } from "../../runtime/keepmgr/forward.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const FAKE = [Deno.execPath(), "run", "-A", "--quiet", "--config", `${ROOT}deno.json`];

function hello(overrides: Record<string, unknown> = {}) {
  return {
    t: "hello",
    v: 1,
    keep: "k1",
    backend: "nil",
    nonce: new Uint8Array(32),
    limits: {},
    ...overrides,
  };
}

/** Runs keepldr with `frames` as its input; returns its exit status and every frame it sent. */
async function keepldr(frames: unknown[], options: { mode?: string; keepId?: string } = {}) {
  // The input stays open, as keepmgr's pipe does, until keepldr ends.
  const input = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const frame of frames) controller.enqueue(encodeFrame(frame));
    },
  });
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  const reader = new FrameReader(readable);
  const collected = (async () => {
    const out: unknown[] = [];
    for await (const frame of reader) out.push(parseUpstreamFrame(frame));
    return out;
  })();
  const status = await runKeepldr({
    keepId: options.keepId ?? "k1",
    input,
    output: writable,
    wasmldrCommand: [...FAKE, `${ROOT}tests/deploy/fake_wasmldr.ts`, options.mode ?? "normal"],
    log: () => {},
  });
  return { status, frames: await collected };
}

Deno.test("keepldr: another protocol version gets a version error frame", async () => {
  const { status, frames } = await keepldr([hello({ v: 2 })]);
  assert.equal(status, 76);
  assert.equal(frames.length, 1);
  assert.deepEqual((frames[0] as { code: string }).code, "version");
});

Deno.test("keepldr: a hello for another keep, or an unknown backend, is refused", async () => {
  const other = await keepldr([hello({ keep: "k2" })]);
  assert.match((other.frames[0] as { message: string }).message, /names keep "k2"/);
  const backend = await keepldr([hello({ backend: "tdx" })]);
  assert.equal((backend.frames[0] as { code: string }).code, "backend-unavailable");
  const garbage = await keepldr([{
    t: "sealed-key",
    enc: new Uint8Array(1),
    ct: new Uint8Array(1),
  }]);
  assert.equal((garbage.frames[0] as { code: string }).code, "message-invalid");
});

Deno.test("keepldr: relays frames both ways; keepmgr going away stops the keep", async () => {
  const toLdr = new TransformStream<Uint8Array, Uint8Array>();
  const fromLdr = new TransformStream<Uint8Array, Uint8Array>();
  const writer = toLdr.writable.getWriter();
  const reader = new FrameReader(fromLdr.readable);
  const run = runKeepldr({
    keepId: "k1",
    input: toLdr.readable,
    output: fromLdr.writable,
    wasmldrCommand: [...FAKE, `${ROOT}tests/deploy/fake_wasmldr.ts`, "normal"],
    log: () => {},
  });
  await writer.write(encodeFrame(hello()));
  const evidence = parseUpstreamFrame(await reader.read());
  assert.equal(evidence.t, "evidence");
  await writer.write(
    encodeFrame({ t: "sealed-key", enc: new Uint8Array(65), ct: new Uint8Array(9) }),
  );
  const listening = parseUpstreamFrame(await reader.read());
  assert.equal(listening.t, "listening");
  // keepmgr goes away: keepldr kills the keep, which never reported an exit.
  await writer.close();
  const [status, last, end] = await Promise.all([run, reader.read(), reader.read()]);
  assert.equal(status, 70);
  assert.equal((parseUpstreamFrame(last) as { code: string }).code, "keep-died");
  assert.equal(end, null);
});

Deno.test("keepldr: a keep that dies is reported as keep-died with its status", async () => {
  const died = await keepldr([hello()], { mode: "die-after-hello" });
  assert.equal(died.status, 70);
  const last = died.frames.at(-1) as { t: string; code: string; message: string };
  assert.equal(last.code, "keep-died");
  assert.match(last.message, /exited with status 3/);
});

Deno.test("forward: copies both ways, and close() ends every connection", async () => {
  const target = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await target.accept();
    const buf = new Uint8Array(5);
    let n = 0;
    while (n < 5) n += (await conn.read(buf.subarray(n)))!;
    await conn.write(new TextEncoder().encode(new TextDecoder().decode(buf).toUpperCase()));
    return conn;
  })();
  const forward = TcpForward.open({ targetPort: target.addr.port });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: forward.port });
  await client.write(new TextEncoder().encode("hello"));
  const reply = new Uint8Array(5);
  let n = 0;
  while (n < 5) n += (await client.read(reply.subarray(n)))!;
  assert.equal(new TextDecoder().decode(reply), "HELLO");
  const serverConn = await served;
  await forward.close();
  assert.equal(await client.read(new Uint8Array(1)), null);
  await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: forward.port }));
  client.close();
  serverConn.close();
  target.close();
});

Deno.test("forward: a drain after a silent workload still relays the keep's last bytes", async () => {
  // The keep answers "a" at once, stays silent longer than the drain's idle
  // limit (a workload that sleeps), and writes its last bytes only as keepmgr
  // starts draining (it heard "exited" before the forward read them).
  const target = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = target.accept();
  const forward = TcpForward.open({ targetPort: target.addr.port });
  const client = await Deno.connect({ hostname: "127.0.0.1", port: forward.port });
  await client.write(new TextEncoder().encode("g"));
  const keep = await accepted;
  await keep.read(new Uint8Array(1));
  await keep.write(new TextEncoder().encode("a"));
  assert.equal((await client.read(new Uint8Array(1)))!, 1);
  forward.stopAccepting(); // the workload runs
  await new Promise((r) => setTimeout(r, 1_500)); // silent for longer than the idle limit below
  const closing = forward.close({ drain: true, drainIdleMs: 1_000 });
  await new Promise((r) => setTimeout(r, 20));
  await keep.write(new TextEncoder().encode("tail"));
  keep.close();
  const received: number[] = [];
  const buf = new Uint8Array(16);
  while (true) {
    const n = await client.read(buf).catch(() => null);
    if (n === null) break;
    received.push(...buf.subarray(0, n));
  }
  client.close();
  await closing;
  target.close();
  assert.equal(new TextDecoder().decode(new Uint8Array(received)), "tail");
});

Deno.test("forward: a connection the keep never answers is closed; a newcomer evicts the idlest", async () => {
  // A target that accepts and says nothing, except "hi" to whoever writes first.
  const target = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const serving = (async () => {
    for await (const conn of target) {
      accepted.push(conn);
      (async () => {
        const buf = new Uint8Array(1);
        if (await conn.read(buf).catch(() => null)) {
          await conn.write(new TextEncoder().encode("hi"));
        }
      })().catch(() => {});
    }
  })();
  const forward = TcpForward.open({
    targetPort: target.addr.port,
    maxConnections: 2,
    handshakeTimeoutMs: 1_500,
  });
  const silent = [
    await Deno.connect({ hostname: "127.0.0.1", port: forward.port }),
    await Deno.connect({ hostname: "127.0.0.1", port: forward.port }),
  ];
  await new Promise((r) => setTimeout(r, 1_100)); // both idle for over a second
  // Every place is taken by idle connections: the newcomer still gets through.
  const client = await Deno.connect({ hostname: "127.0.0.1", port: forward.port });
  await client.write(new Uint8Array([1]));
  const reply = new Uint8Array(2);
  let n = 0;
  while (n < 2) n += (await client.read(reply.subarray(n)))!;
  assert.equal(new TextDecoder().decode(reply), "hi");
  // The unanswered connections are closed by the handshake timeout.
  for (const conn of silent) assert.equal(await conn.read(new Uint8Array(1)), null);
  await forward.close();
  for (const conn of [...silent, client, ...accepted]) {
    try {
      conn.close();
    } catch { /* closed */ }
  }
  target.close();
  await serving.catch(() => {});
});
