/** The compiled-module cache: hits, misses, stale and corrupt entries. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Engine, Linker, Store, WasiConfig, wat2wasm } from "../../ffi/wasmtime/mod.ts";
import {
  type CacheOutcome,
  compileModule,
  decodeModuleBytes,
  defaultModuleCacheDir,
  moduleCacheKey,
  moduleCachePath,
} from "../../runtime/wasm/module_cache.ts";
import { EnarxError } from "../../runtime/errors.ts";
import { ensureLibwasmtime } from "../workloads/helpers.ts";

ensureLibwasmtime();

const WAT = `(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 42))))`;

async function compileAndRun(
  engine: Engine,
  dir: string,
): Promise<[CacheOutcome, number]> {
  let outcome: CacheOutcome | undefined;
  const wasm = new Uint8Array(wat2wasm(WAT));
  using module = await compileModule(engine, wasm, {
    cacheDir: dir,
    onCache: (o) => outcome = o,
  });
  using store = new Store(engine);
  store.setWasi(new WasiConfig());
  using linker = new Linker(engine);
  const made = await linker.instantiate(store, module);
  assert.ok("instance" in made);
  const result = await made.instance.callNonblocking("_start");
  assert.equal(result.kind, "exit");
  return [outcome!, result.kind === "exit" ? result.status : -1];
}

Deno.test("module cache: a miss writes an entry, the next run hits it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    using engine = new Engine();
    assert.deepEqual(await compileAndRun(engine, dir), ["miss", 42]);
    assert.deepEqual(await compileAndRun(engine, dir), ["hit", 42]);
    const entries = [...Deno.readDirSync(dir)].map((e) => e.name);
    assert.equal(entries.length, 1);
    assert.match(entries[0], /^[0-9a-f]{64}\.cwasm$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("module cache: corrupt, truncated or foreign entries are rejected and rewritten", async () => {
  const dir = await Deno.makeTempDir();
  try {
    using engine = new Engine();
    await compileAndRun(engine, dir);
    const key = await moduleCacheKey(engine, new Uint8Array(wat2wasm(WAT)));
    const path = moduleCachePath(dir, key);
    const good = await Deno.readFile(path);

    const flipped = new Uint8Array(good);
    flipped[flipped.length - 100] ^= 0x40; // in the compiled code
    await Deno.writeFile(path, flipped);
    assert.deepEqual(await compileAndRun(engine, dir), ["rejected", 42]);
    assert.deepEqual(await Deno.readFile(path), good);

    await Deno.writeFile(path, good.subarray(0, good.length - 1));
    assert.deepEqual(await compileAndRun(engine, dir), ["rejected", 42]);

    const otherKey = new Uint8Array(good);
    otherKey[8] ^= 1; // the key recorded in the header
    await Deno.writeFile(path, otherKey);
    assert.deepEqual(await compileAndRun(engine, dir), ["rejected", 42]);

    await Deno.writeFile(path, new TextEncoder().encode("not an entry"));
    assert.deepEqual(await compileAndRun(engine, dir), ["rejected", 42]);
    assert.deepEqual(await compileAndRun(engine, dir), ["hit", 42]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("module cache: the key depends on the module and the engine configuration", async () => {
  const wasm = new Uint8Array(wat2wasm(WAT));
  const other = new Uint8Array(wat2wasm(WAT.replace("42", "43")));
  using plain = new Engine();
  using fuel = new Engine({ consumeFuel: true });
  using epoch = new Engine({ epochInterruption: true });
  using none = new Engine({ optLevel: "none" });
  const keys = [
    await moduleCacheKey(plain, wasm),
    await moduleCacheKey(plain, other),
    await moduleCacheKey(fuel, wasm),
    await moduleCacheKey(epoch, wasm),
    await moduleCacheKey(none, wasm),
  ].map((k) => k.join(","));
  assert.equal(new Set(keys).size, keys.length);
  using same = new Engine();
  assert.deepEqual(
    await moduleCacheKey(same, wasm),
    await moduleCacheKey(plain, wasm),
  );
});

Deno.test("module cache: an unwritable directory only costs a recompile", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "file");
    await Deno.writeTextFile(file, "");
    using engine = new Engine();
    // A cache "directory" below a regular file can never be created.
    assert.deepEqual(await compileAndRun(engine, join(file, "modules")), [
      "miss",
      42,
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("module cache: text modules, invalid modules, default directory", () => {
  const bin = decodeModuleBytes(new TextEncoder().encode("(module)"), "m.wat");
  assert.deepEqual([...bin.subarray(0, 4)], [0, 0x61, 0x73, 0x6d]);
  assert.throws(
    () => decodeModuleBytes(new Uint8Array([0xff, 0xfe]), "x.wasm"),
    (e: unknown) => e instanceof EnarxError && e.code === "module-invalid",
  );
  const saved = Deno.env.get("ENARX_CACHE");
  const savedModules = Deno.env.get("ENARX_MODULE_CACHE");
  try {
    Deno.env.set("ENARX_MODULE_CACHE", "/tmp/m");
    assert.equal(defaultModuleCacheDir(), "/tmp/m");
    Deno.env.delete("ENARX_MODULE_CACHE");
    Deno.env.set("ENARX_CACHE", "/tmp/enarx-cache-test");
    assert.equal(defaultModuleCacheDir(), "/tmp/enarx-cache-test/modules");
    Deno.env.delete("ENARX_CACHE");
    const xdg = Deno.env.get("XDG_CACHE_HOME");
    Deno.env.set("XDG_CACHE_HOME", "/tmp/xdg");
    assert.equal(defaultModuleCacheDir(), "/tmp/xdg/enarx/modules");
    if (xdg === undefined) Deno.env.delete("XDG_CACHE_HOME");
    else Deno.env.set("XDG_CACHE_HOME", xdg);
  } finally {
    if (saved === undefined) Deno.env.delete("ENARX_CACHE");
    else Deno.env.set("ENARX_CACHE", saved);
    if (savedModules !== undefined) Deno.env.set("ENARX_MODULE_CACHE", savedModules);
  }
});
