/**
 * runtime/wasm/socket_shim.ts: the socket shim is built once with the C
 * compiler into the cache, under a digest of its source and recipe, the same
 * bytes in every cache (a VM keep's image holds it, and is measured); a
 * prebuilt one is taken from ENARX_SOCKET_SHIM; a missing compiler is a
 * clear error (exit 69). In-process: the shim loads once per process.
 */
import assert from "node:assert/strict";
import { EnarxError } from "../../runtime/errors.ts";
import {
  buildSocketShim,
  loadSocketShim,
  SOCKET_SHIM_ENV,
  socketShimCacheDir,
} from "../../runtime/wasm/socket_shim.ts";
import { ensureLibwasmtime } from "../workloads/helpers.ts";

ensureLibwasmtime();

Deno.test("socket shim: a missing compiler is exit 69, then it builds once into the cache", async () => {
  const cache = await Deno.makeTempDir();
  const saved = { cache: Deno.env.get("ENARX_CACHE"), cc: Deno.env.get("ENARX_CC") };
  try {
    Deno.env.set("ENARX_CACHE", cache);
    assert.equal(socketShimCacheDir(), `${cache}/wasi-sockets`);
    Deno.env.set("ENARX_CC", `${cache}/no-such-cc`);
    await assert.rejects(
      loadSocketShim(),
      (e: unknown) =>
        e instanceof EnarxError && e.code === "socket-shim-no-compiler" && e.exitStatus === 69 &&
        /need a C compiler once.*"[^"]*no-such-cc" was found: install gcc .* or set ENARX_CC$/
          .test(e.message),
    );
    Deno.env.set("ENARX_CC", "gcc");
    await loadSocketShim();
    const built = [...Deno.readDirSync(`${cache}/wasi-sockets`)].map((e) => e.name);
    assert.equal(built.length, 1);
    assert.match(built[0], /^enarx_wasi_sockets-[0-9a-f]{16}\.so$/);
  } finally {
    for (const [name, value] of [["ENARX_CACHE", saved.cache], ["ENARX_CC", saved.cc]]) {
      if (value === undefined) Deno.env.delete(name!);
      else Deno.env.set(name!, value);
    }
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("socket shim: two caches build the same bytes; ENARX_SOCKET_SHIM names a prebuilt one", async () => {
  const dirs = [await Deno.makeTempDir(), await Deno.makeTempDir()];
  const saved = Deno.env.get("ENARX_CACHE");
  try {
    const paths: string[] = [];
    for (const dir of dirs) {
      Deno.env.set("ENARX_CACHE", dir);
      paths.push(await buildSocketShim());
    }
    assert.notEqual(paths[0], paths[1]);
    assert.equal(paths[0].split("/").pop(), paths[1].split("/").pop());
    // Reproducible: a kvm keep image that holds it measures the same on every host alike.
    assert.deepEqual(await Deno.readFile(paths[0]), await Deno.readFile(paths[1]));
    // No build folder is left behind.
    assert.deepEqual([...Deno.readDirSync(`${dirs[0]}/wasi-sockets`)].length, 1);
    Deno.env.set(SOCKET_SHIM_ENV, "/app/enarx_wasi_sockets.so");
    assert.equal(await buildSocketShim(), "/app/enarx_wasi_sockets.so");
  } finally {
    Deno.env.delete(SOCKET_SHIM_ENV);
    if (saved === undefined) Deno.env.delete("ENARX_CACHE");
    else Deno.env.set("ENARX_CACHE", saved);
    for (const dir of dirs) await Deno.remove(dir, { recursive: true });
  }
});
