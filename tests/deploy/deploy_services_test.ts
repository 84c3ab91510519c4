/**
 * Deployed services: `enarx deploy` of a workload with Enarx.toml `listen`
 * and `connect` sockets through a real keepmgr (child process) on the nil
 * backend, reached over real TCP through the port keepmgr forwards; the
 * port freed when the keep ends; a full --service-ports range; --detach with
 * `enarx keep list|logs|stop`; and which backends take sockets (kvm keeps'
 * are in kvm_keep_test.ts). prot = "tls" is in deploy_tls_test.ts.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { deployArgs, eventually, startKeepmgr } from "./_deploy_fixture.ts";
import { enarx, ensureLibwasmtime, workload } from "../workloads/helpers.ts";
import { KeepmgrClient } from "../../runtime/client/keepmgr_client.ts";
import { startEnarx } from "../workloads/tls_helpers.ts";
import { checkListenNames, checkSocketBackend } from "../../runtime/keep/deployed_sockets.ts";
import { parseDeployedConfig } from "../../runtime/wasm/config.ts";

ensureLibwasmtime();
const SOCKETS = workload("sockets.wasm");
const STDIO = '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n';

/** A port range of `size` unlikely to collide with other tests running at the same time. */
function freshRange(size: number): { first: number; last: number; arg: string } {
  const first = 30_000 + Math.floor(Math.random() * 3_000) * 10;
  const last = first + size - 1;
  return { first, last, arg: `${first}-${last}` };
}

function listenToml(port: number): string {
  return STDIO + `[[files]]\nkind = "listen"\nprot = "tcp"\nname = "web"\nport = ${port}\n`;
}

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

/** A running `enarx deploy` whose stderr is read until it prints an endpoint. */
async function startDeploy(args: string[]) {
  const run = await startEnarx(args, /enarx deploy: endpoint web: tcp:\/\/([^:\s]+):(\d+)\n/);
  return {
    endpoint: { host: run.match[1], port: Number(run.match[2]) },
    async done() {
      const { code, stdout } = await run.done();
      return { code, stdout };
    },
  };
}

/** Sends `data`, half-closes, returns everything that comes back. */
async function exchange(port: number, data: Uint8Array): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reading = new Response(conn.readable).bytes();
  for (let at = 0; at < data.length;) at += await conn.write(data.subarray(at));
  await conn.closeWrite();
  return await reading;
}

/** Whether this process can listen on `port` (nothing else holds it). */
function portFree(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test("services: a deployed echo server is reached through the printed endpoint; the port is freed after", async () => {
  const range = freshRange(10);
  const asked = range.first + 3;
  const mgr = await startKeepmgr({ args: ["--service-ports", range.arg] });
  try {
    await withToml(listenToml(asked), async (toml) => {
      const run = await startDeploy(deployArgs(mgr, toml, [SOCKETS, "echo", "web", "2"]));
      // The port the Enarx.toml asks for, since it is free and in range.
      assert.deepEqual(run.endpoint, { host: "127.0.0.1", port: asked });
      const big = new Uint8Array(2 << 20).map((_, i) => (i * 13) & 0xff);
      assert.deepEqual(
        await exchange(asked, new TextEncoder().encode("hello\n")),
        new TextEncoder().encode("hello\n"),
      );
      assert.deepEqual(await exchange(asked, big), big);
      const r = await run.done();
      assert.equal(r.code, 0);
      assert.equal(r.stdout, "served 2\n");
    });
    assert.ok(await eventually(() => portFree(asked)), `port ${asked} is still held`);
    const client = new KeepmgrClient(mgr.url, { token: mgr.token });
    const { keeps } = await client.listKeeps();
    assert.equal(keeps.length, 1);
    assert.equal(keeps[0].state, "exited");
    assert.equal(keeps[0].endpoints, undefined);
  } finally {
    await mgr.close();
  }
});

Deno.test("services: a full --service-ports range fails the keep with no-free-port, exit 69", async () => {
  const range = freshRange(1);
  const mgr = await startKeepmgr({ args: ["--service-ports", range.arg] });
  const squatter = Deno.listen({ hostname: "127.0.0.1", port: range.first });
  try {
    await withToml(listenToml(range.first), async (toml) => {
      const r = await enarx(deployArgs(mgr, toml, ["--json", SOCKETS, "echo", "web", "1"]));
      assert.equal(r.code, 69, r.stderr);
      const record = JSON.parse(r.stdout);
      assert.equal(record.ok, false);
      assert.equal(record.error.code, "no-free-port");
      assert.match(
        record.error.message,
        new RegExp(
          `keepmgr says "no-free-port: No free port for service "web".*--service-ports ${range.arg}`,
        ),
      );
    });
    // The deploy deleted its failed keep: nothing is left holding a port.
    const client = new KeepmgrClient(mgr.url, { token: mgr.token });
    assert.deepEqual((await client.listKeeps()).keeps, []);
  } finally {
    squatter.close();
    await mgr.close();
  }
});

Deno.test("services: --detach returns with the keep running; keep list, logs and stop manage it", async () => {
  const range = freshRange(10);
  const mgr = await startKeepmgr({ args: ["--service-ports", range.arg] });
  const keepArgs = ["--keepmgr", mgr.url, "--keepmgr-token", mgr.tokenFile];
  try {
    await withToml(listenToml(0), async (toml) => {
      // One client, then it prints "served 1" (to keepmgr's log) and exits.
      const once = await enarx(deployArgs(mgr, toml, ["--detach", SOCKETS, "echo", "web", "1"]));
      assert.equal(once.code, 0, once.stderr);
      const keep = once.stdout.trim();
      assert.match(keep, /^[0-9a-f]{32}$/);
      const port = Number(/endpoint web: tcp:\/\/127\.0\.0\.1:(\d+)\n/.exec(once.stderr)?.[1]);
      assert.ok(port >= range.first && port <= range.last, once.stderr);
      const listed = await enarx(["keep", "list", "--json", ...keepArgs]);
      assert.equal(listed.code, 0, listed.stderr);
      const entry = JSON.parse(listed.stdout).keeps.find((k: { keep: string }) => k.keep === keep);
      assert.equal(entry.state, "running");
      assert.deepEqual(entry.endpoints, [{ name: "web", prot: "tcp", host: "127.0.0.1", port }]);
      assert.equal(
        new TextDecoder().decode(await exchange(port, new TextEncoder().encode("bye"))),
        "bye",
      );
      const follow = await enarx(["keep", "logs", keep, "--follow", ...keepArgs]);
      assert.equal(follow.code, 0, follow.stderr);
      assert.equal(follow.stdout, "served 1\n");
      assert.ok(await eventually(() => portFree(port)), `port ${port} is still held`);

      // A keep that would serve for long: stopped by hand, its port freed.
      const long = await enarx(
        deployArgs(mgr, toml, ["--detach", "--json", SOCKETS, "echo", "web", "99"]),
      );
      assert.equal(long.code, 0, long.stderr);
      const record = JSON.parse(long.stdout);
      assert.equal(record.detached, true);
      const other: string = record.keep;
      assert.equal(record.endpoints.length, 1);
      const otherPort: number = record.endpoints[0].port;
      assert.deepEqual(record.endpoints[0], {
        name: "web",
        prot: "tcp",
        host: "127.0.0.1",
        port: otherPort,
        url: `tcp://127.0.0.1:${otherPort}`,
      });
      assert.equal(
        new TextDecoder().decode(await exchange(otherPort, new TextEncoder().encode("x"))),
        "x",
      );
      const stopped = await enarx(["keep", "stop", other, ...keepArgs]);
      assert.equal(stopped.code, 0, stopped.stderr);
      assert.equal(stopped.stdout, `keep ${other} stopped\n`);
      assert.ok(portFree(otherPort), `port ${otherPort} is still held after stop`);
      const after = await enarx(["keep", "list", ...keepArgs]);
      assert.ok(!after.stdout.includes(other), after.stdout);
      const gone = await enarx(["keep", "logs", other, ...keepArgs]);
      assert.equal(gone.code, 66);
      assert.match(gone.stderr, new RegExp(`No keep "${other}" on the keepmgr at https://`));
    });
  } finally {
    await mgr.close();
  }
});

Deno.test("services: a connect socket in a deployed workload reaches a loopback server", async () => {
  // A peer that upper-cases what it reads until the keep half-closes.
  const peer = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const peerGot = (async () => {
    const conn = await peer.accept();
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(4096);
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
    const text = chunks.map((c) => new TextDecoder().decode(c)).join("");
    await conn.write(new TextEncoder().encode(text.toUpperCase()));
    conn.close();
    peer.close();
    return text;
  })();
  const mgr = await startKeepmgr();
  try {
    const toml = STDIO + '[[files]]\nkind = "connect"\nprot = "tcp"\nname = "db"\n' +
      `host = "127.0.0.1"\nport = ${peer.addr.port}\n`;
    await withToml(toml, async (path) => {
      const r = await enarx(deployArgs(mgr, path, [SOCKETS, "connect", "db", "hello keep"]));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "HELLO KEEP");
      assert.equal(await peerGot, "hello keep");
    });
  } finally {
    await mgr.close();
  }
});

Deno.test("services: nil, kvm and sev keeps take sockets; a backend that cannot is refused (69)", async () => {
  const config = parseDeployedConfig(listenToml(8080));
  for (const backend of ["nil", "kvm", "sev"]) checkSocketBackend(config, backend); // no throw
  // tdx keeps are not launched by this release: nothing could forward their services.
  assert.throws(
    () => checkSocketBackend(config, "tdx"),
    (e: unknown) =>
      e instanceof Error && (e as { code?: string }).code === "sockets-unsupported-backend" &&
      (e as { exitStatus?: number }).exitStatus === 69 &&
      /needs a nil, kvm, sev keep; a tdx keep cannot serve.*--backend nil/.test(e.message),
  );
  assert.throws(
    () => checkListenNames(parseDeployedConfig(listenToml(1) + listenToml(2).slice(STDIO.length))),
    (e: unknown) =>
      e instanceof Error && (e as { exitStatus?: number }).exitStatus === 65 &&
      /Two \[\[files\]\] listen entries are named "web"/.test(e.message),
  );
  checkSocketBackend(parseDeployedConfig(STDIO), "tdx"); // no sockets: nothing to refuse
  // The CLI no longer refuses a kvm deploy with sockets: it goes on to the keepmgr
  // (nothing listens on port 1), as a kvm keep serves them (tests/deploy/kvm_keep_test.ts).
  await withToml(listenToml(8080), async (toml) => {
    const r = await enarx([
      "deploy",
      "--keepmgr",
      "https://127.0.0.1:1",
      "--backend",
      "kvm",
      "--wasmcfgfile",
      toml,
      SOCKETS,
    ]);
    assert.equal(r.code, 69, r.stderr);
    assert.match(r.stderr, /Cannot reach the keepmgr at "https:\/\/127\.0\.0\.1:1"/);
    assert.doesNotMatch(r.stderr, /sockets-unsupported|cannot serve or open sockets/);
  });
});
