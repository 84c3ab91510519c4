/**
 * CPU figures of child processes for the benchmarks that run a command many
 * times (deploy_client_cpu_bench, import_cpu_bench): bash's `times` output,
 * and the median of the runs.
 *
 * @module
 */

/** The median of `xs` (the mean of the middle two for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Seconds in bash's `times` notation ("0m0.205s") as milliseconds. */
export function timesMs(text: string): number {
  const m = /^(\d+)m([\d.]+)s$/.exec(text);
  if (m === null) throw new Error(`unexpected "times" output: ${text}`);
  return (Number(m[1]) * 60 + Number(m[2])) * 1000;
}
