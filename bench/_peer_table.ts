/**
 * The Markdown table of bench/cached_runs.sh and bench/yowasp_runs.sh: one
 * row per command that bench/native/timeit.c timed, named "RUNNER, WORK"
 * (or "bare Deno"), with the median wall time less the median cost of
 * `/bin/sh -c true` (timeit's "shell" entry), the p25–p75 spread, the median
 * CPU time (user + system), and the ratio to and difference from the C
 * harness doing the same WORK ("C harness, WORK") and the difference from
 * bare Deno.
 *
 * Usage: deno run --allow-read bench/_peer_table.ts TIMEIT.json ROUNDS
 *
 * @module
 */

/** One command's runs as bench/native/timeit.c records them. */
interface Runs {
  command: string;
  times: number[];
  user: number[];
  system: number[];
}

function sorted(values: number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

function median(values: number[]): number {
  const s = sorted(values);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** The value at quantile q (0–1), nearest rank below. */
function quantile(values: number[], q: number): number {
  return sorted(values)[Math.min(values.length - 1, Math.floor(q * values.length))];
}

function milliseconds(seconds: number[]): number[] {
  return seconds.map((s) => s * 1000);
}

/** Returns the table's lines for timeit's results. */
export function peerTable(results: Runs[], rounds: number): string[] {
  const shell = results.find((r) => r.command === "shell");
  const floor = shell ? median(milliseconds(shell.times)) : 0;
  const wall = (name: string): number | undefined => {
    const r = results.find((x) => x.command === name);
    return r ? median(milliseconds(r.times)) - floor : undefined;
  };
  const bare = wall("bare Deno");
  const lines = [
    `| what (${rounds} interleaved rounds, caches filled) | median ms | p25–p75 ms | CPU ms | ` +
    "÷ C harness | − C harness ms | − bare Deno ms |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of results) {
    if (r.command === "shell") continue;
    const w = wall(r.command)!;
    const t = milliseconds(r.times);
    const cpu = median(r.user.map((u, i) => (u + r.system[i]) * 1000));
    const work = r.command.split(", ").slice(1).join(", ");
    const native = work && !r.command.startsWith("C harness")
      ? wall(`C harness, ${work}`)
      : undefined;
    const ratio = native === undefined ? "—" : (w / native).toFixed(2);
    const over = native === undefined ? "—" : (w - native).toFixed(1);
    const overBare = bare === undefined || r.command === "bare Deno" ? "—" : (w - bare).toFixed(1);
    const spread = `${(quantile(t, 0.25) - floor).toFixed(1)}–${
      (quantile(t, 0.75) - floor).toFixed(1)
    }`;
    lines.push(
      `| ${r.command} | ${w.toFixed(1)} | ${spread} | ${
        cpu.toFixed(1)
      } | ${ratio} | ${over} | ${overBare} |`,
    );
  }
  return lines;
}

if (import.meta.main) {
  const [file, rounds] = Deno.args;
  if (!file || !rounds) {
    console.error("usage: _peer_table.ts TIMEIT.json ROUNDS");
    Deno.exit(64);
  }
  const { results } = JSON.parse(Deno.readTextFileSync(file)) as { results: Runs[] };
  console.log(peerTable(results, Number(rounds)).join("\n"));
}
