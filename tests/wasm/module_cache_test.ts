/** The compiled-module cache: hits, misses, stale and corrupt entries. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Engine, Linker, Store, WasiConfig, wat2wasm } from "../../ffi/wasmtime/mod.ts";
import {
  type CacheOutcome,
  checkCacheDir,
  compileModule,
  compileModuleFile,
  decodeModuleBytes,
  defaultModuleCacheDir,
  moduleCacheKey,
  moduleCachePath,
  QUIET_MS,
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
    // One entry: the compiled code and its record, named by the key.
    const entries = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.equal(entries.length, 2);
    assert.match(entries[0], /^[0-9a-f]{64}\.cwasm$/);
    assert.equal(entries[1], entries[0].replace(".cwasm", ".json"));
    for (const name of entries) assert.equal(Deno.statSync(join(dir, name)).mode! & 0o777, 0o600);
    assert.equal(Deno.statSync(dir).mode! & 0o077, 0);
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

    const otherHeader = new Uint8Array(good);
    otherHeader[8] ^= 1; // in the ELF header
    await Deno.writeFile(path, otherHeader);
    assert.deepEqual(await compileAndRun(engine, dir), ["rejected", 42]);

    // A record that names another key, or describes another file.
    const recordPath = path.replace(/\.cwasm$/, ".json");
    const record = JSON.parse(await Deno.readTextFile(recordPath));
    await Deno.writeTextFile(recordPath, JSON.stringify({ ...record, key: "00".repeat(32) }));
    assert.deepEqual(await compileAndRun(engine, dir), ["rejected", 42]);
    const fresh = JSON.parse(await Deno.readTextFile(recordPath));
    await Deno.writeTextFile(
      recordPath,
      JSON.stringify({ ...fresh, code: { ...fresh.code, ino: fresh.code.ino + 1 } }),
    );
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

/** Runs the module in file `path` through compileModuleFile; gives the outcome, how, and the exit status. */
async function runFile(
  engine: Engine,
  path: string,
  dir: string,
): Promise<[CacheOutcome | undefined, string | undefined, number]> {
  let outcome: CacheOutcome | undefined;
  let via: string | undefined;
  using module = await compileModuleFile(engine, path, {
    cacheDir: dir,
    onCache: (o, detail) => {
      outcome = o;
      via = detail.via;
    },
  });
  using store = new Store(engine);
  store.setWasi(new WasiConfig());
  using linker = new Linker(engine);
  const made = await linker.instantiate(store, module);
  assert.ok("instance" in made);
  const result = await made.instance.callNonblocking("_start");
  assert.equal(result.kind, "exit");
  return [outcome, via, result.kind === "exit" ? result.status : -1];
}

Deno.test("module cache: a module file quiet for QUIET_MS is found by its identity; a changed one is recompiled, never run stale", async () => {
  const work = await Deno.makeTempDir();
  try {
    const dir = join(work, "cache");
    const file = join(work, "m.wat");
    using engine = new Engine();
    await Deno.writeTextFile(file, WAT);
    // Fresh files are hashed every time, and get no link.
    assert.deepEqual(await runFile(engine, file, dir), ["miss", "hash", 42]);
    assert.deepEqual(await runFile(engine, file, dir), ["hit", "hash", 42]);
    assert.ok(![...Deno.readDirSync(dir)].some((e) => e.name.startsWith("file-")));
    await new Promise((r) => setTimeout(r, QUIET_MS + 100));
    assert.deepEqual(await runFile(engine, file, dir), ["hit", "hash", 42]);
    assert.deepEqual(await runFile(engine, file, dir), ["hit", "identity", 42]);

    // Rewritten in place with the same size: found again by hash, the new module runs.
    await Deno.writeTextFile(file, WAT.replace("42", "43"));
    assert.deepEqual(await runFile(engine, file, dir), ["miss", "hash", 43]);
    assert.deepEqual(await runFile(engine, file, dir), ["hit", "hash", 43]);
    // Changed back (same size again) with its old mtime restored: ctime still tells.
    const old = Deno.statSync(file).mtime!;
    await Deno.writeTextFile(file, WAT);
    await Deno.utime(file, old, old);
    assert.deepEqual(await runFile(engine, file, dir), ["hit", "hash", 42]);

    // A link that names another entry is not trusted blindly: its entry must exist.
    await new Promise((r) => setTimeout(r, QUIET_MS + 100));
    assert.deepEqual(await runFile(engine, file, dir), ["hit", "hash", 42]);
    const link = [...Deno.readDirSync(dir)].find((e) => e.name.startsWith("file-"))!.name;
    const record = JSON.parse(await Deno.readTextFile(join(dir, link)));
    await Deno.writeTextFile(
      join(dir, link),
      JSON.stringify({ ...record, key: "00".repeat(32) }),
    );
    assert.deepEqual(await runFile(engine, file, dir), ["hit", "hash", 42]);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("module cache: a directory others can write is refused (bypassed, nothing read or written)", async () => {
  const work = await Deno.makeTempDir();
  try {
    using engine = new Engine();
    const open = join(work, "open");
    await Deno.mkdir(open);
    await Deno.chmod(open, 0o777);
    const refusals: string[] = [];
    const wasm = new Uint8Array(wat2wasm(WAT));
    const compileIn = async (dir: string) => {
      let outcome: CacheOutcome | undefined;
      const module = await compileModule(engine, wasm, {
        cacheDir: dir,
        onCache: (o, d) => {
          outcome = o;
          if (d.reason) refusals.push(d.reason);
        },
      });
      module.close();
      return outcome;
    };
    assert.equal(await compileIn(open), "refused");
    assert.deepEqual([...Deno.readDirSync(open)], []);
    assert.match(refusals.at(-1)!, /is writable by others \(mode 0777\); run chmod go-w/);
    assert.equal(checkCacheDir(open).ok, false);

    // Below a parent others can write (not sticky): they could swap the directory.
    await Deno.mkdir(join(open, "cache"), { mode: 0o700 });
    assert.equal(await compileIn(join(open, "cache")), "refused");
    assert.match(refusals.at(-1)!, new RegExp(`"${open}" is writable by others`));
    // Sticky, like /tmp: others cannot rename what is ours.
    await Deno.chmod(open, 0o1777);
    assert.equal(await compileIn(join(open, "cache")), "miss");
    assert.equal(await compileIn(join(open, "cache")), "hit");

    // Refused in enarx run too, with the reason on stderr and the right result.
    await Deno.chmod(open, 0o777);
    const tmp = join(work, "m.wat");
    await Deno.writeTextFile(tmp, WAT);
    const real = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        new URL("../../cli/main.ts", import.meta.url).pathname,
        "run",
        tmp,
      ],
      env: { ENARX_MODULE_CACHE: join(open, "cache") },
      stderr: "piped",
    }).output();
    assert.equal(real.code, 42);
    assert.match(
      new TextDecoder().decode(real.stderr),
      /enarx: not using the module cache: .*writable by others/,
    );
  } finally {
    await Deno.chmod(join(work, "open"), 0o755).catch(() => {});
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test({
  name: "module cache: a directory or entry owned by another user is refused or rejected",
  ignore: Deno.uid() !== 0,
  fn: async () => {
    const work = await Deno.makeTempDir();
    try {
      using engine = new Engine();
      const dir = join(work, "cache");
      await Deno.mkdir(dir, { mode: 0o700 });
      await Deno.chown(dir, 65534, 65534);
      const wasm = new Uint8Array(wat2wasm(WAT));
      let outcome: CacheOutcome | undefined;
      let reason: string | undefined;
      const onCache = (o: CacheOutcome, d: { reason?: string }) => {
        outcome = o;
        reason = d.reason;
      };
      (await compileModule(engine, wasm, { cacheDir: dir, onCache })).close();
      assert.equal(outcome, "refused");
      assert.match(reason!, /belongs to uid 65534, not to you/);

      await Deno.chown(dir, 0, 0);
      (await compileModule(engine, wasm, { cacheDir: dir, onCache })).close();
      assert.equal(outcome, "miss");
      const key = await moduleCacheKey(engine, wasm);
      await Deno.chown(moduleCachePath(dir, key), 65534, 65534);
      (await compileModule(engine, wasm, { cacheDir: dir, onCache })).close();
      assert.equal(outcome, "rejected");
      assert.equal(Deno.statSync(moduleCachePath(dir, key)).uid, 0); // rewritten as ours
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  },
});
