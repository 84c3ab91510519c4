import assert from "node:assert/strict";
import {
  LibwasmtimeNotFoundError,
  libwasmtimePath,
  type LibwasmtimePathOptions,
} from "../../runtime/wasm/libwasmtime_path.ts";
import { fileURLToPath as fromFileUrl } from "node:url";
import { WASMTIME_VERSION } from "../../runtime/version.ts";

const FAKE_LIBRARY = new TextEncoder().encode("\x7fELF not really a library, but bytes to extract");

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A temporary layout: an embedded dir (library + .sha256), a cache home, an empty checkout. */
async function layout(digest?: string) {
  const root = await Deno.makeTempDir({ prefix: "enarx-libwasmtime-" });
  await Deno.mkdir(`${root}/embed`);
  await Deno.writeFile(`${root}/embed/libwasmtime.so`, FAKE_LIBRARY);
  await Deno.writeTextFile(
    `${root}/embed/libwasmtime.so.sha256`,
    `${digest ?? await sha256Hex(FAKE_LIBRARY)}  libwasmtime.so\n`,
  );
  await Deno.mkdir(`${root}/checkout`);
  const env: Record<string, string> = { XDG_CACHE_HOME: `${root}/xdg` };
  const options: LibwasmtimePathOptions = {
    getEnv: (name) => env[name],
    standalone: true,
    embeddedDir: new URL(`file://${root}/embed/`),
    checkoutCache: `${root}/checkout`,
  };
  return { root, env, options };
}

Deno.test("libwasmtimePath: ENARX_LIBWASMTIME wins when it names a file", async () => {
  const { root, env, options } = await layout();
  try {
    env.ENARX_LIBWASMTIME = `${root}/embed/libwasmtime.so`;
    assert.equal(await libwasmtimePath(options), `${root}/embed/libwasmtime.so`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("libwasmtimePath: ENARX_LIBWASMTIME naming no file is a clear error", async () => {
  const { root, env, options } = await layout();
  try {
    env.ENARX_LIBWASMTIME = `${root}/missing.so`;
    await assert.rejects(libwasmtimePath(options), (error: unknown) => {
      assert.ok(error instanceof LibwasmtimeNotFoundError);
      assert.equal(error.code, "libwasmtime-not-found");
      assert.equal(error.exitStatus, 69);
      assert.match(error.message, /missing\.so/);
      return true;
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("libwasmtimePath: a compiled binary extracts its copy once, under its digest", async () => {
  const { root, options } = await layout();
  try {
    const digest = await sha256Hex(FAKE_LIBRARY);
    const path = await libwasmtimePath(options);
    assert.equal(
      path,
      `${root}/xdg/enarx/wasmtime-${WASMTIME_VERSION}-${digest.slice(0, 16)}/libwasmtime.so`,
    );
    assert.deepEqual(await Deno.readFile(path), FAKE_LIBRARY);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o755);
    const entries = [...Deno.readDirSync(path.slice(0, path.lastIndexOf("/")))];
    assert.deepEqual(entries.map((e) => e.name), ["libwasmtime.so"], "no temporary file left");
    // Second start: reused, not rewritten.
    const before = (await Deno.stat(path)).mtime;
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(await libwasmtimePath(options), path);
    assert.deepEqual((await Deno.stat(path)).mtime, before);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("libwasmtimePath: a truncated extracted copy is replaced", async () => {
  const { root, options } = await layout();
  try {
    const path = await libwasmtimePath(options);
    await Deno.writeFile(path, FAKE_LIBRARY.subarray(0, 5));
    assert.equal(await libwasmtimePath(options), path);
    assert.deepEqual(await Deno.readFile(path), FAKE_LIBRARY);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("libwasmtimePath: an embedded copy that fails its sha256 is refused", async () => {
  const { root, options } = await layout("00".repeat(32));
  try {
    await assert.rejects(libwasmtimePath(options), (error: unknown) => {
      assert.ok(error instanceof LibwasmtimeNotFoundError);
      assert.match(error.message, /expected "0{64}"/);
      return true;
    });
    assert.throws(() => Deno.statSync(`${root}/xdg`), Deno.errors.NotFound, "nothing is written");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("libwasmtimePath: falls back to the checkout's cache, then says what to do", async () => {
  const { root, options } = await layout();
  try {
    const notCompiled = { ...options, standalone: false };
    await assert.rejects(libwasmtimePath(notCompiled), (error: unknown) => {
      assert.ok(error instanceof LibwasmtimeNotFoundError);
      assert.match(error.message, /ENARX_LIBWASMTIME/);
      assert.match(error.message, /\.\/enarx/);
      return true;
    });
    const dir = `${root}/checkout/wasmtime-${WASMTIME_VERSION}`;
    await Deno.mkdir(dir);
    await Deno.writeFile(`${dir}/libwasmtime.so`, FAKE_LIBRARY);
    assert.equal(await libwasmtimePath(notCompiled), `${dir}/libwasmtime.so`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("libwasmtimePath: finds the library where tools/bootstrap.sh puts it", async () => {
  const root = await Deno.makeTempDir({ prefix: "enarx-libwasmtime-" });
  try {
    const env: Record<string, string> = { XDG_CACHE_HOME: `${root}/xdg` };
    const options: LibwasmtimePathOptions = { getEnv: (name) => env[name], standalone: false };
    const inXdg = `${root}/xdg/enarx/wasmtime-${WASMTIME_VERSION}`;
    await Deno.mkdir(inXdg, { recursive: true });
    await Deno.writeFile(`${inXdg}/libwasmtime.so`, FAKE_LIBRARY);
    assert.equal(await libwasmtimePath(options), `${inXdg}/libwasmtime.so`);
    // ENARX_CACHE wins over XDG_CACHE_HOME, as in tools/bootstrap.sh.
    env.ENARX_CACHE = `${root}/enarx-cache`;
    await assert.rejects(libwasmtimePath(options), (error: unknown) => {
      assert.ok(error instanceof LibwasmtimeNotFoundError);
      assert.match(error.message, /enarx-cache\/wasmtime-/);
      return true;
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("enarx run finds libwasmtime without ENARX_LIBWASMTIME", async () => {
  const repo = new URL("../../", import.meta.url);
  const real = Deno.env.get("ENARX_LIBWASMTIME") ??
    fromFileUrl(new URL(`.cache/wasmtime-${WASMTIME_VERSION}/libwasmtime.so`, repo));
  const cache = await Deno.makeTempDir({ prefix: "enarx-libwasmtime-" });
  try {
    await Deno.mkdir(`${cache}/wasmtime-${WASMTIME_VERSION}`);
    await Deno.symlink(real, `${cache}/wasmtime-${WASMTIME_VERSION}/libwasmtime.so`);
    const env = Deno.env.toObject();
    delete env.ENARX_LIBWASMTIME;
    env.ENARX_CACHE = cache;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", fromFileUrl(new URL("cli/main.ts", repo)), "run", "--no-cache"]
        .concat(fromFileUrl(new URL("examples/hello.wat", repo))),
      env,
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(new TextDecoder().decode(out.stderr), "");
    assert.equal(out.code, 0);
    assert.match(new TextDecoder().decode(out.stdout), /^Hello/);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});
