/**
 * Real third-party WASI programs through `enarx run`: YoWASP's yosys (a
 * 31 MB C++ program) and clang/lld (75 MB), from the npm packages pinned in
 * tests/yowasp/package.json (installed by tests/workloads/build.sh). Only their
 * plain preview 1 command modules, gen/*.core.wasm, are used.
 *
 * The first run compiles each module (tens of seconds); later runs load it
 * from the module cache. bench/yowasp_cache.ts reports both times.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BUILD, enarx } from "../workloads/helpers.ts";

const YOWASP = fileURLToPath(
  new URL("../yowasp/node_modules/@yowasp/", import.meta.url),
);
/** yosys.core.wasm of @yowasp/yosys. */
export const YOSYS = join(YOWASP, "yosys", "gen", "yosys.core.wasm");
/** llvm.core.wasm (clang, wasm-ld, ...) of @yowasp/clang. */
export const LLVM = join(YOWASP, "clang", "gen", "llvm.core.wasm");
/** clang's sysroot (gen/llvm-resources.tar), unpacked by build.sh. */
export const LLVM_USR = join(BUILD, "yowasp-usr");

const COUNTER_V = `module counter(input clk, input rst, output reg [7:0] q);
  always @(posedge clk) if (rst) q <= 0; else q <= q + 1;
endmodule
`;

const HELLO_C = `#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
  long sum = 0;
  for (int i = 1; i <= 100; i++) sum += i;
  printf("hello from wasi, argc=%d sum=%ld\\n", argc, sum);
  const char *e = getenv("GREETING");
  if (e) printf("GREETING=%s\\n", e);
  return argc > 2 ? 3 : 0;
}
`;

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function withWorkDir(
  body: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "enarx-yowasp-" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("yowasp: yosys reads Verilog from a preopened dir and prints cell statistics", async () => {
  await withWorkDir(async (work) => {
    await Deno.writeTextFile(join(work, "counter.v"), COUNTER_V);
    const r = await enarx([
      "run",
      "--dir",
      `${work}::/work:ro`,
      YOSYS,
      "-p",
      "read_verilog /work/counter.v; proc; opt; stat",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Number of cells: +2\n/);
    assert.match(r.stdout, /\$add +1\n/);
    assert.match(r.stdout, /\$sdff +1\n/);

    // The same commands from stdin, with the statistics written through the preopen.
    const script = "read_verilog /work/counter.v\nproc\nopt -full\ntee -q -o /work/stat.txt stat\n";
    const fromStdin = await enarx([
      "run",
      "--dir",
      `${work}::/work`,
      YOSYS,
      "-Q",
      "-T",
    ], {
      stdin: new TextEncoder().encode(script),
    });
    assert.equal(fromStdin.code, 0, fromStdin.stderr);
    assert.match(fromStdin.stdout, /yosys> /);
    assert.match(
      await Deno.readTextFile(join(work, "stat.txt")),
      /Number of cells: +2\n/,
    );

    const missing = await enarx([
      "run",
      YOSYS,
      "-p",
      "read_verilog /work/counter.v",
    ]);
    assert.equal(missing.code, 1);
    assert.match(
      missing.stdout + missing.stderr,
      /ERROR: .*\/work\/counter\.v.* not found/,
    );
  });
});

Deno.test("yowasp: clang compiles C to a wasm object through preopened dirs, wasm-ld links it, enarx runs it", async () => {
  await withWorkDir(async (work) => {
    await Deno.writeTextFile(join(work, "hello.c"), HELLO_C);
    const usr = `${LLVM_USR}::/usr:ro`;
    const cc = await enarx([
      "run",
      "--dir",
      usr,
      "--dir",
      `${work}::/work`,
      LLVM,
      "clang",
      "-O2",
      "-c",
      "/work/hello.c",
      "-o",
      "/work/hello.o",
    ]);
    assert.equal(cc.code, 0, cc.stderr);
    const object = await Deno.readFile(join(work, "hello.o"));
    assert.deepEqual([...object.subarray(0, 4)], [0, 0x61, 0x73, 0x6d]);
    // Deterministic: the same bytes as the reference run under node:wasi.
    assert.equal(
      await sha256Hex(object),
      "e6418f1b5e4b6c69c03c6ea8a081fa8b74f22f5de4cdc7d39a9a9b4a980890fb",
    );

    const ld = await enarx([
      "run",
      "--dir",
      usr,
      "--dir",
      `${work}::/work`,
      LLVM,
      "wasm-ld",
      "-m",
      "wasm32",
      "-L/usr/lib/wasm32-unknown-wasip1",
      "-L/usr/lib/wasm32-wasip1",
      "/usr/lib/wasm32-wasip1/crt1-command.o",
      "/work/hello.o",
      "-lc",
      "/usr/lib/wasm32-unknown-wasip1/libclang_rt.builtins.a",
      "-o",
      "/work/hello.wasm",
    ]);
    assert.equal(ld.code, 0, ld.stderr);

    const run = await enarx([
      "run",
      "--env",
      "GREETING=hi",
      join(work, "hello.wasm"),
      "a",
      "b",
    ]);
    assert.equal(run.code, 3);
    assert.equal(run.stdout, "hello from wasi, argc=3 sum=5050\nGREETING=hi\n");
  });
});
