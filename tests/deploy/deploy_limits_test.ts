/**
 * A keep's resource limits with a real keepmgr on loopback: a workload stopped
 * for memory reports 126 with the limit named, keepmgr refuses a keep whose
 * memory would pass the total of all keeps, and the client refuses a module
 * over the keep's upload limit before it creates a keep.
 */
import assert from "node:assert/strict";
import { deploy } from "../../runtime/client/deploy.ts";
import { workloadUploadBody } from "../../runtime/client/workload_upload.ts";
import { encodeCbor } from "../../runtime/protocol/cbor.ts";
import { bytesEqual, concatBytes } from "../../runtime/bytes.ts";
import { EnarxError } from "../../runtime/errors.ts";
import { KeepmgrClient } from "../../runtime/client/keepmgr_client.ts";
import {
  PROBE_WASM,
  SIM_ROOT,
  startKeepmgr,
  taggedProcesses,
  workload,
} from "./_deploy_fixture.ts";

const decoder = new TextDecoder();
const MAIN = new URL("../../cli/main.ts", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

/** Runs `enarx ARGS` as the CLI; its exit code and output. */
async function enarx(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "--allow-all", "--config", CONFIG, MAIN, ...args],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/**
 * A WASI command that asks for 512 MiB at once, as an allocator for one large
 * buffer does, and on refusal says so on stderr and aborts (a trap), as
 * Rust's allocation error handler does.
 */
const BIG_ALLOCATION_WAT = `(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "memory allocation of 536870912 bytes failed\\n")
  (func (export "_start")
    (if (i32.lt_s (memory.grow (i32.const 8192)) (i32.const 0)) (then
      (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 44))
      (drop (call $w (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
      unreachable))))`;

/** A WASI command that grows its memory 1 MiB at a time until refused, then traps. */
const GROW_LOOP_WAT = `(module (memory (export "memory") 1)
  (func (export "_start")
    (loop $l (br_if $l (i32.ge_s (memory.grow (i32.const 16)) (i32.const 0))))
    unreachable))`;

Deno.test("limits: with --keep-memory 256M, workloads stopped for memory report 126 naming the limit", async () => {
  const mgr = await startKeepmgr({ args: ["--keep-memory", "256M"] });
  try {
    const cases: [string, Uint8Array | string, string[]][] = [
      ["a single large allocation that aborts", BIG_ALLOCATION_WAT, []],
      ["memory.grow in a loop, then a trap", GROW_LOOP_WAT, []],
      ["malloc until it fails (probe hog)", Deno.readFileSync(PROBE_WASM), ["hog"]],
    ];
    for (const [what, module, args] of cases) {
      const result = await deploy(workload(module, { args }), {
        keepmgr: mgr.url,
        keepmgrToken: mgr.token,
        trustSimulated: SIM_ROOT,
        timeoutMs: 60_000,
      });
      assert.deepEqual([result.status, result.reason], [126, "memory"], what);
      assert.match(
        result.message ?? "",
        /^Workload reached its memory limit of 268435456 bytes \(keepmgr --keep-memory\)/,
        what,
      );
    }
  } finally {
    await mgr.close();
    assert.deepEqual(taggedProcesses(mgr.tag), []);
  }
});

Deno.test("limits: a create past --total-keep-memory is 503 not-enough-memory; enarx deploy exits 69", async () => {
  const mgr = await startKeepmgr({
    args: ["--keep-memory", "256M", "--total-keep-memory", "300M"],
  });
  try {
    const client = new KeepmgrClient(mgr.url, { token: mgr.token });
    const first = await client.createKeep("nil", crypto.getRandomValues(new Uint8Array(32)));
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${dir}/m.wat`, "(module)");
      const r = await enarx([
        "deploy",
        "--keepmgr",
        mgr.url,
        "--keepmgr-token",
        mgr.tokenFile,
        "--trust-simulated",
        SIM_ROOT,
        `${dir}/m.wat`,
      ]);
      assert.equal(r.code, 69, r.stderr);
      assert.match(r.stderr, /--total-keep-memory/);
      assert.match(r.stderr, /not-enough-memory|try again later/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
    // The first keep's memory is back once it is gone.
    await client.deleteKeep(first.keep);
    const again = await client.createKeep("nil", crypto.getRandomValues(new Uint8Array(32)));
    await client.deleteKeep(again.keep);
  } finally {
    await mgr.close();
  }
});

Deno.test("limits: keepmgr refuses a --keep-memory larger than --total-keep-memory (status 64)", async () => {
  const r = await enarx([
    "keepmgr",
    "--listen",
    "127.0.0.1:0",
    "--keep-memory",
    "1G",
    "--total-keep-memory",
    "512M",
  ]);
  assert.equal(r.code, 64);
  assert.match(r.stderr, /--keep-memory 1073741824 is more than --total-keep-memory 536870912/);
});

/**
 * Writes a valid module of exactly `size` bytes that does nothing: a `_start`
 * and one custom section holding zeros, made by extending the file (sparse:
 * no disk is used for the zeros).
 */
async function sparseModule(path: string, size: number): Promise<void> {
  const start = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...[0x01, 0x04, 0x01, 0x60, 0x00, 0x00], // type: () -> ()
    ...[0x03, 0x02, 0x01, 0x00], // one function of that type
    ...[0x07, 0x0a, 0x01, 0x06, ...new TextEncoder().encode("_start"), 0x00, 0x00],
    ...[0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b], // its body: end
  ];
  // A custom section named "x" to the end of the file; its size as a 5-byte LEB128.
  const content = size - start.length - 1 - 5;
  const leb = [0, 7, 14, 21, 28].map((shift, i) =>
    ((content >>> shift) & 0x7f) | (i < 4 ? 0x80 : 0)
  );
  await Deno.writeFile(path, new Uint8Array([...start, 0x00, ...leb, 0x01, 0x78]));
  await Deno.truncate(path, size);
}

Deno.test("limits: the streamed workload request is the deterministic CBOR of the whole request", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const size of [0, 23, 24, 255, 256, 65_535, 65_536, 300_000]) {
      const module = crypto.getRandomValues(new Uint8Array(Math.min(size, 65_536)));
      const bytes = new Uint8Array(size);
      for (let at = 0; at < size; at += module.length) bytes.set(module.subarray(0, size - at), at);
      await Deno.writeFile(`${dir}/m.wasm`, bytes);
      const fields = { config: "x = 1", args: ["a"], env: { K: "V" }, stdin: new Uint8Array([1]) };
      const whole = encodeCbor({ v: 1, module: bytes, ...fields });
      for (const source of [bytes, { path: `${dir}/m.wasm` }]) {
        const body = await workloadUploadBody({ module: source, ...fields });
        const parts: Uint8Array[] = [];
        for await (const chunk of body.chunks()) parts.push(chunk.slice());
        const streamed = concatBytes(...parts);
        assert.equal(body.length, whole.length, `size ${size}`);
        assert.ok(bytesEqual(streamed, whole), `size ${size}`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("limits: a 500 MB module is refused before a keep is created (exit 65, the limit named)", async () => {
  const mgr = await startKeepmgr();
  const dir = await Deno.makeTempDir();
  try {
    await sparseModule(`${dir}/big.wasm`, 500_000_000);
    const r = await enarx([
      "deploy",
      "--keepmgr",
      mgr.url,
      "--keepmgr-token",
      mgr.tokenFile,
      "--trust-simulated",
      SIM_ROOT,
      `${dir}/big.wasm`,
    ]);
    assert.equal(r.code, 65, r.stderr);
    assert.match(r.stderr, /upload limit of 64 MiB \(67108864 bytes\)/);
    const { keeps } = await new KeepmgrClient(mgr.url, { token: mgr.token }).listKeeps();
    assert.deepEqual(keeps, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await mgr.close();
  }
});

Deno.test("limits: a module file just under the upload limit streams and runs; just over is refused first", async () => {
  const mgr = await startKeepmgr();
  const dir = await Deno.makeTempDir();
  try {
    const limit = 4 * 1024 * 1024;
    // The request adds the other fields (about 40 bytes) to the module.
    await sparseModule(`${dir}/under.wasm`, limit - 64);
    const ok = await deploy(
      workload(new Uint8Array(0), { module: { path: `${dir}/under.wasm` } }),
      {
        keepmgr: mgr.url,
        keepmgrToken: mgr.token,
        trustSimulated: SIM_ROOT,
        maxUploadBytes: limit,
      },
    );
    assert.equal(ok.status, 0);
    assert.match(ok.steps.find((s) => s.id === "upload")?.detail ?? "", /^\d+ bytes accepted$/);
    await sparseModule(`${dir}/over.wasm`, limit);
    await assert.rejects(
      deploy(workload(new Uint8Array(0), { module: { path: `${dir}/over.wasm` } }), {
        keepmgr: mgr.url,
        keepmgrToken: mgr.token,
        trustSimulated: SIM_ROOT,
        maxUploadBytes: limit,
      }),
      (e) => e instanceof EnarxError && e.code === "workload-too-large" && e.exitStatus === 65,
    );
    // Nothing was created for the refused one; the accepted one's keep has exited.
    const { keeps } = await new KeepmgrClient(mgr.url, { token: mgr.token }).listKeeps();
    assert.deepEqual(keeps.map((k) => k.keep), [ok.keep]);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await mgr.close();
  }
});

Deno.test("limits: a keep's 413 mid-upload is exit 65 naming the limit, not a broken pipe", async () => {
  const mgr = await startKeepmgr();
  const dir = await Deno.makeTempDir();
  try {
    // The client thinks the limit larger than the keep's: the keep answers 413
    // to the request's head (expect: 100-continue), before the module is sent.
    await sparseModule(`${dir}/big.wasm`, 80 * 1024 * 1024);
    await assert.rejects(
      deploy(workload(new Uint8Array(0), { module: { path: `${dir}/big.wasm` } }), {
        keepmgr: mgr.url,
        keepmgrToken: mgr.token,
        trustSimulated: SIM_ROOT,
        maxUploadBytes: 1 << 30,
      }),
      (e) =>
        e instanceof EnarxError && e.code === "workload-too-large" && e.exitStatus === 65 &&
        /upload limit is 1024 MiB/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
    await mgr.close();
  }
});
