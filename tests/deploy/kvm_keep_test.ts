/**
 * A kvm keep end to end: a real keepmgr offering `kvm,nil` boots a QEMU
 * micro-VM (TCG) from the kernel and initrd of runtime/backends/kvm_image.ts,
 * deploys examples/hello.wat into it and leaves no QEMU behind; and a
 * workload with Enarx.toml sockets in one: its `listen` socket reached from
 * the host through the endpoint keepmgr prints, its `connect` socket reaching
 * a server on the host; and a `prot = "tls"` listen socket whose TLS ends in
 * the VM, serving the certificate the client was told of. Ignored unless qemu-system-x86_64 and a keep kernel
 * (tools/test_deps.sh, or ENARX_KVM_KERNEL) are present.
 */
import assert from "node:assert/strict";
import { deploy } from "../../runtime/client/deploy.ts";
import { LocalKeepmgr } from "../../runtime/keepmgr/local.ts";
import { kvmLaunchable } from "../../runtime/backends/kvm.ts";
import { requires } from "../_requires.ts";
import { pemFingerprint, presentedCertificate } from "../workloads/tls_helpers.ts";
import { eventually, SIM_DIR, SIM_ROOT, taggedProcesses, workload } from "./_deploy_fixture.ts";

const HELLO = new URL("../../examples/hello.wat", import.meta.url).pathname;
const SOCKETS = new URL("../workloads/build/sockets.wasm", import.meta.url).pathname;
const STDIO = '[[files]]\nkind = "stdin"\n[[files]]\nkind = "stdout"\n[[files]]\nkind = "stderr"\n';
const IMAGE_CACHE = new URL("../../.cache/kvm-image", import.meta.url).pathname;

/** QEMU processes among the tagged ones. */
function qemuProcesses(tag: string): number[] {
  return taggedProcesses(tag).filter((pid) => {
    try {
      return Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0")[0].includes("qemu-system");
    } catch {
      return false;
    }
  });
}

Deno.test({
  name: "kvm keep: hello.wat runs in a QEMU micro-VM through a real keepmgr; no QEMU is left",
  ...requires({
    tool: "QEMU and the kvm keep kernel",
    present: kvmLaunchable(),
    remedy: "tools/test.sh installs qemu-system-x86 and fetches Debian's cloud kernel",
  }, async () => {
    const tag = crypto.randomUUID();
    const logs: string[] = [];
    const mgr = await LocalKeepmgr.start({
      simDir: SIM_DIR,
      // A VM under TCG on a busy machine may take longer than 30 s to its evidence.
      args: ["--backends", "kvm,nil", "--step-timeout", "120s"],
      env: { ENARX_TEST_TAG: tag, ENARX_KVM_CACHE_DIR: IMAGE_CACHE },
      onLog: (line) => void logs.push(line),
    });
    try {
      const out: Uint8Array[] = [];
      const started = performance.now();
      const result = await deploy(workload(await Deno.readFile(HELLO)), {
        keepmgr: mgr.url,
        keepmgrToken: mgr.token,
        backend: "kvm",
        trustSimulated: SIM_ROOT,
        onStdout: (chunk) => void out.push(chunk.slice()),
      }).catch((error) => {
        console.error(logs.join("\n"));
        throw error;
      });
      const elapsed = performance.now() - started;
      console.log(`kvm deploy end to end: ${elapsed.toFixed(0)} ms`);
      for (const line of logs) {
        if (/kvm image|guest ready|qemu started|keep attested|keep listening/.test(line)) {
          console.log(line);
        }
      }
      const text = out.map((c) => new TextDecoder().decode(c)).join("");
      assert.equal(text, "Hello from a WebAssembly keep!\n");
      assert.equal(result.status, 0);
      assert.equal(result.backend, "kvm");
      assert.equal(result.simulated, true);
      assert.ok(result.verification.ok);
      // The guest powers off after wasmldr exits; QEMU must end with it.
      assert.ok(await eventually(() => qemuProcesses(tag).length === 0, 15_000), logs.join("\n"));
    } finally {
      await mgr.close();
    }
    assert.deepEqual(qemuProcesses(tag), []);
  }),
});

/** Sends `data` to 127.0.0.1:`port`, half-closes, returns everything that comes back. */
async function exchange(port: number, data: Uint8Array): Promise<Uint8Array> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const reading = new Response(conn.readable).bytes();
  for (let at = 0; at < data.length;) at += await conn.write(data.subarray(at));
  await conn.closeWrite();
  return await reading;
}

/** A server on the host's loopback that upper-cases what it reads until its client half-closes. */
function upperCasePeer(): { port: number; got: Promise<string> } {
  const peer = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const got = (async () => {
    const conn = await peer.accept();
    let text = "";
    const buf = new Uint8Array(4096);
    for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    await conn.write(new TextEncoder().encode(text.toUpperCase()));
    conn.close();
    peer.close();
    return text;
  })();
  return { port: peer.addr.port, got };
}

Deno.test({
  name: "kvm keep: a listen socket is reached through keepmgr's endpoint, a connect socket " +
    "reaches the host; no QEMU is left",
  ...requires({
    tool: "QEMU and the kvm keep kernel",
    present: kvmLaunchable(),
    remedy: "tools/test.sh installs qemu-system-x86 and fetches Debian's cloud kernel",
  }, async () => {
    const tag = crypto.randomUUID();
    const logs: string[] = [];
    const first = 30_000 + Math.floor(Math.random() * 3_000) * 10;
    const mgr = await LocalKeepmgr.start({
      simDir: SIM_DIR,
      // Under TCG on a loaded machine a VM keep's evidence may take longer than the default 30 s.
      args: [
        "--backends",
        "kvm,nil",
        "--step-timeout",
        "120s",
        "--service-ports",
        `${first}-${first + 9}`,
      ],
      env: { ENARX_TEST_TAG: tag, ENARX_KVM_CACHE_DIR: IMAGE_CACHE },
      onLog: (line) => void logs.push(line),
    });
    const module = await Deno.readFile(SOCKETS);
    const options = { keepmgr: mgr.url, keepmgrToken: mgr.token, trustSimulated: SIM_ROOT };
    try {
      // listen: an echo server for two clients, reached through keepmgr's port.
      const big = new Uint8Array(1 << 20).map((_, i) => (i * 13) & 0xff);
      let echoed: Promise<Uint8Array[]> | undefined;
      const endpoints: { host: string; port: number }[] = [];
      const out: Uint8Array[] = [];
      const served = await deploy(
        workload(module, {
          config: STDIO + '[[files]]\nkind = "listen"\nprot = "tcp"\nname = "web"\nport = 0\n',
          args: ["echo", "web", "2"],
          services: 1,
        }),
        {
          ...options,
          backend: "kvm",
          onStdout: (chunk) => void out.push(chunk.slice()),
          onStep: (event) => {
            if (event.kind !== "endpoint") return;
            endpoints.push({ host: event.endpoint.host, port: event.endpoint.port });
            const port = event.endpoint.port;
            echoed = (async () => [
              await exchange(port, new TextEncoder().encode("hello\n")),
              await exchange(port, big),
            ])();
          },
        },
      ).catch((error) => {
        console.error(logs.join("\n"));
        throw error;
      });
      assert.equal(served.status, 0, logs.join("\n"));
      assert.equal(served.backend, "kvm");
      assert.equal(endpoints.length, 1);
      assert.equal(endpoints[0].host, "127.0.0.1");
      assert.ok(endpoints[0].port >= first && endpoints[0].port <= first + 9);
      const [hello, bigBack] = await echoed!;
      assert.equal(new TextDecoder().decode(hello), "hello\n");
      assert.deepEqual(bigBack, big);
      assert.equal(out.map((c) => new TextDecoder().decode(c)).join(""), "served 2\n");
      // keepldr asked QEMU for the forward; keepmgr relayed to it.
      assert.ok(logs.some((l) => l.includes("keep services")), logs.join("\n"));

      // connect: the guest reaches the host's loopback as 10.0.2.2 (QEMU's user-mode network).
      const peer = upperCasePeer();
      const said: Uint8Array[] = [];
      const called = await deploy(
        workload(module, {
          config: STDIO + '[[files]]\nkind = "connect"\nprot = "tcp"\nname = "db"\n' +
            `host = "10.0.2.2"\nport = ${peer.port}\n`,
          args: ["connect", "db", "hello keep"],
        }),
        { ...options, backend: "kvm", onStdout: (chunk) => void said.push(chunk.slice()) },
      );
      assert.equal(called.status, 0, logs.join("\n"));
      assert.equal(said.map((c) => new TextDecoder().decode(c)).join(""), "HELLO KEEP");
      assert.equal(await peer.got, "hello keep");
      assert.ok(await eventually(() => qemuProcesses(tag).length === 0, 15_000), logs.join("\n"));
    } finally {
      await mgr.close();
    }
    assert.deepEqual(qemuProcesses(tag), []);
  }),
});

Deno.test({
  name:
    "kvm keep: a tls listen socket ends TLS in the VM with the certificate the client was told of",
  ...requires({
    tool: "QEMU and the kvm keep kernel",
    present: kvmLaunchable(),
    remedy: "tools/test.sh installs qemu-system-x86 and fetches Debian's cloud kernel",
  }, async () => {
    const logs: string[] = [];
    const mgr = await LocalKeepmgr.start({
      simDir: SIM_DIR,
      args: ["--backends", "kvm,nil", "--step-timeout", "120s"],
      env: { ENARX_KVM_CACHE_DIR: IMAGE_CACHE },
      onLog: (line) => void logs.push(line),
    });
    try {
      let talked: Promise<{ served: string; fingerprint?: string; echo: string }> | undefined;
      const result = await deploy(
        workload(await Deno.readFile(SOCKETS), {
          config: STDIO + '[[files]]\nkind = "listen"\nprot = "tls"\nname = "web"\nport = 0\n',
          args: ["echo", "web", "2"],
          services: 1,
          tls: { names: ["localhost"] },
        }),
        {
          keepmgr: mgr.url,
          keepmgrToken: mgr.token,
          trustSimulated: SIM_ROOT,
          backend: "kvm",
          onStep: (event) => {
            if (event.kind !== "endpoint") return;
            const { port, fingerprint } = event.endpoint;
            talked = (async () => {
              const served = await presentedCertificate(port, "localhost");
              const conn = await Deno.connectTls({
                hostname: "localhost",
                port,
                caCerts: [served],
              });
              const reading = new Response(conn.readable).text();
              await conn.write(new TextEncoder().encode("through the VM's TLS\n"));
              await conn.closeWrite();
              return { served, fingerprint, echo: await reading };
            })();
          },
        },
      ).catch((error) => {
        console.error(logs.join("\n"));
        throw error;
      });
      assert.equal(result.status, 0, logs.join("\n"));
      const { served, fingerprint, echo } = await talked!;
      assert.equal(echo, "through the VM's TLS\n");
      // The keep's self-signed certificate, as the client learnt it over the attested channel.
      assert.equal(await pemFingerprint(served), fingerprint);
    } finally {
      await mgr.close();
    }
  }),
});
