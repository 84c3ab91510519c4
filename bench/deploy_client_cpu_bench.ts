/**
 * The CPU time of the `enarx deploy` process itself (user + system, as the
 * kernel accounts it to the child), deploying examples/hello.wat to a local
 * keepmgr (nil keeps, snp-sim evidence): what one CLI deploy costs the
 * client's machine, apart from the keep it waits for.
 *
 * Each run is `bash -c '"$@"; times' _ ENARX deploy ...`: bash's `times`
 * prints its children's user and system time with millisecond resolution
 * (GNU time's `%U`/`%S` only have 10 ms). With several `--enarx` entries
 * (e.g. another checkout's `./enarx`, the code before a change) each deploys
 * to a keepmgr started by the same entry (a nil keep's measurement covers
 * its checkout's code), and the runs are interleaved, A B A B ..., so that
 * the machine's load falls on each alike.
 *
 * It also reports what each deploy's keep cost: the CPU time of the
 * keepmgr's children (keepldr and, reaped by it, wasmldr), from the
 * keepmgr's cutime and cstime in /proc over the measured runs.
 *
 * Usage: deno run --allow-all bench/deploy_client_cpu_bench.ts [--runs N]
 *        [--warmup N] [--enarx PATH]... [--module FILE]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { LocalKeepmgr } from "../runtime/keepmgr/local.ts";
import { median, timesMs } from "./_cpu_times.ts";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "15" },
    warmup: { type: "string", default: "2" },
    enarx: { type: "string", multiple: true },
    module: { type: "string" },
  },
});
const runs = Number(values.runs);
const warmup = Number(values.warmup);
const entries = values.enarx ?? [new URL("../enarx", import.meta.url).pathname];
const module = values.module ?? new URL("../examples/hello.wat", import.meta.url).pathname;
const simDir = new URL("../.cache/test-snp-sim", import.meta.url).pathname;

/** One measured run. */
interface Run {
  userMs: number;
  sysMs: number;
  wallMs: number;
}

/** Runs one `enarx deploy` of `module` with `enarx`, returning its CPU and wall time. */
async function deployOnce(enarx: string, mgr: LocalKeepmgr): Promise<Run> {
  const started = performance.now();
  const out = await new Deno.Command("bash", {
    args: [
      "-c",
      '"$@" >/dev/null 2>/dev/null; s=$?; times; exit $s',
      "_",
      enarx,
      "deploy",
      "--keepmgr",
      mgr.url,
      "--keepmgr-token",
      mgr.tokenFile,
      "--trust-simulated",
      mgr.simulatorRoot!,
      module,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const wallMs = performance.now() - started;
  if (out.code !== 0) throw new Error(`${enarx} deploy exited with ${out.code}`);
  // Line 1: the shell's own times; line 2: its children's (the deploy).
  const [user, sys] = new TextDecoder().decode(out.stdout).trim().split("\n")[1].split(/\s+/);
  return { userMs: timesMs(user), sysMs: timesMs(sys), wallMs };
}

/** CPU time in ms of the reaped children of process `pid` (keepmgr: its keepldrs and their keeps). */
function childrenCpuMs(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // Fields 16 and 17 of proc(5) (cutime, cstime), in clock ticks (100 a second on Linux).
  return (Number(fields[13]) + Number(fields[14])) * 10;
}

function loadAverage(): string {
  return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
}

function machine(): string {
  const model = /^model name\s*:\s*(.*)$/m.exec(Deno.readTextFileSync("/proc/cpuinfo"))?.[1];
  return `${model ?? "unknown CPU"}, ${navigator.hardwareConcurrency} CPUs`;
}

const managers = new Map<string, LocalKeepmgr>();
try {
  for (const e of entries) {
    managers.set(e, await LocalKeepmgr.start({ simDir, enarx: [e] }));
  }
  const results = new Map<string, Run[]>(entries.map((e) => [e, []]));
  const loadBefore = loadAverage();
  for (let i = 0; i < warmup; i++) {
    for (const e of entries) await deployOnce(e, managers.get(e)!);
  }
  const keepCpu = new Map(entries.map((e) => [e, -childrenCpuMs(managers.get(e)!.pid)]));
  for (let i = 0; i < runs; i++) {
    for (const e of entries) results.get(e)!.push(await deployOnce(e, managers.get(e)!));
  }
  // Give the last keep's processes time to end and be reaped.
  await new Promise((r) => setTimeout(r, 2000));
  for (const e of entries) keepCpu.set(e, keepCpu.get(e)! + childrenCpuMs(managers.get(e)!.pid));
  console.log(`\n## enarx deploy: the client process's CPU (${runs} runs each, interleaved)\n`);
  console.log(
    `${new Date().toISOString()}; ${machine()}; load average ${loadBefore} before, ` +
      `${loadAverage()} after; module ${module}\n`,
  );
  console.log(
    "| enarx | client CPU user+sys, median (min–max) | user | sys | wall, median | keep CPU (keepldr + wasmldr), mean |",
  );
  console.log("| --- | --- | --- | --- | --- | --- |");
  for (const [e, rs] of results) {
    const cpu = rs.map((r) => r.userMs + r.sysMs);
    console.log(
      `| ${e} | ${median(cpu).toFixed(0)} ms (${Math.min(...cpu).toFixed(0)}–${
        Math.max(...cpu).toFixed(0)
      }) | ${median(rs.map((r) => r.userMs)).toFixed(0)} ms | ${
        median(rs.map((r) => r.sysMs)).toFixed(0)
      } ms | ${median(rs.map((r) => r.wallMs)).toFixed(0)} ms | ${
        (keepCpu.get(e)! / runs).toFixed(0)
      } ms |`,
    );
  }
} finally {
  for (const mgr of managers.values()) await mgr.close();
}
