/**
 * The run bundle (build/enarx_run.js): ./enarx builds it when missing and
 * runs it for `enarx run`; a bundle older than any of its sources never runs
 * (cli/bundle/guard.ts); arguments it does not cover run the sources. The
 * end-to-end tests work on a copy of the checkout, so that editing a source
 * touches nothing the other tests load.
 */
import assert from "node:assert/strict";
import { fileURLToPath as fromFileUrl } from "node:url";
import { type FileIdentity, fileIdentity, unchanged } from "../../cli/bundle/guard.ts";
import { runBundleCovers } from "../../cli/run.ts";

const ROOT = fromFileUrl(new URL("../../", import.meta.url));
const LIB = Deno.env.get("ENARX_LIBWASMTIME") ??
  `${ROOT}.cache/wasmtime-50.0.1/libwasmtime.so`;

Deno.test("run bundle: covers a nil run without options that load modules on demand", () => {
  for (
    const args of [
      ["x.wasm"],
      ["--dir", "/tmp", "--env", "A=1", "--fuel", "5", "--no-cache", "x.wasm"],
      ["--backend", "auto", "x.wasm"],
      ["--backend=nil", "x.wasm", "--timeout", "--help"], // the guest's words
      [], // a usage error, which the bundle reports as the sources would
    ]
  ) assert.ok(runBundleCovers(args), JSON.stringify(args));
  for (
    const args of [
      ["--help"],
      ["--backend", "kvm", "x.wasm"],
      ["--backend", "nope", "x.wasm"],
      ["--timeout", "1s", "x.wasm"],
      ["--max-memory", "1MiB", "x.wasm"],
      ["--wasmcfgfile", "Enarx.toml", "x.wasm"],
      ["--listen", "a=127.0.0.1:0", "x.wasm"],
      ["--connect", "a=localhost:1", "x.wasm"],
      ["--service-name", "a.example", "x.wasm"],
      ["--bogus", "x.wasm"],
    ]
  ) assert.ok(!runBundleCovers(args), JSON.stringify(args));
});

Deno.test("run bundle: a file's identity changes with an edit, and unchanged() sees it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/a.ts`, "one");
    const record: Record<string, FileIdentity> = {
      "a.ts": fileIdentity(`${dir}/a.ts`),
      "absent.ts": null,
    };
    assert.ok(unchanged(record, `${dir}/`));
    await Deno.writeTextFile(`${dir}/absent.ts`, "");
    assert.ok(!unchanged(record, `${dir}/`), "a file that was absent appeared");
    await Deno.remove(`${dir}/absent.ts`);
    await new Promise((resolve) => setTimeout(resolve, 5)); // mtime counts milliseconds
    await Deno.writeTextFile(`${dir}/a.ts`, "two");
    assert.ok(!unchanged(record, `${dir}/`), "same size, new content");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A copy of what ./enarx needs of this checkout, with the checkout's node_modules and libwasmtime. */
async function copyCheckout(): Promise<{ root: string; env: Record<string, string> }> {
  const root = await Deno.makeTempDir({ prefix: "enarx-bundle-" });
  const copy = new Deno.Command("cp", {
    args: ["-R", "cli", "runtime", "ffi", "tools", "examples", "deno.json", "enarx", root],
    cwd: ROOT,
  });
  assert.ok((await copy.output()).success);
  for (const file of ["package.json", "package-lock.json"]) {
    await Deno.copyFile(`${ROOT}${file}`, `${root}/${file}`);
    // ./enarx's fast path wants the npm stamp newer than the lock file.
    const { atime, mtime } = await Deno.stat(`${ROOT}${file}`);
    await Deno.utime(`${root}/${file}`, atime!, mtime!);
  }
  await Deno.symlink(`${ROOT}node_modules`, `${root}/node_modules`);
  const cache = `${root}/.cache`;
  await Deno.mkdir(`${cache}/wasmtime-50.0.1`, { recursive: true, mode: 0o700 });
  await Deno.chmod(cache, 0o700);
  await Deno.symlink(LIB, `${cache}/wasmtime-50.0.1/libwasmtime.so`);
  const env: Record<string, string> = { ENARX_CACHE: cache, ENARX_LIBWASMTIME: "" };
  // A Deno cache of the copy's own, so that the copy's modules leave no code-cache rows in the
  // shared one; Deno's esbuild (for deno bundle) and npm downloads are shared.
  const shared = Deno.env.get("DENO_DIR");
  if (shared) {
    env.DENO_DIR = `${root}/.cache/deno`;
    await Deno.mkdir(env.DENO_DIR, { recursive: true });
    for (const dir of ["dl", "npm"]) {
      await Deno.mkdir(`${shared}/${dir}`, { recursive: true });
      await Deno.symlink(`${shared}/${dir}`, `${env.DENO_DIR}/${dir}`);
    }
  }
  return { root, env };
}

async function runIn(root: string, env: Record<string, string>, args: string[]) {
  const out = await new Deno.Command(`${root}/enarx`, {
    args,
    cwd: root,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

const USAGE = "Expected one MODULE";

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

Deno.test("run bundle: ./enarx builds it, runs it, and never runs it once a source changed", async () => {
  const { root, env } = await copyCheckout();
  const bundle = `${root}/build/enarx_run.js`;
  try {
    const first = await runIn(root, env, ["run", "examples/hello.wat"]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout, "Hello from a WebAssembly keep!\n");
    assert.ok(await exists(bundle), "the first run builds the bundle");

    // Marked, so that a run shows whether the bundle ran: the mark is in no source.
    const text = await Deno.readTextFile(bundle);
    assert.ok(text.includes(USAGE));
    await Deno.writeTextFile(bundle, text.replace(USAGE, `${USAGE} (bundle)`));
    const fromBundle = await runIn(root, env, ["run"]);
    assert.equal(fromBundle.code, 64);
    assert.match(fromBundle.stderr, /Expected one MODULE \(bundle\)/);
    // Options that load modules on demand run the sources.
    const help = await runIn(root, env, ["run", "--timeout", "1s"]);
    assert.equal(help.code, 64);
    assert.match(help.stderr, /Expected one MODULE;/);

    // An edit of a source: the edited code runs, the stale bundle is gone.
    const run = `${root}/cli/run.ts`;
    const source = await Deno.readTextFile(run);
    await Deno.writeTextFile(run, source.replace(USAGE, `${USAGE} (edited)`));
    const edited = await runIn(root, env, ["run"]);
    assert.equal(edited.code, 64);
    assert.match(edited.stderr, /Expected one MODULE \(edited\)/);
    assert.ok(!await exists(bundle), "the stale bundle deleted itself");
    // The next run builds it again, from the edited source.
    const rebuilt = await runIn(root, env, ["run"]);
    assert.match(rebuilt.stderr, /Expected one MODULE \(edited\)/);
    assert.ok((await Deno.readTextFile(bundle)).includes(`${USAGE} (edited)`));

    // A file put back with its old mtime and size (cp -p, tar, touch -d)
    // still has a new ctime. (ctime counts in whole seconds: wait for the next.)
    const marked = await Deno.readTextFile(bundle);
    await Deno.writeTextFile(bundle, marked.replace(`${USAGE} (edited)`, `${USAGE} (bundle)`));
    assert.match((await runIn(root, env, ["run"])).stderr, /\(bundle\)/);
    const errors = `${root}/runtime/errors.ts`;
    const before = await Deno.stat(errors);
    const original = await Deno.readTextFile(errors);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await Deno.writeTextFile(errors, original.replace("usage: 64", "usage: 65"));
    await Deno.utime(errors, before.atime!, before.mtime!);
    const after = await Deno.stat(errors);
    assert.equal(after.size, before.size);
    assert.equal(after.mtime!.getTime(), before.mtime!.getTime());
    const replaced = await runIn(root, env, ["run"]);
    assert.equal(replaced.code, 65, "the replaced errors.ts ran");
    assert.doesNotMatch(replaced.stderr, /\(bundle\)/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("run bundle: the guard is the first module code the bundle runs, and it records every source", async () => {
  const { root, env } = await copyCheckout();
  try {
    const build = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", `${root}/tools/build_run_bundle.ts`],
      env,
    }).output();
    assert.ok(build.success, new TextDecoder().decode(build.stderr));
    const text = await Deno.readTextFile(`${root}/build/enarx_run.js`);
    const guard = text.indexOf("// cli/bundle/guard.ts\n");
    assert.ok(guard > 0);
    assert.doesNotMatch(text.slice(0, guard), /^init_\w+\(\);?$/m);
    const modules = [...text.matchAll(/^\/\/ ([\w./-]+\.ts)$/gm)].map((m) => m[1]);
    const record = JSON.parse(
      JSON.parse(/^var BUILT_FROM = ("(?:[^"\\]|\\.)*");$/m.exec(text)![1]),
    );
    for (const module of modules) assert.ok(module in record, `${module} is recorded`);
    for (const file of ["deno.json", "package-lock.json"]) assert.ok(file in record);
    assert.ok(modules.includes("runtime/wasm/workload.ts"));
    assert.ok(!modules.includes("runtime/wasm/sockets.ts"), "no socket code in the bundle");
    assert.ok(!modules.includes("runtime/wasm/socket_shim.ts"));
    assert.ok(!text.includes('from "node:'), "no Node compatibility layer in the bundle");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("run bundle: a build that fails runs the sources, and is not tried on every run", async () => {
  const { root, env } = await copyCheckout();
  try {
    // A build script that counts its runs and fails (as offline, or with sources that do not bundle).
    await Deno.writeTextFile(
      `${root}/tools/build_run_bundle.ts`,
      `Deno.writeTextFileSync("${root}/builds", "x", { append: true }); Deno.exit(1);\n`,
    );
    for (let i = 0; i < 2; i++) {
      const r = await runIn(root, env, ["run", "examples/hello.wat"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "Hello from a WebAssembly keep!\n");
    }
    assert.equal(
      await Deno.readTextFile(`${root}/builds`),
      "x",
      "one build tried, then an hour's rest",
    );
    assert.ok(await exists(`${root}/build/enarx_run.failed`));
    assert.ok(!await exists(`${root}/build/enarx_run.js`));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
