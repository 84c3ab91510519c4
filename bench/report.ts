/**
 * Turns one run of bench/run.sh (the JSON that bench/native/timeit.c writes,
 * plus meta.json, in a results directory) into the Markdown of BENCHMARKS.md
 * for issue 2: medians, ratios, and whether each target is met.
 *
 * Wall times have the median cost of `/bin/sh -c true` (timeit's "shell"
 * entry) subtracted. CPU time is user + system of the command and the
 * children it waited for.
 *
 * Usage: deno run --allow-read bench/report.ts RESULTS_DIR
 *
 * @module
 */

/** One command's runs as bench/native/timeit.c records them. */
interface Runs {
  command: string;
  shell: string;
  times: number[];
  user: number[];
  system: number[];
  maxrss_kib: number[];
}

/** What bench/run.sh records about the run. */
interface Meta {
  date: string;
  /** When the run ended, and the load average then (absent in older runs). */
  end?: string;
  loadavgEnd?: string;
  /** The peers' versions (bench/peers.sh), absent in older runs. */
  peers?: string;
  cpu: string;
  nproc: number;
  kernel: string;
  deno: string;
  wasmtime: string;
  loadavg: string;
  startupRuns: number;
  cpuRuns: number;
  stdoutRuns: number;
  cpuWarmup: number;
  stdoutWarmup: number;
  smallMib: number;
  largeMib: number;
}

/** Medians of one command, in seconds (wall without the shell's cost). */
interface Summary {
  wall: number;
  cpu: number;
  minWall: number;
  rssKib: number;
}

/** Reads a timeit export into a map from command name to its medians. */
function readRuns(path: string): Map<string, Summary> {
  const json = JSON.parse(Deno.readTextFileSync(path)) as { results: Runs[] };
  const shell = json.results.find((r) => r.command === "shell");
  const shellWall = shell ? median(shell.times) : 0;
  return new Map(json.results.map((r) => [r.command, {
    wall: median(r.times) - shellWall,
    cpu: median(r.user.map((u, i) => u + r.system[i])),
    minWall: Math.min(...r.times) - shellWall,
    rssKib: median(r.maxrss_kib),
  }]));
}

function get(results: Map<string, Summary>, name: string): Summary {
  const r = results.get(name);
  if (!r) throw new Error(`No result named "${name}" (have: ${[...results.keys()].join(", ")})`);
  return r;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function ms(seconds: number): string {
  return (seconds * 1000).toFixed(1);
}

function verdict(met: boolean): string {
  return met ? "**met**" : "**missed**";
}

function startupSection(dir: string, meta: Meta): string[] {
  const r = readRuns(`${dir}/startup.json`);
  const deno = get(r, "deno-empty");
  const rows: Array<[string, string]> = [
    ["deno-empty", "`deno run` of an empty script (Deno's floor)"],
    ["native-cold", "native harness, compiles the module"],
    ["native-cached", "native harness, deserializes a cached module"],
    ["enarx-cold", "`./enarx run hello.wasm`, empty module cache"],
    ["enarx-cached", "`./enarx run hello.wasm`, module cached"],
    ["main-cached", "`deno run -A cli/main.ts run hello.wasm`, cached (no wrapper)"],
    ["wazero-cold", "wazero CLI, empty -cachedir"],
    ["wazero-cached", "wazero CLI, -cachedir filled"],
    ["node-wasi", "node:wasi (compiles on every run; ÷ native cold)"],
  ];
  const out = [
    `### 1. Start-up of hello-world (${meta.startupRuns} rounds, 3 warm-up)`,
    "",
    "| what | median ms | min ms | CPU ms | − bare Deno ms | ÷ native (same cache state) | peak RSS MiB |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const [name, label] of rows) {
    const x = r.get(name);
    if (!x) continue;
    const native = get(r, name.endsWith("cached") ? "native-cached" : "native-cold");
    out.push(
      `| ${label} | ${ms(x.wall)} | ${ms(x.minWall)} | ${ms(x.cpu)} | ` +
        `${name === "deno-empty" ? "—" : ms(x.wall - deno.wall)} | ` +
        `${
          name.startsWith("native") || name === "deno-empty"
            ? "—"
            : (x.wall / native.wall).toFixed(1)
        } | ` +
        `${(x.rssKib / 1024).toFixed(1)} |`,
    );
  }
  const cached = get(r, "enarx-cached");
  const main = get(r, "main-cached");
  const over = (cached.wall - deno.wall) * 1000;
  const overMain = (main.wall - deno.wall) * 1000;
  out.push(
    "",
    `Target: \`enarx run\` with the cache ≤ bare Deno + 15 ms: \`./enarx run\` is ` +
      `${over.toFixed(1)} ms over bare Deno: ${verdict(over <= 15)}; without the ` +
      `wrapper (\`deno run cli/main.ts run\`, what the compiled binary does) ` +
      `${overMain.toFixed(1)} ms: ${verdict(overMain <= 15)}. \`./enarx run\` (which runs ` +
      `the run bundle, build/enarx_run.js) against \`deno run cli/main.ts run\`: ` +
      `${ms(cached.wall - main.wall)} ms. Peak RSS of \`enarx run\` for hello: ` +
      `${(cached.rssKib / 1024).toFixed(1)} MiB cached, ` +
      `${(get(r, "enarx-cold").rssKib / 1024).toFixed(1)} MiB cold.`,
  );
  return out;
}

/**
 * The median of the loop times that a workload printed about itself
 * ("NAME: MIB MiB in MS ms" on stderr), warm-up runs left out, in seconds;
 * undefined when there is no such file.
 */
function guestSeconds(path: string, warmup: number): number | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
  const ms = [...text.matchAll(/ in ([0-9.]+) ms/g)].map((m) => Number(m[1])).slice(warmup);
  return ms.length ? median(ms) / 1000 : undefined;
}

function throughputSection(
  title: string,
  r: Map<string, Summary>,
  runners: Array<[string, string]>,
  meta: Meta,
  target: number,
  guest: { dir: string; prefix: string; warmup: number },
): string[] {
  const inGuest = (runner: string) =>
    guestSeconds(`${guest.dir}/guest-${guest.prefix}-${runner}-large.txt`, guest.warmup);
  const nativeGuest = inGuest("native");
  const span = meta.largeMib - meta.smallMib;
  const slope = (prefix: string, key: "wall" | "cpu") =>
    span / (get(r, `${prefix}-large`)[key] - get(r, `${prefix}-small`)[key]);
  const nativeLarge = get(r, "native-large");
  const out = [
    title,
    "",
    `| runner | in-guest MiB/s | ÷ native | median ${meta.smallMib} MiB ms | ` +
    `median ${meta.largeMib} MiB ms | MiB/s (wall slope) | ÷ native | MiB/s (CPU slope) | ` +
    `÷ native | ${meta.largeMib} MiB wall ÷ native | CPU ÷ native |`,
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  const ratios = { guest: NaN, wall: NaN, cpu: NaN };
  for (const [prefix, label] of runners) {
    const small = r.get(`${prefix}-small`);
    const large = r.get(`${prefix}-large`);
    if (!large) continue;
    const whole = `${(large.wall / nativeLarge.wall).toFixed(2)} | ` +
      `${(large.cpu / nativeLarge.cpu).toFixed(2)}`;
    const g = inGuest(prefix);
    const guestRatio = g !== undefined && nativeGuest !== undefined ? nativeGuest / g : NaN;
    if (prefix === "enarx") ratios.guest = guestRatio;
    const guestCells = g === undefined
      ? "— | —"
      : `${(meta.largeMib / g).toFixed(0)} | ${guestRatio.toFixed(3)}`;
    if (!small) {
      out.push(
        `| ${label} | ${guestCells} | — | ${ms(large.wall)} | — | — | — | — | ${whole} |`,
      );
      continue;
    }
    const wall = slope(prefix, "wall"), cpu = slope(prefix, "cpu");
    const wallRatio = wall / slope("native", "wall"), cpuRatio = cpu / slope("native", "cpu");
    if (prefix === "enarx") Object.assign(ratios, { wall: wallRatio, cpu: cpuRatio });
    out.push(
      `| ${label} | ${guestCells} | ${ms(small.wall)} | ${ms(large.wall)} | ${wall.toFixed(0)} | ` +
        `${wallRatio.toFixed(3)} | ${cpu.toFixed(0)} | ${cpuRatio.toFixed(3)} | ${whole} |`,
    );
  }
  out.push(
    "",
    `Target: throughput ≥ ${target} of native: ${ratios.guest.toFixed(3)} timed in the guest ` +
      `(${verdict(ratios.guest >= target)}); from the slopes between the two sizes ` +
      `${ratios.wall.toFixed(3)} by wall time (${verdict(ratios.wall >= target)}), ` +
      `${ratios.cpu.toFixed(3)} by CPU time (${verdict(ratios.cpu >= target)}).`,
  );
  return out;
}

/** Prints the report for the results directory given as the first argument. */
function main(args: string[]): void {
  const dir = args[0];
  if (!dir) {
    console.error("usage: report.ts RESULTS_DIR");
    Deno.exit(64);
  }
  const meta = JSON.parse(Deno.readTextFileSync(`${dir}/meta.json`)) as Meta;
  const lines = [
    `Measured ${meta.date}${meta.end ? ` to ${meta.end}` : ""} on ${meta.cpu}, ` +
    `${meta.nproc} CPUs (\`nproc\`), Linux ${meta.kernel}, load average before the run ` +
    `${meta.loadavg}${meta.loadavgEnd ? `, after ${meta.loadavgEnd}` : ""}; ${meta.deno}, ` +
    `libwasmtime ${meta.wasmtime}${
      meta.peers ? `; peers: ${meta.peers}` : ""
    }. Every runner in one \`bench/run.sh\` run, interleaved ` +
    "round by round (bench/native/timeit.c); figures are medians, wall times less the " +
    "cost of `sh -c true`; CPU = user + system. Fuel metering and epoch interruption " +
    'are off unless a row says otherwise. "In-guest" throughput is timed by the workload ' +
    "itself around its loop (CLOCK_MONOTONIC through WASI), at the large size; the slopes " +
    "between the small and the large size are a cross-check from outside; both leave " +
    "start-up (Deno, engine, module) out.",
    "",
    ...startupSection(dir, meta),
    "",
    ...throughputSection(
      `### 2. CPU-bound: SHA-256 over data generated in the guest (${meta.cpuRuns} rounds)`,
      readRuns(`${dir}/cpu.json`),
      [
        ["native", "native harness (wasm, cached module)"],
        ["enarx", "`./enarx run` (cached module)"],
        ["wazero", "wazero CLI (-cachedir filled)"],
        ["node", "node:wasi (compiles on every run)"],
        ["native-epoch", "native harness, epoch interruption on"],
        ["native-fuel", "native harness, fuel metering on"],
        ["enarx-fuel", "`./enarx run --fuel` (metering on)"],
        ["gcc", "the same C built for the host (gcc -O2), not wasm"],
      ],
      meta,
      0.97,
      { dir, prefix: "cpu", warmup: meta.cpuWarmup },
    ),
    "",
  ];
  for (
    const [file, how] of [["stdout-null", "> /dev/null"], ["stdout-pipe", "| cat > /dev/null"]]
  ) {
    lines.push(
      ...throughputSection(
        `### 3. Guest writes to stdout in 64 KiB chunks, \`${how}\` (${meta.stdoutRuns} rounds)`,
        readRuns(`${dir}/${file}.json`),
        [
          ["native", "native harness (cached module)"],
          ["enarx", "`./enarx run` (cached module)"],
          ["wazero", "wazero CLI (-cachedir filled)"],
          ["node", "node:wasi"],
        ],
        meta,
        0.9,
        { dir, prefix: file, warmup: meta.stdoutWarmup },
      ),
      "",
    );
  }
  console.log(lines.join("\n").trimEnd());
}

if (import.meta.main) main(Deno.args);
