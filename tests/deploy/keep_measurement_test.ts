/** The measurement of a nil keep's wasmldr: what it covers and how the single binary carries it. */
import assert from "node:assert/strict";
import {
  nilKeepInputs,
  readEmbeddedMeasurement,
  TEST_MEASURED_EXTRA_ENV,
  wasmldrFiles,
  wasmldrMeasurement,
} from "../../runtime/keep/measurement.ts";

const ROOT = new URL("../../", import.meta.url);
const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

Deno.test("measurement: covers wasmldr's import graph, including the wasmtime FFI, and nothing of the client", async () => {
  const files = await wasmldrFiles();
  for (
    const f of [
      "cli/wasmldr.ts",
      "runtime/keep/wasmldr.ts",
      "runtime/wasm/workload.ts",
      "ffi/wasmtime/engine.ts",
      "ffi/wasmtime/library.ts",
      "ffi/wasmtime/linker.ts",
      // Loaded on demand by a computed specifier; covered through its type import.
      "ffi/wasmtime/pipe.ts",
      "ffi/libc.ts",
    ]
  ) {
    assert.ok(files.includes(f), f);
  }
  assert.ok(!files.includes("runtime/client/deploy.ts"));
  assert.deepEqual(files, [...files].sort());
  const m = await wasmldrMeasurement();
  assert.equal(m.length, 48);
});

Deno.test("measurement: the nil keep's inputs include the socket shim's C source and the lock file, with their digests", async () => {
  const inputs = await nilKeepInputs({ digestCache: false });
  for (const path of ["ffi/native/enarx_wasi_sockets.c", "package-lock.json"]) {
    const input = inputs.find((i) => i.role === `app/${path}`);
    assert.ok(input !== undefined, path);
    const bytes = await Deno.readFile(new URL(path, ROOT));
    assert.equal(
      hex(input.sha256),
      hex(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))),
      path,
    );
  }
});

Deno.test("measurement: every module wasmldr's code loads by a computed specifier is measured too", async () => {
  // The graph is followed through literal specifiers (and type imports); a
  // module loaded by `import(NAME)` or `import(new URL("./x.ts", ...))` is
  // measured only if something imports it literally. An unmeasured module
  // would run in the keep without changing its measurement (and be missing
  // from a kvm keep's disk, which holds these files).
  const files = await wasmldrFiles();
  // The host's and the client's, never loaded in a keep: the VM launchers
  // and the expected measurement of VM keeps (the backend modules that name
  // them are in wasmldr's graph for their evidence formats).
  const hostOnly = new Set([
    "runtime/backends/kvm_vm.ts",
    "runtime/backends/sev/sev_launch.ts",
    "runtime/measure/keep_measure.ts",
  ]);
  const computed: string[] = [];
  const check = (file: string, target: string) => {
    const resolved = new URL(target, new URL(file, ROOT)).href.slice(ROOT.href.length);
    computed.push(resolved);
    if (hostOnly.has(resolved)) return;
    assert.ok(files.includes(resolved), `${file} loads ${resolved}, which the measurement misses`);
  };
  for (const file of files) {
    if (hostOnly.has(file)) continue; // measured through a type import, never run in a keep
    const text = await Deno.readTextFile(new URL(file, ROOT));
    const byUrl =
      /\bimport\(\s*new URL\(\s*["'](\.{1,2}\/[^"']+)["']\s*,\s*import\.meta\.url\s*\)(?:\.href)?\s*\)/g;
    for (const [, target] of text.matchAll(byUrl)) check(file, target);
    for (const [, name] of text.matchAll(/\bimport\(\s*([A-Z][A-Z0-9_]*)\s*\)/g)) {
      const decl = text.match(new RegExp(`const ${name} = ["'](\\.{1,2}/[^"']+)["']`));
      assert.ok(
        decl !== null,
        `${file}: import(${name}) names no relative path this test can follow`,
      );
      check(file, decl[1]);
    }
    const other = text.match(
      /\bimport\((?!\s*["'`]|\s*new URL\(\s*["']|\s*[A-Z][A-Z0-9_]*\s*\))[^\n]*/,
    );
    assert.equal(other, null, `${file}: a computed import this test cannot follow: ${other?.[0]}`);
  }
  // The scan found the ones known today (so it cannot pass by finding none).
  for (
    const known of ["runtime/wasm/config.ts", "ffi/wasmtime/pipe.ts", "runtime/wasm/sockets.ts"]
  ) {
    assert.ok(computed.includes(known), known);
  }
});

Deno.test("measurement: tools/wasmldr_measurement.ts prints the same value (what compile.sh embeds)", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--allow-read",
      "--config",
      new URL("deno.json", ROOT).pathname,
      new URL("tools/wasmldr_measurement.ts", ROOT).pathname,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.equal(new TextDecoder().decode(out.stdout).trim(), hex(await wasmldrMeasurement()));
});

Deno.test("measurement: the embedded value is read back exactly; absent is undefined; malformed throws", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = new URL(`file://${dir}/m.hex`);
    assert.equal(await readEmbeddedMeasurement({ file }), undefined);
    const value = crypto.getRandomValues(new Uint8Array(48));
    await Deno.writeTextFile(file, hex(value) + "\n");
    assert.deepEqual(await readEmbeddedMeasurement({ file }), value);
    await Deno.writeTextFile(file, hex(value).slice(2));
    await assert.rejects(readEmbeddedMeasurement({ file }), /not 48 bytes of hex/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("measurement: a long-running process measures a changed file again, and only then", async () => {
  const dir = await Deno.makeTempDir();
  const extra = `${dir}/extra`;
  const before = Deno.env.get(TEST_MEASURED_EXTRA_ENV);
  try {
    await Deno.writeTextFile(extra, "one");
    Deno.env.set(TEST_MEASURED_EXTRA_ENV, extra);
    // Files that changed in the last 2 s are measured again every time;
    // wait until this one is settled, so that the second call can reuse.
    await new Promise((r) => setTimeout(r, 2_100));
    const first = hex(await wasmldrMeasurement());
    assert.equal(hex(await wasmldrMeasurement()), first);
    await Deno.writeTextFile(extra, "two"); // same size, new content
    const changed = hex(await wasmldrMeasurement());
    assert.notEqual(changed, first);
    await Deno.writeTextFile(extra, "one");
    assert.equal(hex(await wasmldrMeasurement()), first);
  } finally {
    if (before === undefined) Deno.env.delete(TEST_MEASURED_EXTRA_ENV);
    else Deno.env.set(TEST_MEASURED_EXTRA_ENV, before);
    await Deno.remove(dir, { recursive: true });
  }
});
