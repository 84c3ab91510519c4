/**
 * Benchmarks of `enarx deploy` against a local keepmgr (nil keeps, snp-sim):
 *
 * 1. latency: the median end-to-end time of deploying examples/hello.wat,
 *    and each step's median and share of it;
 * 2. concurrency: K deploys at once of a workload that sleeps, sampling how
 *    many keeps are alive together and the resident memory of each keep
 *    (its wasmldr, and keepldr + wasmldr).
 *
 * Usage: deno run --allow-all bench/deploy_bench.ts [--runs N] [--concurrent K,K2,...]
 *        [--keepmgr-args="--warm-keeps 0 ..."]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { deploy, type DeployResult } from "../runtime/client/deploy.ts";
import { LocalKeepmgr } from "../runtime/keepmgr/local.ts";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "30" },
    concurrent: { type: "string", default: "25,50,100" },
    "sleep-ms": { type: "string", default: "0" },
    "keepmgr-args": { type: "string", default: "" },
  },
});
const runs = Number(values.runs);
const levels = values.concurrent.split(",").filter((s) => s !== "").map(Number);
if (!Number.isInteger(runs) || runs < 0 || levels.some((k) => !Number.isInteger(k) || k < 1)) {
  console.error(
    "--runs takes a whole number (0: no latency section), --concurrent whole numbers ≥ 1",
  );
  Deno.exit(64);
}
const simDir = new URL("../.cache/test-snp-sim", import.meta.url).pathname;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** A WASI command that sleeps `ms` (poll_oneoff on the monotonic clock), then prints "done". */
function sleepWat(ms: number): string {
  const ns = BigInt(ms) * 1_000_000n;
  return `(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 512) "done\\n")
  (func (export "_start")
    (i64.store (i32.const 0) (i64.const 1))        ;; userdata
    (i32.store8 (i32.const 8) (i32.const 0))       ;; tag: clock
    (i32.store (i32.const 16) (i32.const 1))       ;; clock id: monotonic
    (i64.store (i32.const 24) (i64.const ${ns}))  ;; timeout (relative)
    (i64.store (i32.const 32) (i64.const 0))       ;; precision
    (i32.store16 (i32.const 40) (i32.const 0))     ;; flags: relative
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
    (i32.store (i32.const 256) (i32.const 512)) (i32.store (i32.const 260) (i32.const 5))
    (drop (call $w (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 264)))))`;
}

function rssKiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * Proportional set size: the process's private pages plus its share of the
 * pages it shares (Deno's code is shared by every keep's processes), i.e.
 * what the process adds to the machine's memory use.
 */
function pssKiB(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/**
 * The live keeps of the keepmgr, from its records: each keep's wasmldr and,
 * with --keepldr-process, its keepldr (the record names the keepldr, whose
 * child is the wasmldr). Warm keeps have no record and are not counted.
 */
function keeps(stateDir: string): { wasmldr: number; keepldr?: number }[] {
  const found: { wasmldr: number; keepldr?: number }[] = [];
  for (const entry of Deno.readDirSync(`${stateDir}/keeps`)) {
    try {
      const { pid } = JSON.parse(Deno.readTextFileSync(`${stateDir}/keeps/${entry.name}`));
      const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
      if (argv.includes("wasmldr")) {
        found.push({ wasmldr: pid });
        continue;
      }
      const children = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim();
      const wasmldr = Number(children.split(" ")[0]);
      if (wasmldr > 0) found.push({ wasmldr, keepldr: pid });
    } catch { /* gone, or not started yet */ }
  }
  return found;
}

const hello = await Deno.readFile(new URL("../examples/hello.wat", import.meta.url));
const tag = crypto.randomUUID();
const maxKeeps = Math.max(64, ...levels.map((k) => k + 8));
const mgr = await LocalKeepmgr.start({
  simDir,
  args: [
    "--max-keeps",
    String(maxKeeps),
    "--step-timeout",
    "120s",
    ...values["keepmgr-args"].split(" ").filter((a) => a !== ""),
  ],
  env: { ENARX_TEST_TAG: tag },
  // Warnings and errors of the keepmgr explain any failed deploy.
  onLog: (line) => {
    if (/"level":"(warn|error)"/.test(line)) console.error(`keepmgr: ${line}`);
  },
});
const options = {
  keepmgr: mgr.url,
  keepmgrToken: mgr.token,
  backend: "nil",
  trustSimulated: mgr.simulatorRoot,
  timeoutMs: 600_000,
};
const empty = { config: null, args: [], env: {}, stdin: new Uint8Array(0) };
try {
  // 1. Latency.
  for (let i = 0; i < 3; i++) await deploy({ module: hello, ...empty }, options); // warm up
  const results: DeployResult[] = [];
  for (let i = 0; i < runs; i++) {
    results.push(await deploy({ module: hello, ...empty }, options));
  }
  if (runs > 0) latencySection(results);

  // 2. Concurrency.
  console.log("\n## concurrency: K deploys at once of a sleeping workload\n");
  console.log(
    "| K | all succeeded | peak keeps alive together | wasmldr RSS per keep (median / max) | keep RSS (+ keepldr's, if any; median) | keep PSS (+ keepldr's; median / max) | wall time |",
  );
  console.log("| --- | --- | --- | --- | --- | --- | --- |");
  for (const k of levels) {
    const sleepMs = Number(values["sleep-ms"]) || Math.max(5_000, 400 * k);
    const module = new TextEncoder().encode(sleepWat(sleepMs));
    let peak = 0;
    const wasmldrRss: number[] = [];
    const pairRss: number[] = [];
    const pairPss: number[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const alive = keeps(mgr.stateDir);
        if (alive.length > peak) {
          peak = alive.length;
          wasmldrRss.length = 0;
          pairRss.length = 0;
          pairPss.length = 0;
          for (const keep of alive) {
            const w = rssKiB(keep.wasmldr);
            wasmldrRss.push(w);
            const keepldr = keep.keepldr;
            pairRss.push(w + (keepldr === undefined ? 0 : rssKiB(keepldr)));
            pairPss.push(pssKiB(keep.wasmldr) + (keepldr === undefined ? 0 : pssKiB(keepldr)));
          }
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    })();
    const started = performance.now();
    const outcomes = await Promise.allSettled(
      Array.from({ length: k }, async () => {
        const out: string[] = [];
        const r = await deploy({ module, ...empty }, {
          ...options,
          onStdout: (c) => void out.push(new TextDecoder().decode(c)),
        });
        if (r.status !== 0 || out.join("") !== "done\n") throw new Error(`status ${r.status}`);
        return r;
      }),
    );
    const wall = performance.now() - started;
    sampling = false;
    await sampler;
    const ok = outcomes.filter((o) => o.status === "fulfilled").length;
    const failures = outcomes.filter((o) => o.status === "rejected")
      .map((o) => String((o as PromiseRejectedResult).reason?.message ?? o));
    console.log(
      `| ${k} | ${ok}/${k} | ${peak} | ${(median(wasmldrRss) / 1024).toFixed(1)} / ${
        (Math.max(...wasmldrRss) / 1024).toFixed(1)
      } MiB | ${(median(pairRss) / 1024).toFixed(1)} MiB | ${
        (median(pairPss) / 1024).toFixed(1)
      } / ${(Math.max(...pairPss) / 1024).toFixed(1)} MiB | ${(wall / 1000).toFixed(1)} s |`,
    );
    if (failures.length > 0) console.log(`  failures: ${[...new Set(failures)].join("; ")}`);
  }
} finally {
  await mgr.close();
}

/** Prints the latency table of `results` (sequential deploys), median per step. */
function latencySection(results: DeployResult[]): void {
  const total = median(results.map((r) => r.totalMs));
  console.log(`\n## latency: ${runs} sequential deploys of examples/hello.wat (nil, snp-sim)\n`);
  console.log("| step | DESIGN.md | median | share of the median total |");
  console.log("| --- | --- | --- | --- |");
  for (const id of results[0].steps.map((s) => s.id)) {
    const ms = median(results.map((r) => r.steps.find((s) => s.id === id)!.ms));
    const step = results[0].steps.find((s) => s.id === id)!;
    console.log(
      `| ${id} | ${step.design} | ${ms.toFixed(1)} ms | ${(100 * ms / total).toFixed(0)} % |`,
    );
  }
  console.log(`| **total** | 1-10 | **${total.toFixed(1)} ms** | 100 % |`);
  const sorted = results.map((r) => r.totalMs).sort((a, b) => a - b);
  console.log(
    `\nmin ${sorted[0].toFixed(1)} ms, p90 ${
      sorted[Math.floor(0.9 * (sorted.length - 1))].toFixed(1)
    } ms, max ${sorted.at(-1)!.toFixed(1)} ms`,
  );
}
