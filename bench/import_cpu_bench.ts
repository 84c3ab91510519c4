/**
 * The CPU time of a `deno run` whose main module is each of the given files:
 * what loading that module (and all it imports) costs a process that starts,
 * for example runtime/protocol/cbor.ts in two checkouts, against
 * bench/empty.ts for bare Deno. Runs are interleaved, A B C A B C ..., so the
 * machine's load falls on each alike; CPU is the child's user + system time
 * from bash's `times` (millisecond resolution).
 *
 * Usage: deno run --allow-all bench/import_cpu_bench.ts [--runs N] [--warmup N] FILE...
 *
 * @module
 */
import { parseArgs } from "node:util";
import { median, timesMs } from "./_cpu_times.ts";

const { values, positionals } = parseArgs({
  options: {
    runs: { type: "string", default: "15" },
    warmup: { type: "string", default: "2" },
  },
  allowPositionals: true,
});
const files = positionals.length > 0
  ? positionals
  : [new URL("./empty.ts", import.meta.url).pathname];

/** CPU ms (user + system) of one `deno run FILE`. */
async function cpuOf(file: string): Promise<number> {
  const out = await new Deno.Command("bash", {
    args: ["-c", '"$@" >/dev/null || exit 1; times', "_", Deno.execPath(), "run", "-A", file],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`deno run ${file} failed`);
  // `times` prints the shell's own times, then its children's.
  const children = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!.split(/\s+/);
  return timesMs(children[0]) + timesMs(children[1]);
}

const cpu = new Map<string, number[]>(files.map((f) => [f, []]));
const rounds = Number(values.warmup) + Number(values.runs);
for (let round = 0; round < rounds; round++) {
  for (const file of files) {
    const ms = await cpuOf(file);
    if (round >= Number(values.warmup)) cpu.get(file)!.push(ms);
  }
}
const load = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
console.log(`${new Date().toISOString()}, ${values.runs} runs each, load average ${load}`);
for (const [file, xs] of cpu) {
  const sorted = [...xs].sort((a, b) => a - b);
  console.log(
    `${median(xs).toFixed(0).padStart(5)} ms CPU (${sorted[0].toFixed(0)}–${
      sorted.at(-1)!.toFixed(0)
    })  ${file}`,
  );
}
