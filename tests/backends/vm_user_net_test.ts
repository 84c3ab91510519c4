/**
 * A VM keep's services on the host (runtime/backends/vm/user_net.ts, qmp.ts):
 * QEMU's network arguments, the hostfwd_add command, the services frame
 * rewritten to host ports, the QMP exchange against a scripted server
 * (greeting, capabilities, an event in between, a refused port retried),
 * and the forwards a real (paused) QEMU opens on the host's loopback.
 */
import assert from "node:assert/strict";
import {
  addHostForward,
  FORWARD_ATTEMPTS,
  forwardVmServices,
  hostfwdCommand,
  qmpForwarder,
  servicesOnHost,
  vmNetworkArgs,
} from "../../runtime/backends/vm/user_net.ts";
import { QmpClient } from "../../runtime/backends/vm/qmp.ts";
import { findQemu } from "../../runtime/backends/kvm.ts";
import { EnarxError } from "../../runtime/errors.ts";
import type { ServicesFrame } from "../../runtime/protocol/messages.ts";
import { requires } from "../_requires.ts";

const FRAME: ServicesFrame = {
  t: "services",
  services: [
    { name: "web", prot: "tcp", port: 35001, asked: 8080 },
    { name: "api", prot: "tls", port: 35002, asked: 0 },
  ],
};

Deno.test("vm user net: QEMU's network arguments name the netdev and the QMP socket", () => {
  assert.deepEqual(vmNetworkArgs({ hostPort: 40123, guestPort: 8443 }, "/w/qmp.sock"), [
    "-nic",
    "user,id=net0,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:40123-:8443",
    "-qmp",
    "unix:/w/qmp.sock,server=on,wait=off",
  ]);
  // Loopback only on the host; the guest's address is QEMU's default (10.0.2.15).
  assert.equal(hostfwdCommand(41000, 35001), "hostfwd_add net0 tcp:127.0.0.1:41000-:35001");
});

Deno.test("vm user net: the services frame gets the host ports, in order, and nothing else changes", async () => {
  assert.deepEqual(servicesOnHost(FRAME, [41000, 41001]), {
    t: "services",
    services: [
      { name: "web", prot: "tcp", port: 41000, asked: 8080 },
      { name: "api", prot: "tls", port: 41001, asked: 0 },
    ],
  });
  assert.throws(() => servicesOnHost(FRAME, [41000]), RangeError);
  const asked: number[][] = [];
  const onHost = await forwardVmServices(FRAME, (ports) => {
    asked.push(ports);
    return Promise.resolve(ports.map((p) => p + 1000));
  });
  assert.deepEqual(asked, [[35001, 35002]]);
  assert.deepEqual(onHost.services.map((s) => s.port), [36001, 36002]);
  await assert.rejects(
    forwardVmServices(FRAME, () => Promise.reject(new Error("QEMU closed its QMP socket"))),
    (e: unknown) =>
      e instanceof EnarxError && e.code === "service-forward" && e.exitStatus === 69 &&
      e.message ===
        `Cannot forward host ports to the VM keep's services "web", "api": QEMU closed its QMP socket`,
  );
});

/**
 * A scripted QMP server on a unix socket: greets, answers capabilities, then
 * answers each human-monitor command with the next of `answers` (an event
 * first, as QEMU may send one at any time). Returns the commands it got.
 */
async function scriptedQmp(path: string, answers: unknown[]): Promise<string[]> {
  const listener = Deno.listen({ transport: "unix", path });
  const conn = await listener.accept();
  listener.close();
  const enc = new TextEncoder();
  const send = (value: unknown) => conn.write(enc.encode(JSON.stringify(value) + "\r\n"));
  await send({ QMP: { version: {}, capabilities: [] } });
  const got: string[] = [];
  let buffer = "";
  const lines = conn.readable.pipeThrough(new TextDecoderStream());
  for await (const chunk of lines) {
    buffer += chunk;
    let nl: number;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const request = JSON.parse(buffer.slice(0, nl));
      buffer = buffer.slice(nl + 1);
      if (request.execute === "qmp_capabilities") {
        await send({ return: {} });
        continue;
      }
      got.push(request.arguments?.["command-line"] ?? request.execute);
      await send({ event: "NIC_RX_FILTER_CHANGED", data: {} });
      await send(answers.shift());
    }
  }
  return got;
}

Deno.test("vm user net: QMP forwards are retried on a port QEMU cannot bind; errors are QEMU's", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/qmp.sock`;
    const server = scriptedQmp(path, [
      { return: "Could not set up host forwarding rule 'tcp:127.0.0.1:41000-:35001'\r\n" },
      { return: "" },
      { error: { class: "GenericError", desc: "Invalid host forwarding rule" } },
    ]);
    await new Promise((r) => setTimeout(r, 20));
    const qmp = await QmpClient.connect(path);
    const ports = [41000, 41001];
    assert.equal(await addHostForward(qmp, 35001, { freePort: () => ports.shift()! }), 41001);
    await assert.rejects(
      qmp.human("hostfwd_add bad"),
      /QEMU refused human-monitor-command: Invalid/,
    );
    qmp.close();
    assert.deepEqual(await server, [
      "hostfwd_add net0 tcp:127.0.0.1:41000-:35001",
      "hostfwd_add net0 tcp:127.0.0.1:41001-:35001",
      "hostfwd_add bad",
    ]);

    const refusing = scriptedQmp(
      path,
      Array.from({ length: FORWARD_ATTEMPTS }, () => ({ return: "Could not set up" })),
    );
    await new Promise((r) => setTimeout(r, 20));
    await assert.rejects(
      qmpForwarder(path)([35001]),
      /QEMU could not forward to guest port 35001: Could not set up/,
    );
    assert.equal((await refusing).length, FORWARD_ATTEMPTS);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Whether something holds 127.0.0.1:`port`. */
function held(port: number): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port }).close();
    return false;
  } catch {
    return true;
  }
}

Deno.test({
  name: "vm user net: a real QEMU opens each forward on the host's 127.0.0.1",
  ...requires({
    tool: "qemu-system-x86_64",
    present: findQemu() !== undefined,
    remedy: "apt-get install qemu-system-x86",
  }, async () => {
    const dir = await Deno.makeTempDir();
    const qmpSocket = `${dir}/qmp.sock`;
    // Paused before it runs anything: only its network backend and QMP are live.
    const qemu = new Deno.Command(findQemu()!, {
      args: [
        "-machine",
        "q35",
        "-accel",
        "tcg",
        "-nodefaults",
        "-display",
        "none",
        "-S",
        ...vmNetworkArgs({ hostPort: 0, guestPort: 8443 }, qmpSocket),
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    try {
      const deadline = Date.now() + 10_000;
      while (!(await Deno.stat(qmpSocket).then(() => true, () => false))) {
        assert.ok(Date.now() < deadline, "QEMU did not open its QMP socket");
        await new Promise((r) => setTimeout(r, 20));
      }
      const ports = await qmpForwarder(qmpSocket)([35001, 35002]);
      assert.equal(ports.length, 2);
      assert.notEqual(ports[0], ports[1]);
      for (const port of ports) assert.ok(held(port), `QEMU does not hold 127.0.0.1:${port}`);
    } finally {
      qemu.kill("SIGKILL");
      await qemu.status;
      await qemu.stderr.cancel();
      await Deno.remove(dir, { recursive: true });
    }
  }),
});
