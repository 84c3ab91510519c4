/**
 * Deploy reliability with a real keepmgr on loopback: nothing a workload
 * prints is lost to a client that reads slowly, and idle connections to a
 * keep's forwarded port cannot keep the client out.
 */
import assert from "node:assert/strict";
import { deploy, DeployError } from "../../runtime/client/deploy.ts";
import { decodeCbor } from "../../runtime/protocol/cbor.ts";
import {
  hostileKeepmgr,
  keepProcesses,
  LOOP_WAT,
  SIM_ROOT,
  startKeepmgr,
  STREAMS_WAT,
  taggedProcesses,
  workload,
} from "./_deploy_fixture.ts";

const isKey = (path: string) => /^\/v1\/keeps\/[^/]+\/key$/.test(path);

/** A WASI command that writes `chunks` times 64 KiB of "x" to stdout, then exits with 5. */
function bigOutputWat(chunks: number): string {
  return `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 2)
  (func (export "_start") (local $i i32)
    (memory.fill (i32.const 1024) (i32.const 120) (i32.const 65536))
    (i32.store (i32.const 0) (i32.const 1024)) (i32.store (i32.const 4) (i32.const 65536))
    (loop $l
      (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const ${chunks}))))
    (call $exit (i32.const 5))))`;
}

async function closeAndCheck(mgr: { close(): Promise<void>; tag: string }) {
  await mgr.close();
  assert.deepEqual(taggedProcesses(mgr.tag), []);
}

Deno.test("reliability: 8 MiB of output reach a client reading at about 1 MB/s, with the exit status", async () => {
  const mgr = await startKeepmgr();
  try {
    let received = 0;
    let wrong = 0;
    const started = performance.now();
    const result = await deploy(workload(bigOutputWat(128)), {
      keepmgr: mgr.url,
      keepmgrToken: mgr.token,
      trustSimulated: SIM_ROOT,
      timeoutMs: 120_000,
      onStdout: async (chunk) => {
        received += chunk.length;
        for (const b of chunk) if (b !== 0x78) wrong++;
        // About 1 MB/s: a client slower than the keep, the forward and keepmgr's drain.
        await new Promise((r) => setTimeout(r, chunk.length / 1000));
      },
    });
    const seconds = (performance.now() - started) / 1000;
    assert.equal(received, 8 * 1024 * 1024, `after ${seconds.toFixed(1)} s`);
    assert.equal(wrong, 0);
    assert.equal(result.status, 5);
    assert.equal(result.reason, "exit");
  } finally {
    await closeAndCheck(mgr);
  }
});

Deno.test("reliability: 20 idle connections on a new forward do not keep the client out", async () => {
  const mgr = await startKeepmgr();
  const idle: Deno.TcpConn[] = [];
  try {
    await using host = hostileKeepmgr(mgr.url, {
      reply: async (path, reply) => {
        if (!isKey(path) || reply.status !== 200) return reply;
        const { connect } = decodeCbor(reply.body) as { connect: { port: number } };
        // Another local user fills every place on the forward and says nothing.
        for (let i = 0; i < 20; i++) {
          try {
            idle.push(await Deno.connect({ hostname: "127.0.0.1", port: connect.port }));
          } catch { /* refused: fine */ }
        }
        await new Promise((r) => setTimeout(r, 1_500));
        return reply;
      },
    });
    const out: string[] = [];
    const result = await deploy(workload(STREAMS_WAT), {
      keepmgr: host.url,
      keepmgrToken: mgr.token,
      trustSimulated: SIM_ROOT,
      timeoutMs: 60_000,
      onStdout: (c) => void out.push(new TextDecoder().decode(c)),
    });
    assert.equal(result.status, 7);
    assert.equal(out.join(""), "out\n");
  } finally {
    for (const conn of idle) {
      try {
        conn.close();
      } catch { /* closed by the forward */ }
    }
    await closeAndCheck(mgr);
  }
});

Deno.test("reliability: a keep killed while the workload runs: the client prints the reason keepmgr knows", async () => {
  const mgr = await startKeepmgr();
  try {
    const failure = await deploy(workload(LOOP_WAT), {
      keepmgr: mgr.url,
      keepmgrToken: mgr.token,
      trustSimulated: SIM_ROOT,
      timeoutMs: 60_000,
      onStep: (event) => {
        if (event.kind !== "step-start" || event.id !== "run") return;
        for (const pid of keepProcesses(mgr)) Deno.kill(pid, "SIGKILL");
      },
    }).then(
      (result) => assert.fail(`the deploy succeeded: ${JSON.stringify(result.status)}`),
      (error) => error,
    );
    assert.ok(failure instanceof DeployError, String(failure));
    assert.equal(failure.step, "run");
    assert.equal(failure.exitStatus, 69, failure.message);
    assert.match(
      failure.message,
      /keepmgr says "keep-died: The keep's wasmldr was killed by SIGKILL before reporting an exit"/,
    );
  } finally {
    await closeAndCheck(mgr);
  }
});
