/**
 * `enarx run` with Enarx.toml `listen` and `connect` sockets: the real CLI,
 * real sockets on loopback, and tests/workloads/c/sockets.c as the guest.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { enarx, ensureLibwasmtime, ROOT, workload } from "../workloads/helpers.ts";
import { trampolineWat } from "../../ffi/wasi_sockets.ts";
import { type KeepProcess, startKeep } from "../workloads/tls_helpers.ts";
import { applySocketOptions, parseSocketOption } from "../../cli/run.ts";
import { defaultConfig } from "../../runtime/wasm/config.ts";

ensureLibwasmtime();
const SOCKETS = workload("sockets.wasm");
const STDIO = '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n';

/** Starts `enarx run ARGS` and waits for its listening line. */
function startServer(args: string[]): Promise<KeepProcess> {
  return startKeep(args, { line: /listening on [^\n]*:(\d+)\n/ });
}

/** Reads `conn` to end-of-stream with read() (the connection stays open for writing). */
async function readBytes(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(65536);
  while (true) {
    const n = await conn.read(buf);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  const out = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Reads `conn` to end-of-stream as text. */
async function readToEnd(conn: Deno.Conn): Promise<string> {
  return new TextDecoder().decode(await readBytes(conn));
}

/** Sends `data` on `conn`, half-closes, and returns everything the server sends back. */
async function talk(conn: Deno.Conn, data: Uint8Array): Promise<Uint8Array> {
  const reading = readBytes(conn);
  for (let at = 0; at < data.length;) at += await conn.write(data.subarray(at));
  await conn.closeWrite(); // the guest reads end-of-stream
  const reply = await reading;
  conn.close();
  return reply;
}

/** Connects, sends `data`, half-closes, and returns what comes back. */
async function exchange(port: number, data: Uint8Array): Promise<Uint8Array> {
  return await talk(await Deno.connect({ hostname: "127.0.0.1", port }), data);
}

async function withConfig<T>(toml: string, fn: (path: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir();
  try {
    const path = join(dir, "Enarx.toml");
    await Deno.writeTextFile(path, toml.replaceAll("DIR", dir));
    return await fn(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const LISTEN = '[[files]]\nkind = "listen"\nprot = "tcp"\nname = "web"\naddr = "127.0.0.1"\n' +
  "port = 0\n";

Deno.test("sockets: a blocking echo server answers clients one after another, large data too", async () => {
  await withConfig(STDIO + LISTEN, async (toml) => {
    const server = await startServer(["--wasmcfgfile", toml, SOCKETS, "echo", "web", "3"]);
    const big = new Uint8Array(3 << 20).map((_, i) => (i * 7) & 0xff);
    assert.deepEqual(
      await exchange(server.port, new TextEncoder().encode("hello\n")),
      new TextEncoder().encode("hello\n"),
    );
    assert.deepEqual(await exchange(server.port, big), big);
    assert.deepEqual(await exchange(server.port, new Uint8Array(0)), new Uint8Array(0));
    const r = await server.done();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "served 3\n");
    assert.match(r.stderr, /^enarx: fd 3 "web" listening on 127\.0\.0\.1:\d+\n$/);
  });
});

Deno.test("sockets: Rust's std::net serves from a listener (non-blocking accept, sleep, blocking reads)", async () => {
  // The first "listening on" line is fd 3, "web"; "idle" (fd 4) never gets a client.
  const server = await startServer([
    "--listen",
    "web=127.0.0.1:0",
    "--listen",
    "idle=127.0.0.1:0",
    workload("tcp_echo-rs.wasm"),
    "web",
    "2",
    "idle",
  ]);
  for (const text of ["first", "second ".repeat(5000)]) {
    const reply = await exchange(server.port, new TextEncoder().encode(text));
    assert.equal(new TextDecoder().decode(reply), text);
  }
  const r = await server.done();
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "idle: WouldBlock\nrust served 2\n");
});

Deno.test("sockets: --listen adds a listener without Enarx.toml; FD_NAMES names it", async () => {
  const server = await startServer(["--listen", "web=127.0.0.1:0", SOCKETS, "echo", "web", "1"]);
  const reply = await exchange(server.port, new TextEncoder().encode("via --listen"));
  assert.equal(new TextDecoder().decode(reply), "via --listen");
  const r = await server.done();
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "served 1\n");
});

Deno.test("sockets: a non-blocking server polls 200 concurrent connections", async () => {
  await withConfig(STDIO + LISTEN, async (toml) => {
    const clients = 200;
    const server = await startServer([
      "--wasmcfgfile",
      toml,
      SOCKETS,
      "poll-echo",
      "web",
      `${clients}`,
    ]);
    const conns = await Promise.all(
      Array.from(
        { length: clients },
        () => Deno.connect({ hostname: "127.0.0.1", port: server.port }),
      ),
    );
    // Every connection is open before any sends, so the guest holds them all at once.
    const replies = await Promise.all(
      conns.map(async (conn, i) =>
        new TextDecoder().decode(
          await talk(conn, new TextEncoder().encode(`client ${i} `.repeat(100))),
        )
      ),
    );
    replies.forEach((reply, i) => assert.equal(reply, `client ${i} `.repeat(100)));
    const r = await server.done();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `served ${clients}, at most ${clients} at once\n`);
  });
});

/** A loopback server for one connection: reads to end-of-stream, answers it upper-cased. */
function upperServer(): { port: number; got: Promise<string> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const got = (async () => {
    try {
      const conn = await listener.accept();
      const text = await readToEnd(conn);
      await conn.write(new TextEncoder().encode(text.toUpperCase()));
      conn.close();
      return text;
    } finally {
      listener.close();
    }
  })();
  return { port: (listener.addr as Deno.NetAddr).port, got };
}

Deno.test("sockets: connect resolves the host in the keep and talks to a loopback server", async () => {
  const peer = upperServer();
  const toml = STDIO + '[[files]]\nkind = "connect"\nprot = "tcp"\nname = "db"\n' +
    `host = "localhost"\nport = ${peer.port}\n`;
  await withConfig(toml, async (path) => {
    const r = await enarx(["run", "--wasmcfgfile", path, SOCKETS, "connect", "db", "hello keep"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "HELLO KEEP");
    assert.equal(await peer.got, "hello keep");
  });
});

Deno.test("sockets: --connect points a configured entry elsewhere", async () => {
  const peer = upperServer();
  const toml = STDIO + '[[files]]\nkind = "connect"\nprot = "tcp"\nname = "db"\n' +
    'host = "db.invalid"\nport = 1\n';
  await withConfig(toml, async (path) => {
    const args = ["run", "--wasmcfgfile", path, "--connect", `db=127.0.0.1:${peer.port}`];
    const r = await enarx([...args, SOCKETS, "connect", "db", "override"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "OVERRIDE");
    const wrong = await enarx([
      "run",
      "--wasmcfgfile",
      path,
      "--connect",
      "cache=127.0.0.1:1",
      SOCKETS,
    ]);
    assert.equal(wrong.code, 64);
    assert.match(wrong.stderr, /no connect entry named "cache"; it has "db"/);
  });
});

Deno.test("sockets: a client that disconnects mid-stream gives the guest an error, not a crash", async () => {
  await withConfig(STDIO + LISTEN, async (toml) => {
    const server = await startServer(["--wasmcfgfile", toml, SOCKETS, "flood", "web"]);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
    const buf = new Uint8Array(4096);
    assert.notEqual(await conn.read(buf), null);
    conn.close(); // unread data makes the kernel reset the connection
    const r = await server.done();
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^write failed after \d+ bytes: (EPIPE|ECONNRESET)\n$/);
  });
});

Deno.test("sockets: a port in use and a host that does not resolve fail before the guest starts", async () => {
  using busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (busy.addr as Deno.NetAddr).port;
  const listen = STDIO + '[[files]]\nkind = "listen"\nprot = "tcp"\nname = "web"\n' +
    `addr = "127.0.0.1"\nport = ${port}\n`;
  await withConfig(listen, async (path) => {
    const r = await enarx(["run", "--wasmcfgfile", path, SOCKETS, "echo", "web", "1"]);
    assert.equal(r.code, 69);
    assert.equal(r.stdout, "");
    assert.match(
      r.stderr,
      new RegExp(
        `^enarx: Cannot listen on 127\\.0\\.0\\.1:${port} for \\[\\[files\\]\\] "web": port ${port} is already in use; .*--listen web=ADDR:PORT\n$`,
      ),
    );
  });
  const connect = STDIO + '[[files]]\nkind = "connect"\nprot = "tcp"\nname = "db"\n' +
    'host = "no-such-host.invalid"\nport = 5432\n';
  await withConfig(connect, async (path) => {
    const r = await enarx(["run", "--wasmcfgfile", path, SOCKETS, "connect", "db", "x"]);
    assert.equal(r.code, 69);
    assert.equal(r.stdout, "");
    assert.match(
      r.stderr,
      /^enarx: Cannot resolve host "no-such-host\.invalid" of \[\[files\]\] "db": [^\n]+; check the name/,
    );
    assert.equal(r.stderr.split("\n").length, 2, r.stderr);
  });
  const refused = STDIO + '[[files]]\nkind = "connect"\nprot = "tcp"\nname = "db"\n' +
    `host = "127.0.0.1"\nport = ${await closedPort()}\n`;
  await withConfig(refused, async (path) => {
    const r = await enarx(["run", "--wasmcfgfile", path, SOCKETS, "connect", "db", "x"]);
    assert.equal(r.code, 69);
    assert.match(
      r.stderr,
      /^enarx: Cannot connect to 127\.0\.0\.1:\d+ for \[\[files\]\] "db": Connection refused/,
    );
  });
});

/** A loopback port that nothing listens on (just closed). */
function closedPort(): Promise<number> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return Promise.resolve(port);
}

Deno.test("sockets: fds follow the dirs; the guest sees a socket; files it opens get other fds", async () => {
  const toml = STDIO + LISTEN + '[[dirs]]\nhost = "DIR"\nguest = "/data"\nreadonly = true\n';
  await withConfig(toml, async (path) => {
    await Deno.writeTextFile(join(path, "..", "f.txt"), "x");
    const r = await enarx(["run", "--wasmcfgfile", path, SOCKETS, "info", "web", "/data/f.txt"]);
    assert.equal(r.code, 0, r.stderr);
    // fd 3 is /data, fd 4 the socket, fd 5 the shim's anchor: the file gets 6.
    // filetype 6 is socket_stream, errno 8 EBADF, 70 ESPIPE (witx).
    assert.equal(
      r.stdout,
      "fd 4\nfiletype 6\nprestat errno 8\nseek errno 70\nopen /data/f.txt: fd 6\n",
    );
  });
});

Deno.test("sockets: --timeout stops a guest blocked in accept", async () => {
  await withConfig(STDIO + LISTEN, async (path) => {
    const r = await enarx([
      "run",
      "--timeout",
      "500ms",
      "--wasmcfgfile",
      path,
      SOCKETS,
      "echo",
      "web",
      "1",
    ]);
    assert.equal(r.code, 124);
    assert.match(r.stderr, /ran past its timeout of 500 ms and was stopped\n$/);
  });
});

/** Runs `enarx run ARGS` with a standard input that stays open and empty until it exits. */
async function runHoldingStdin(
  args: string[],
): Promise<{ code: number; stdout: string; ms: number }> {
  const started = Date.now();
  const child = new Deno.Command(`${ROOT}enarx`, {
    args: ["run", ...args],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const stdout = await new Response(child.stdout).text();
  const { code } = await child.status;
  await child.stdin.close();
  return { code, stdout, ms: Date.now() - started };
}

Deno.test("sockets: poll over a socket and wasmtime's own stdin, with a clock", async () => {
  await withConfig(STDIO + LISTEN, async (path) => {
    const args = ["--wasmcfgfile", path, SOCKETS, "wait", "web"];
    const idle = await runHoldingStdin([...args, "300"]);
    assert.equal(idle.code, 0);
    assert.equal(idle.stdout, "timeout\n");
    assert.ok(idle.ms >= 300, `poll waited its 300 ms (${idle.ms} ms)`);
    const started = Date.now();
    const input = await enarx(["run", ...args, "5000"], {
      stdin: new TextEncoder().encode("ping\n"),
    });
    assert.equal(input.code, 0, input.stderr);
    assert.equal(input.stdout, "stdin ready\n");
    assert.ok(
      Date.now() - started < 4000,
      "poll returned when stdin was ready, not at its timeout",
    );
  });
});

Deno.test("sockets: the shim shadows exactly the functions its trampoline reaches", async () => {
  const source = await Deno.readTextFile(`${ROOT}ffi/native/enarx_wasi_sockets.c`);
  const table = source.slice(
    source.indexOf("SHADOWS[] = {"),
    source.indexOf("#define SHADOW_COUNT"),
  );
  const shadowed = [...table.matchAll(/\{"(\w+)", /g)].map((m) => m[1]).sort();
  const reached = [...trampolineWat().matchAll(/\(func \(export "(\w+)"\)/g)].map((m) => m[1])
    .sort();
  assert.equal(shadowed.length, 36);
  assert.deepEqual(reached, shadowed);
});

Deno.test("cli/run: --listen and --connect parse and apply", () => {
  assert.deepEqual(parseSocketOption("listen", "web=[::1]:8080"), {
    kind: "listen",
    name: "web",
    host: "::1",
    port: 8080,
  });
  for (const bad of ["web", "web=host", "=h:1", "web=h:70000", "web=::1:80"]) {
    assert.throws(() => parseSocketOption("connect", bad), /Invalid --connect/);
  }
  const config = defaultConfig();
  applySocketOptions(config, [parseSocketOption("listen", "web=0.0.0.0:80")], false);
  assert.deepEqual(config.files[3], {
    kind: "listen",
    prot: "tcp",
    name: "web",
    port: 80,
    addr: "0.0.0.0",
  });
  applySocketOptions(config, [parseSocketOption("listen", "web=127.0.0.1:81")], true);
  assert.equal(config.files[3].addr, "127.0.0.1");
  assert.equal(config.files[3].port, 81);
  assert.throws(
    () => applySocketOptions(config, [parseSocketOption("listen", "api=127.0.0.1:1")], true),
    /no listen entry named "api"; it has "web"/,
  );
});
