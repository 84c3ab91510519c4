/**
 * ffi/_bind_symbols.ts: symbols bound at once, and the lazy group bound on
 * the first use of any of its symbols, which loading's errors still reach.
 */
import assert from "node:assert/strict";
import { bindSymbols } from "../ffi/_bind_symbols.ts";

const LIBC = "libc.so.6";

class LoadFailed extends Error {}
const failure = (error: unknown) => new LoadFailed(`wrapped: ${(error as Error).message}`);

Deno.test("bindSymbols: eager symbols work at once, lazy ones on first use, bound once", () => {
  const lib = bindSymbols(LIBC, {
    getpid: { parameters: [], result: "i32" },
    getppid: { parameters: [], result: "i32" },
    getuid: { parameters: [], result: "u32" },
  }, { eager: ["getpid"], failure });
  assert.equal(lib.getpid(), Deno.pid);
  // Not yet bound: a getter stands for it.
  assert.equal(typeof Object.getOwnPropertyDescriptor(lib, "getppid")?.get, "function");
  assert.equal(lib.getppid(), Deno.ppid);
  // The whole lazy group is bound now, as plain functions.
  for (const key of ["getppid", "getuid"] as const) {
    const descriptor = Object.getOwnPropertyDescriptor(lib, key);
    assert.equal(descriptor?.get, undefined);
    assert.equal(typeof descriptor?.value, "function");
  }
  assert.equal(lib.getuid(), Deno.uid());
  assert.equal(lib.getppid, lib.getppid);
  assert.deepEqual(Object.keys(lib).sort(), ["getpid", "getppid", "getuid"]);
});

Deno.test("bindSymbols: a lazy symbol the library lacks fails its group's first use as loading would", () => {
  const symbols = {
    getpid: { parameters: [], result: "i32" },
    getppid: { parameters: [], result: "i32" },
    missing: { name: "enarx_no_such_symbol", parameters: [], result: "void" },
  } as const;
  const lib = bindSymbols(LIBC, symbols, { eager: ["getpid"], failure });
  assert.equal(lib.getpid(), Deno.pid);
  assert.throws(
    () => lib.getppid(),
    (e: unknown) => e instanceof LoadFailed && /wrapped:/.test(e.message),
  );
  // Without groups the same table fails when it is bound.
  assert.throws(() => bindSymbols(LIBC, symbols), /enarx_no_such_symbol/);
});
