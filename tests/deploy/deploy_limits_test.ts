/**
 * A keep's resource limits with a real keepmgr on loopback: a workload stopped
 * for memory reports 126 with the limit named, keepmgr refuses a keep whose
 * memory would pass the total of all keeps, and the client refuses a module
 * over the keep's upload limit before it creates a keep.
 */
import assert from "node:assert/strict";
import { deploy } from "../../runtime/client/deploy.ts";
import { KeepmgrClient } from "../../runtime/client/keepmgr_client.ts";
import { PROBE_WASM, startKeepmgr, taggedProcesses, workload } from "./_deploy_fixture.ts";

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
        allowSimulated: true,
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
    const client = new KeepmgrClient(mgr.url);
    const first = await client.createKeep("nil", crypto.getRandomValues(new Uint8Array(32)));
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${dir}/m.wat`, "(module)");
      const r = await enarx([
        "deploy",
        "--keepmgr",
        mgr.url,
        "--insecure-allow-simulated",
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
