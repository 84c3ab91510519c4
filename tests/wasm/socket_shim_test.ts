/**
 * runtime/wasm/socket_shim.ts: the socket shim is built once with the C
 * compiler into the cache, under its source's digest, and a missing compiler
 * is a clear error (exit 69). In-process: the shim loads once per process.
 */
import assert from "node:assert/strict";
import { EnarxError } from "../../runtime/errors.ts";
import { loadSocketShim, socketShimCacheDir } from "../../runtime/wasm/socket_shim.ts";
import { ensureLibwasmtime, ROOT } from "../workloads/helpers.ts";

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
    const source = await Deno.readFile(`${ROOT}ffi/native/enarx_wasi_sockets.c`);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", source)).toHex();
    const built = [...Deno.readDirSync(`${cache}/wasi-sockets`)].map((e) => e.name);
    assert.deepEqual(built, [`enarx_wasi_sockets-${digest.slice(0, 16)}.so`]);
  } finally {
    for (const [name, value] of [["ENARX_CACHE", saved.cache], ["ENARX_CC", saved.cc]]) {
      if (value === undefined) Deno.env.delete(name!);
      else Deno.env.set(name!, value);
    }
    await Deno.remove(cache, { recursive: true });
  }
});
