/**
 * N deploys of examples/hello.wat started at the same moment against one
 * local keepmgr (the real daemon, nil keeps, snp-sim evidence verified by the
 * real verifier). Reports successes, failures grouped by reason, p50/p99 end
 * to end, the total time and keeps created per second.
 *
 * By default each deploy is the client library (`deploy()` of
 * runtime/client/deploy.ts) in this one process, so that the bench measures
 * keepmgr and not N Deno start-ups on 2 CPUs; `--cli` runs N real
 * `./enarx deploy` processes instead. The last column is the CPU time the
 * clients (this process, or the CLI processes), keepmgr itself, and the
 * keeps (keepmgr's ended children) spent.
 *
 * Usage: deno run --allow-all bench/concurrent_deploy_bench.ts [--n 50,200] [--cli]
 *        [--keepmgr-args "--max-creating 2 ..."]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { deploy } from "../runtime/client/deploy.ts";
import { LocalKeepmgr } from "../runtime/keepmgr/local.ts";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "50,200" },
    cli: { type: "boolean", default: false },
    "keepmgr-args": { type: "string", default: "" },
  },
});
const levels = values.n.split(",").filter((s) => s !== "").map(Number);
const simDir = new URL("../.cache/test-snp-sim", import.meta.url).pathname;
const root = new URL("..", import.meta.url).pathname;
const helloPath = `${root}examples/hello.wat`;
const hello = await Deno.readFile(helloPath);

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)];
}

/** One deploy through the client library; resolves to its end-to-end ms. */
async function libraryDeploy(mgr: LocalKeepmgr): Promise<number> {
  const started = performance.now();
  const out: string[] = [];
  const result = await deploy(
    { module: hello, config: null, args: [], env: {}, stdin: new Uint8Array(0) },
    {
      keepmgr: mgr.url,
      keepmgrToken: mgr.token,
      backend: "nil",
      trustSimulated: mgr.simulatorRoot,
      onStdout: (c) => void out.push(new TextDecoder().decode(c)),
    },
  );
  if (result.status !== 0 || !out.join("").includes("Hello")) {
    throw new Error(`status ${result.status}, output ${JSON.stringify(out.join(""))}`);
  }
  return performance.now() - started;
}

/** One `./enarx deploy` process; resolves to its end-to-end ms. */
async function cliDeploy(mgr: LocalKeepmgr): Promise<number> {
  const started = performance.now();
  const args = ["deploy", "--keepmgr", mgr.url, "--keepmgr-token", mgr.tokenFile];
  args.push("--backend", "nil", "--trust-simulated", mgr.simulatorRoot!, helloPath);
  const out = await new Deno.Command(`${root}enarx`, { args, stdin: "null" }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  if (out.code !== 0 || !stdout.includes("Hello")) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1) ?? "";
    throw new Error(`exit ${out.code}: ${err}`);
  }
  return performance.now() - started;
}

/** CPU seconds of process `pid`: its own, and its waited-for children's (the keeps). */
function cpuSeconds(pid: number | "self"): { own: number; children: number } {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
  // Fields 14-17 of proc(5): utime, stime, cutime, cstime, in clock ticks (100 a second).
  return { own: (f[11] + f[12]) / 100, children: (f[13] + f[14]) / 100 };
}

/** The reason of a failure without the keep id and numbers that make each one unique. */
function reasonOf(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/[0-9a-f]{32}/g, "<keep>").replace(/\d+/g, "N").slice(0, 200);
}

const maxKeeps = Math.max(64, ...levels.map((n) => n + 8));
const extra = values["keepmgr-args"].split(" ").filter((s) => s !== "");
const load = Deno.loadavg().map((l) => l.toFixed(2)).join(" ");
console.log(
  `# ${levels.join(", ")} deploys at once (${
    values.cli ? "real `enarx deploy` processes" : "client library in one process"
  }), ${new Date().toISOString()}, load ${load}, keepmgr args: ${extra.join(" ") || "(none)"}\n`,
);
console.log(
  "| N | succeeded | failures by reason | p50 | p99 | total | keeps created per second " +
    "| CPU: clients / keepmgr / keeps |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- | --- |");
for (const n of levels) {
  const mgr = await LocalKeepmgr.start({
    simDir,
    args: ["--max-keeps", String(maxKeeps), ...extra],
    // keepmgr's warnings (refused connections, failed keeps) explain failures.
    onLog: (line) => {
      if (/"level":"(warn|error)"/.test(line)) console.error(`keepmgr: ${line}`);
    },
  });
  try {
    const one = values.cli ? cliDeploy : libraryDeploy;
    await one(mgr); // warm up the module cache
    const cpuBefore = { client: cpuSeconds("self"), mgr: cpuSeconds(mgr.pid) };
    const started = performance.now();
    const outcomes = await Promise.allSettled(Array.from({ length: n }, () => one(mgr)));
    const total = (performance.now() - started) / 1000;
    const client = values.cli
      ? cpuSeconds("self").children - cpuBefore.client.children
      : cpuSeconds("self").own - cpuBefore.client.own;
    const mgrCpu = cpuSeconds(mgr.pid);
    const cpu = `${client.toFixed(1)} / ${(mgrCpu.own - cpuBefore.mgr.own).toFixed(1)} / ${
      (mgrCpu.children - cpuBefore.mgr.children).toFixed(1)
    } s`;
    const times = outcomes.flatMap((o) => o.status === "fulfilled" ? [o.value] : []);
    const reasons = new Map<string, number>();
    for (const o of outcomes) {
      if (o.status === "rejected") {
        const r = reasonOf(o.reason);
        reasons.set(r, (reasons.get(r) ?? 0) + 1);
      }
    }
    const failures = [...reasons].map(([r, c]) => `${c}× ${r}`).join("; ") || "none";
    console.log(
      `| ${n} | ${times.length}/${n} | ${failures} | ${percentile(times, 0.5).toFixed(0)} ms | ${
        percentile(times, 0.99).toFixed(0)
      } ms | ${total.toFixed(1)} s | ${(times.length / total).toFixed(1)} | ${cpu} |`,
    );
  } finally {
    await mgr.close();
  }
}
