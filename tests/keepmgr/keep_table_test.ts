/**
 * keepmgr's keep table and supervisor in one process, without keepldr: a
 * fake keep process (in-memory pipes) answers the frames, so the states,
 * limits, timeouts, records and cleanup are checked directly.
 */
import assert from "node:assert/strict";
import { FrameReader, FrameWriter } from "../../runtime/protocol/frames.ts";
import type { KeepProcess, KeepProcessStatus } from "../../runtime/keepmgr/keepldr.ts";
import { KeepError, KeepManager } from "../../runtime/keepmgr/keep_manager.ts";
import { type KeepEntry, KeepTable } from "../../runtime/keepmgr/keep_table.ts";

/** A keep process whose frames the test reads and writes. */
interface FakeKeep {
  proc: KeepProcess;
  /** Frames keepmgr sent. */
  fromManager: FrameReader;
  /** Frames to keepmgr. */
  toManager: FrameWriter;
  killed: boolean;
}

function fakeKeep(): FakeKeep {
  // Buffered like a pipe: keepmgr's writes complete though the test reads none.
  const down = new TransformStream<Uint8Array, Uint8Array>({}, undefined, { highWaterMark: 64 });
  const up = new TransformStream<Uint8Array, Uint8Array>();
  const stderr = new TransformStream<Uint8Array, Uint8Array>();
  let end!: (status: KeepProcessStatus) => void;
  const status = new Promise<KeepProcessStatus>((resolve) => end = resolve);
  const fake: FakeKeep = {
    fromManager: new FrameReader(down.readable, { peer: "keepmgr" }),
    toManager: new FrameWriter(up.writable),
    killed: false,
    proc: {
      pid: 999_999_999,
      stdin: down.writable,
      stdout: up.readable,
      stderr: stderr.readable,
      status,
      kill() {
        fake.killed = true;
        fake.toManager.close().catch(() => {});
        stderr.writable.close().catch(() => {});
        end({ code: null, signal: "SIGKILL" });
        return status.then(() => {});
      },
    },
  };
  return fake;
}

async function withManager(
  options: { stepTimeoutMs?: number; maxKeeps?: number },
  fn: (manager: KeepManager, keeps: FakeKeep[], stateDir: string) => Promise<void>,
): Promise<void> {
  const stateDir = await Deno.makeTempDir({ prefix: "enarx-keep-table-test-" });
  const keeps: FakeKeep[] = [];
  const manager = await KeepManager.open({ stateDir, ...options }, () => {
    const keep = fakeKeep();
    keeps.push(keep);
    return keep.proc;
  });
  try {
    await fn(manager, keeps, stateDir);
  } finally {
    await manager.close();
    await Deno.remove(stateDir, { recursive: true });
  }
}

const NONCE = new Uint8Array(32).fill(7);
const SEALING_KEY = new Uint8Array(65).fill(4);

/** Answers hello with evidence, as wasmldr would through keepldr. */
async function answerHello(keep: FakeKeep): Promise<Record<string, unknown>> {
  const hello = await keep.fromManager.read() as Record<string, unknown>;
  await keep.toManager.write({
    t: "evidence",
    evidence: new Uint8Array([1]),
    sealing_key: SEALING_KEY,
  });
  return hello;
}

Deno.test("keep table: a keep goes through its states, is recorded, and is freed on exit", async () => {
  await withManager({}, async (manager, keeps, stateDir) => {
    const creating = manager.create({ v: 1, backend: "auto", nonce: NONCE });
    while (keeps.length === 0) await new Promise((r) => setTimeout(r, 5));
    const hello = await answerHello(keeps[0]);
    assert.equal(hello.t, "hello");
    assert.deepEqual(hello.nonce, NONCE);
    const created = await creating;
    assert.equal(created.backend, "nil");
    assert.match(created.keep, /^[0-9a-f]{32}$/);
    assert.deepEqual(created.sealing_key, SEALING_KEY);
    assert.equal(manager.show(created.keep).state, "waiting-for-key");
    const record = JSON.parse(await Deno.readTextFile(`${stateDir}/keeps/${created.keep}.json`));
    assert.equal(record.keep, created.keep);
    assert.equal(record.pid, 999_999_999);
    assert.deepEqual(manager.pids, [999_999_999]);

    const delivering = manager.deliverKey(created.keep, {
      v: 1,
      enc: new Uint8Array(65),
      ct: new Uint8Array(16),
    }, { connectHost: "example" });
    assert.equal(((await keeps[0].fromManager.read()) as { t: string }).t, "sealed-key");
    await keeps[0].toManager.write({ t: "listening", port: 9 });
    const delivered = await delivering;
    assert.equal(delivered.connect.host, "example");
    assert.equal(manager.show(created.keep).state, "waiting-for-workload");
    await assert.rejects(
      manager.deliverKey(created.keep, { v: 1, enc: new Uint8Array(65), ct: new Uint8Array(16) }, {
        connectHost: "example",
      }),
      (e) => e instanceof KeepError && e.code === "wrong-state" && e.httpStatus === 409,
    );

    await keeps[0].toManager.write({ t: "running" });
    await keeps[0].toManager.write({ t: "exited", status: 3, reason: "exit" });
    const summary = await manager.delete(created.keep);
    assert.deepEqual(
      { state: summary.state, status: summary.status, reason: summary.reason },
      { state: "exited", status: 3, reason: "exit" },
    );
    assert.ok(keeps[0].killed);
    assert.equal(manager.activeCount, 0);
    assert.deepEqual([...Deno.readDirSync(`${stateDir}/keeps`)], []);
    assert.deepEqual([...Deno.readDirSync(`${stateDir}/work`)], []);
    assert.throws(
      () => manager.show(created.keep),
      (e) => e instanceof KeepError && e.code === "not-found",
    );
  });
});

Deno.test("keep table: a keep silent past the step timeout fails with 504 and is freed", async () => {
  await withManager({ stepTimeoutMs: 50 }, async (manager, keeps) => {
    await assert.rejects(
      manager.create({ v: 1, backend: "nil", nonce: NONCE }),
      (e) => e instanceof KeepError && e.code === "timeout" && e.httpStatus === 504,
    );
    const [summary] = manager.list();
    assert.equal(summary.state, "failed");
    assert.equal(summary.reason, "timeout waiting for evidence");
    await manager.delete(summary.keep);
    assert.ok(keeps[0].killed);
  });
});

Deno.test("keep table: limits, unknown backends and shutdown are refused with their codes", async () => {
  await withManager({ maxKeeps: 1 }, async (manager, keeps) => {
    await assert.rejects(
      manager.create({ v: 1, backend: "kvm", nonce: NONCE }),
      (e) => e instanceof KeepError && e.code === "backend-unavailable" && e.httpStatus === 400,
    );
    const first = manager.create({ v: 1, backend: "nil", nonce: NONCE });
    while (keeps.length === 0) await new Promise((r) => setTimeout(r, 5));
    await assert.rejects(
      manager.create({ v: 1, backend: "nil", nonce: NONCE }),
      (e) => e instanceof KeepError && e.code === "too-many-keeps" && e.httpStatus === 503,
    );
    const firstFails = assert.rejects(
      first,
      (e) => e instanceof KeepError && e.code === "keep-failed",
    );
    await manager.close();
    await firstFails;
    await assert.rejects(
      manager.create({ v: 1, backend: "nil", nonce: NONCE }),
      (e) => e instanceof KeepError && e.code === "shutting-down" && e.httpStatus === 503,
    );
  });
});

Deno.test("keep table: open reaps every record left in the state directory", async () => {
  const stateDir = await Deno.makeTempDir({ prefix: "enarx-keep-table-test-" });
  try {
    await Deno.mkdir(`${stateDir}/keeps`, { recursive: true });
    await Deno.mkdir(`${stateDir}/work/old0keep`, { recursive: true });
    await Deno.writeTextFile(
      `${stateDir}/keeps/old0keep.json`,
      JSON.stringify({ keep: "old0keep", pid: 1, created: "2025-01-01T00:00:00Z" }),
    );
    await Deno.writeTextFile(`${stateDir}/keeps/garbage.json`, "not json");
    const table = new KeepTable<KeepEntry>({
      stateDir,
      backends: ["nil"],
      maxKeeps: 1,
      maxFinished: 1,
    });
    const reaped: string[] = [];
    await table.open((record) => {
      reaped.push(record.keep);
      return Promise.resolve();
    });
    assert.deepEqual(reaped, ["old0keep"]);
    assert.deepEqual([...Deno.readDirSync(`${stateDir}/keeps`)], []);
    assert.deepEqual([...Deno.readDirSync(`${stateDir}/work`)], []);
  } finally {
    await Deno.remove(stateDir, { recursive: true });
  }
});

Deno.test("keep table: a keep deleted while still created ends cleanly; no rejection is left unhandled", async () => {
  await withManager({}, async (manager, keeps, stateDir) => {
    // create() runs until its first await (the work directory), so the keep is
    // "created" and no evidence can have arrived: delete it right there.
    const creating = manager.create({ v: 1, backend: "nil", nonce: NONCE });
    const failed = assert.rejects(
      creating,
      (e) => e instanceof KeepError && e.code === "keep-failed",
    );
    const [summary] = manager.list();
    assert.equal(summary.state, "created");
    const deleted = await manager.delete(summary.keep);
    assert.equal(deleted.state, "failed");
    assert.equal(deleted.reason, "deleted");
    await failed;
    // Whatever was launched was stopped, and nothing is left on disk.
    assert.ok(keeps.every((k) => k.killed));
    assert.deepEqual([...Deno.readDirSync(`${stateDir}/keeps`)], []);
    assert.deepEqual([...Deno.readDirSync(`${stateDir}/work`)], []);
    // Let any stray rejection surface before the test ends.
    await new Promise((r) => setTimeout(r, 50));
  });
});

Deno.test("keep table: close() while a keep is still created stops it without an unhandled rejection", async () => {
  await withManager({}, async (manager, keeps, stateDir) => {
    const creating = manager.create({ v: 1, backend: "nil", nonce: NONCE });
    const failed = assert.rejects(creating, (e) => e instanceof KeepError);
    await manager.close();
    await failed;
    assert.ok(keeps.every((k) => k.killed));
    assert.deepEqual([...Deno.readDirSync(`${stateDir}/keeps`)], []);
    await new Promise((r) => setTimeout(r, 50));
  });
});
