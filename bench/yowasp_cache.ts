/**
 * What the module cache is worth on real programs: wall time of `enarx run`
 * for YoWASP's yosys and clang, first with an empty cache (compile with
 * Cranelift, then write the entry) and then cached (verify and load the
 * entry). Prints a table; not a test. Needs `bash tests/workloads/build.sh`.
 *
 *     deno run -A bench/yowasp_cache.ts [RUNS]
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const YOWASP = join(ROOT, "tests", "yowasp", "node_modules", "@yowasp");
const USR = join(ROOT, "tests", "workloads", "build", "yowasp-usr");
const runs = Number(Deno.args[0] ?? "3");

const COUNTER_V = `module counter(input clk, input rst, output reg [7:0] q);
  always @(posedge clk) if (rst) q <= 0; else q <= q + 1;
endmodule
`;
const HELLO_C = `#include <stdio.h>
int main(void) { printf("hello\\n"); return 0; }
`;

async function timeRun(args: string[], cache: string): Promise<number> {
  const start = performance.now();
  const out = await new Deno.Command(join(ROOT, "enarx"), {
    args: ["run", ...args],
    env: { ENARX_MODULE_CACHE: cache },
    stdout: "null",
    stderr: "piped",
  }).output();
  const ms = performance.now() - start;
  if (out.code !== 0) {
    throw new Error(`enarx run ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
  return ms;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const work = await Deno.makeTempDir({ prefix: "enarx-bench-" });
try {
  await Deno.writeTextFile(join(work, "counter.v"), COUNTER_V);
  await Deno.writeTextFile(join(work, "hello.c"), HELLO_C);
  const cases: [string, string[]][] = [
    ["yosys (31 MB): read_verilog; proc; opt; stat", [
      "--dir",
      `${work}::/work`,
      join(YOWASP, "yosys", "gen", "yosys.core.wasm"),
      "-p",
      "read_verilog /work/counter.v; proc; opt; stat",
    ]],
    ["clang (75 MB): clang -O2 -c hello.c", [
      "--dir",
      `${USR}::/usr:ro`,
      "--dir",
      `${work}::/work`,
      join(YOWASP, "clang", "gen", "llvm.core.wasm"),
      "clang",
      "-O2",
      "-c",
      "/work/hello.c",
      "-o",
      "/work/hello.o",
    ]],
  ];
  console.log(`enarx run, wall time in ms (median of ${runs} for cached runs)`);
  console.log("| workload | first run (empty cache) | cached run | speed-up |");
  console.log("| --- | ---: | ---: | ---: |");
  for (const [name, args] of cases) {
    const cache = join(work, `cache-${crypto.randomUUID()}`);
    // A warm Deno cache, so that only the module cache differs.
    await timeRun(["--no-cache", join(ROOT, "examples", "hello.wat")], cache);
    const cold = await timeRun(args, cache);
    const warm: number[] = [];
    for (let i = 0; i < runs; i++) warm.push(await timeRun(args, cache));
    const m = median(warm);
    console.log(`| ${name} | ${cold.toFixed(0)} | ${m.toFixed(0)} | ${(cold / m).toFixed(1)}x |`);
  }
} finally {
  await Deno.remove(work, { recursive: true });
}
