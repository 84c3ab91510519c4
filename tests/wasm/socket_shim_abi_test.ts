/**
 * The socket shim (ffi/native/enarx_wasi_sockets.c) declares the wasmtime C
 * API types and functions it uses, and the WASI constants, itself. These
 * tests hold those declarations to wasmtime's own headers (the same source
 * compiled against them, where static assertions compare every function
 * pointer type and layout) and to wasi-libc's <wasi/api.h>.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT } from "../workloads/helpers.ts";
import { WASMTIME_VERSION } from "../../runtime/version.ts";

const SHIM = `${ROOT}ffi/native/enarx_wasi_sockets.c`;
const WASI_API = "/usr/include/wasm32-wasi/wasi/api.h";

function includeDir(): string {
  return Deno.env.get("ENARX_WASMTIME_INCLUDE") ??
    join(Deno.env.get("ENARX_CACHE") ?? `${ROOT}.cache`, `wasmtime-${WASMTIME_VERSION}`, "include");
}

async function gcc(args: string[]): Promise<void> {
  const out = await new Deno.Command("gcc", { args, stdout: "piped", stderr: "piped" }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
}

Deno.test("socket shim: builds without warnings, and against wasmtime's headers", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await gcc([
      "-shared",
      "-fPIC",
      "-O2",
      "-Wall",
      "-Wextra",
      "-Werror",
      "-o",
      join(dir, "s.so"),
      SHIM,
    ]);
    // The crate's headers ship conf.h.in only; the wheel's library has these features.
    await Deno.mkdir(join(dir, "wasmtime"));
    await Deno.writeTextFile(
      join(dir, "wasmtime", "conf.h"),
      ["WASI", "WAT", "CRANELIFT", "COMPILER", "GC"].map((f) => `#define WASMTIME_FEATURE_${f}\n`)
        .join(""),
    );
    await gcc([
      "-fsyntax-only",
      "-Wall",
      "-Werror",
      "-DENARX_WASMTIME_HEADERS",
      `-I${dir}`,
      `-I${includeDir()}`,
      SHIM,
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("socket shim: its WASI errnos and flags are wasi-libc's", async () => {
  const shim = await Deno.readTextFile(SHIM);
  const api = await Deno.readTextFile(WASI_API);
  const define = (name: string): number => {
    const match = new RegExp(
      `#define __WASI_${name} \\(\\(?\\w*\\)?\\(?(?:UINT\\d+_C\\()?(\\d+)(?: << (\\d+))?`,
    )
      .exec(api);
    assert.ok(match, `__WASI_${name} is not in ${WASI_API}`);
    return match[2] === undefined ? Number(match[1]) : Number(match[1]) << Number(match[2]);
  };
  const errnos = [...shim.matchAll(/\bE_(\w+) = (\d+)/g)];
  assert.ok(errnos.length >= 35);
  for (const [, name, value] of errnos) assert.equal(Number(value), define(`ERRNO_${name}`), name);
  const flags: [string, string][] = [
    ["FDFLAGS_NONBLOCK", "FDFLAGS_NONBLOCK"],
    ["FILETYPE_SOCKET_STREAM", "FILETYPE_SOCKET_STREAM"],
    ["OFLAGS_DIRECTORY", "OFLAGS_DIRECTORY"],
    ["EVENTTYPE_CLOCK", "EVENTTYPE_CLOCK"],
    ["EVENTTYPE_FD_READ", "EVENTTYPE_FD_READ"],
    ["EVENTTYPE_FD_WRITE", "EVENTTYPE_FD_WRITE"],
    ["EVENTRWFLAGS_HANGUP", "EVENTRWFLAGS_FD_READWRITE_HANGUP"],
    ["SUBCLOCKFLAGS_ABSTIME", "SUBCLOCKFLAGS_SUBSCRIPTION_CLOCK_ABSTIME"],
    ["RIFLAGS_PEEK", "RIFLAGS_RECV_PEEK"],
    ["RIFLAGS_WAITALL", "RIFLAGS_RECV_WAITALL"],
    ["SDFLAGS_RD", "SDFLAGS_RD"],
    ["SDFLAGS_WR", "SDFLAGS_WR"],
  ];
  for (const [ours, theirs] of flags) {
    const match = new RegExp(`#define ${ours} (\\d+)\\n`).exec(shim);
    assert.ok(match, `${ours} is not defined in the shim`);
    assert.equal(Number(match[1]), define(theirs), ours);
  }
  for (const [ours, size] of [["SUBSCRIPTION_SIZE", "subscription_t"], ["EVENT_SIZE", "event_t"]]) {
    const match = new RegExp(`#define ${ours} (\\d+)`).exec(shim);
    assert.ok(match);
    assert.match(api, new RegExp(`sizeof\\(__wasi_${size}\\) == ${match[1]},`));
  }
});
