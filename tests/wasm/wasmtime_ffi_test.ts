/**
 * ffi/wasmtime/ against wasmtime's own C headers: every bound symbol's
 * parameter and result kinds are compared with its prototype (the headers
 * preprocessed by gcc), and the struct sizes and constants we hard-code are
 * compared with what a C compiler computes. Then the handles are exercised.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  Engine,
  EXTERN_OF_OFFSET,
  EXTERN_SIZE,
  INSTANCE_SIZE,
  Linker,
  Module,
  Store,
  TrapCode,
  WasiConfig,
  WASMTIME_SYMBOLS,
  WasmtimeFfiError,
  wat2wasm,
} from "../../ffi/wasmtime/mod.ts";
import { ensureLibwasmtime, ROOT } from "../workloads/helpers.ts";
import { WASMTIME_VERSION } from "../../runtime/version.ts";

ensureLibwasmtime();

function includeDir(): string {
  return Deno.env.get("ENARX_WASMTIME_INCLUDE") ??
    join(Deno.env.get("ENARX_CACHE") ?? `${ROOT}.cache`, `wasmtime-${WASMTIME_VERSION}`, "include");
}

/** The headers ship conf.h.in only; this stands in for the configured conf.h. */
async function confDir(): Promise<string> {
  const dir = await Deno.makeTempDir();
  await Deno.mkdir(join(dir, "wasmtime"));
  await Deno.writeTextFile(
    join(dir, "wasmtime", "conf.h"),
    ["WASI", "WAT", "CRANELIFT", "COMPILER", "PARALLEL_COMPILATION"]
      .map((f) => `#define WASMTIME_FEATURE_${f}\n`).join(""),
  );
  return dir;
}

async function gcc(args: string[], stdin: string): Promise<string> {
  const child = new Deno.Command("gcc", { args, stdin: "piped", stdout: "piped", stderr: "piped" })
    .spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(stdin));
  await writer.close();
  const out = await child.output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

const BASE_KINDS: Record<string, string> = {
  _Bool: "bool",
  void: "void",
  uint8_t: "u8",
  int8_t: "i8",
  uint32_t: "u32",
  int32_t: "i32",
  int: "i32",
  uint64_t: "u64",
  int64_t: "i64",
  size_t: "usize",
  ptrdiff_t: "isize",
};

/** Maps one C parameter or result type to a Deno FFI kind (`ptr` for any pointer). */
function cKind(decl: string, typedefs: Map<string, string>): string {
  if (/[*([]/.test(decl)) return "ptr";
  const words = decl.replace(/\b(const|struct|extern)\b/g, " ").trim().split(/\s+/);
  let type = words.length > 1 && !(words.at(-1)! in BASE_KINDS) &&
      !typedefs.has(words.at(-1)!)
    ? words.slice(0, -1).join(" ")
    : words.join(" ");
  for (let i = 0; i < 10 && !(type in BASE_KINDS) && typedefs.has(type); i++) {
    type = typedefs.get(type)!;
  }
  const kind = BASE_KINDS[type];
  assert.ok(kind, `unknown C type "${decl}"`);
  return kind;
}

function denoKind(kind: string): string {
  return kind === "pointer" || kind === "buffer" || kind === "function" ? "ptr" : kind;
}

/** Splits `text` at top-level commas. */
function splitParams(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let current = "";
  for (const ch of text) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === "," && depth === 0) {
      parts.push(current);
      current = "";
    } else current += ch;
  }
  if (current.trim()) parts.push(current);
  return parts.map((p) => p.trim()).filter((p) => p !== "void");
}

/** Finds `name(...)` in preprocessed C and returns its result and parameter kinds. */
function prototype(
  source: string,
  name: string,
  typedefs: Map<string, string>,
): { result: string; parameters: string[] } {
  const match = new RegExp(`[\\s*]${name}\\s*\\(`).exec(source);
  assert.ok(match, `no prototype for ${name} in the headers`);
  const open = match.index + match[0].length - 1;
  let depth = 0;
  let close = open;
  for (; close < source.length; close++) {
    if (source[close] === "(") depth++;
    if (source[close] === ")" && --depth === 0) break;
  }
  const before = source.slice(0, match.index + 1);
  const start = Math.max(before.lastIndexOf(";"), before.lastIndexOf("}")) + 1;
  const resultText = before.slice(start).trim();
  return {
    result: cKind(resultText, typedefs),
    parameters: splitParams(source.slice(open + 1, close)).map((p) => cKind(p, typedefs)),
  };
}

Deno.test("ffi: every bound symbol matches its prototype in wasmtime's headers", async () => {
  const conf = await confDir();
  try {
    const source = (await gcc(
      ["-E", "-P", `-I${conf}`, `-I${includeDir()}`, "-x", "c", "-"],
      "#include <wasmtime.h>\n#include <wasi.h>\n",
    )).replace(/\s+/g, " ");
    const typedefs = new Map<string, string>();
    for (const m of source.matchAll(/typedef ([A-Za-z_][\w ]*?) (\w+);/g)) {
      typedefs.set(m[2], m[1].trim());
    }
    const symbols = WASMTIME_SYMBOLS as Record<
      string,
      { name?: string; parameters: readonly string[]; result: string }
    >;
    let checked = 0;
    for (const [key, def] of Object.entries(symbols)) {
      const cName = def.name ?? key;
      const c = prototype(source, cName, typedefs);
      assert.deepEqual(
        { result: denoKind(def.result), parameters: def.parameters.map(denoKind) },
        c,
        `${key} (${cName}) differs from the header`,
      );
      checked++;
    }
    assert.ok(checked >= 60, `checked only ${checked} symbols`);
  } finally {
    await Deno.remove(conf, { recursive: true });
  }
});

Deno.test("ffi: struct sizes and constants match the C compiler's", async () => {
  const conf = await confDir();
  try {
    const program = `#include <stdio.h>
#include <stddef.h>
#include <wasmtime.h>
int main(void) {
  printf("%zu %zu %zu %zu %zu\\n", sizeof(wasmtime_extern_t), offsetof(wasmtime_extern_t, of),
         sizeof(wasmtime_instance_t), sizeof(wasm_byte_vec_t), offsetof(wasm_byte_vec_t, data));
  printf("%d %d %d %d %d %d %d\\n", WASMTIME_EXTERN_FUNC, WASMTIME_EXTERN_MEMORY,
         WASMTIME_TRAP_CODE_STACK_OVERFLOW, WASMTIME_TRAP_CODE_MEMORY_OUT_OF_BOUNDS,
         WASMTIME_TRAP_CODE_UNREACHABLE_CODE_REACHED, WASMTIME_TRAP_CODE_INTERRUPT,
         WASMTIME_TRAP_CODE_OUT_OF_FUEL);
  printf("%d %d %d\\n", WASMTIME_OPT_LEVEL_NONE, WASMTIME_OPT_LEVEL_SPEED,
         WASMTIME_OPT_LEVEL_SPEED_AND_SIZE);
  return 0;
}
`;
    const dir = await Deno.makeTempDir();
    try {
      const exe = join(dir, "layout");
      await gcc(["-x", "c", `-I${conf}`, `-I${includeDir()}`, "-o", exe, "-"], program);
      const out = new TextDecoder().decode((await new Deno.Command(exe).output()).stdout);
      const [sizes, codes, opt] = out.trim().split("\n").map((l) => l.split(" ").map(Number));
      assert.deepEqual(sizes, [EXTERN_SIZE, EXTERN_OF_OFFSET, INSTANCE_SIZE, 16, 8]);
      assert.deepEqual(codes, [
        0,
        3,
        TrapCode.stackOverflow,
        TrapCode.memoryOutOfBounds,
        TrapCode.unreachable,
        TrapCode.interrupt,
        TrapCode.outOfFuel,
      ]);
      assert.deepEqual(opt, [0, 1, 2]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  } finally {
    await Deno.remove(conf, { recursive: true });
  }
});

const LOOP_WAT = `(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (loop br 0))
  (func (export "exit9") (call $exit (i32.const 9)))
  (func (export "trap") unreachable))`;

Deno.test("ffi: modules compile, serialize, deserialize, and list imports and exports", async () => {
  using engine = new Engine();
  const wasm = new Uint8Array(wat2wasm(LOOP_WAT));
  Module.validate(engine, wasm);
  using module = await Module.compile(engine, wasm);
  assert.deepEqual(module.imports(), [{ module: "wasi_snapshot_preview1", name: "proc_exit" }]);
  assert.deepEqual(module.exports(), ["memory", "_start", "exit9", "trap"]);
  using copy = Module.deserialize(engine, new Uint8Array(module.serialize()));
  assert.deepEqual(copy.exports(), module.exports());
  assert.throws(
    () => Module.validate(engine, new Uint8Array([0, 0x61, 0x73, 0x6d])),
    WasmtimeFfiError,
  );
  await assert.rejects(Module.compile(engine, new Uint8Array([1, 2])), /failed to parse/);
  assert.throws(() => wat2wasm("(module (func"), WasmtimeFfiError);
  module.close();
  module.close(); // twice is harmless
  assert.throws(() => module.pointer, /closed/);
});

Deno.test("ffi: exit status, traps with code and frames, epoch deadline, fuel", async () => {
  using engine = new Engine({ epochInterruption: true, consumeFuel: true });
  using module = await Module.compile(engine, new Uint8Array(wat2wasm(LOOP_WAT)));
  using linker = new Linker(engine);
  using store = new Store(engine);
  const wasi = new WasiConfig();
  wasi.setArgv(["x"]);
  store.setWasi(wasi);
  wasi.close(); // given away: nothing to free
  store.setFuel(1_000_000_000n);
  assert.equal(store.getFuel(), 1_000_000_000n);
  store.setEpochDeadline(1n);
  const made = await linker.instantiate(store, module);
  assert.ok("instance" in made);
  const { instance } = made;
  assert.equal(instance.memorySize("memory"), 65536);
  assert.equal(instance.hasFunc("nope"), false);
  assert.deepEqual(await instance.callNonblocking("exit9"), { kind: "exit", status: 9 });
  const trap = await instance.callNonblocking("trap");
  assert.equal(trap.kind, "trap");
  if (trap.kind === "trap") {
    assert.equal(trap.trap.code, TrapCode.unreachable);
    assert.equal(trap.trap.frames.length, 1);
  }
  // The loop runs on a worker thread while this thread bumps the epoch.
  const running = instance.callNonblocking("_start");
  setTimeout(() => engine.incrementEpoch(), 50);
  const stopped = await running;
  assert.equal(stopped.kind, "trap");
  if (stopped.kind === "trap") assert.equal(stopped.trap.code, TrapCode.interrupt);
  store.setEpochDeadline(1000n);
  store.setFuel(10_000n);
  const starved = await instance.callNonblocking("_start");
  assert.equal(starved.kind, "trap");
  if (starved.kind === "trap") assert.equal(starved.trap.code, TrapCode.outOfFuel);
  assert.equal(store.getFuel(), 0n);
});

Deno.test("ffi: a missing libwasmtime is one clear line and status 69", async () => {
  const deno = Deno.execPath();
  const env = { ...Deno.env.toObject(), ENARX_LIBWASMTIME: "/nonexistent/libwasmtime.so" };
  const out = await new Deno.Command(deno, {
    args: ["run", "-A", "--quiet", `${ROOT}cli/main.ts`, "run", `${ROOT}examples/hello.wat`],
    env,
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 69);
  assert.equal(
    new TextDecoder().decode(out.stderr),
    'enarx: ENARX_LIBWASMTIME is "/nonexistent/libwasmtime.so", which is not a file; point it at libwasmtime 50.0.1 or unset it\n',
  );
});
