#!/usr/bin/env bash
# Start-up before and after a change: `./enarx run hello.wat` (module
# cached) in a worktree of REF against the current checkout, and a bare
# `deno run` of an empty script, interleaved round by round by
# bench/native/timeit.c so that load from other processes falls on both
# alike. Prints medians and the p25–p75 spread (the cost of /bin/sh
# subtracted) as Markdown.
#
# Usage: bench/startup_ab.sh [REF] [RUNS]   (default: HEAD~1, 40 runs)
set -euo pipefail
ENARX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/bootstrap.sh
. "$ENARX_ROOT/tools/bootstrap.sh"
enarx_bootstrap || exit 70
REF=${1:-HEAD~1}
RUNS=${2:-40}
SCRATCH=$(mktemp -d)
cleanup() {
  git -C "$ENARX_ROOT" worktree remove --force "$SCRATCH/before" >/dev/null 2>&1 || true
  rm -rf "$SCRATCH"
}
trap cleanup EXIT
git -C "$ENARX_ROOT" worktree add -q --detach "$SCRATCH/before" "$REF"
# Both checkouts use this checkout's Deno, npm packages and libwasmtime.
ln -s "$ENARX_ROOT/node_modules" "$SCRATCH/before/node_modules"
mkdir -p "$SCRATCH/cache/wasmtime-$WASMTIME_VERSION"
ln -s "$ENARX_LIBWASMTIME" "$SCRATCH/cache/wasmtime-$WASMTIME_VERSION/libwasmtime.so"
export ENARX_CACHE="$SCRATCH/cache" ENARX_LIBWASMTIME DENO_DIR
gcc -O2 -std=c11 "$ENARX_ROOT/bench/native/timeit.c" -o "$SCRATCH/timeit"
hello="$ENARX_ROOT/examples/hello.wat"
echo "" >"$SCRATCH/empty.ts"
q() { printf '%q ' "$@"; }
before=$(q "$SCRATCH/before/enarx" run "$hello")
after=$(q "$ENARX_ROOT/enarx" run "$hello")
bare=$(q "$DENO" run --quiet "$SCRATCH/empty.ts")
# Fill each checkout's module cache (and Deno's code cache) first.
for c in "$before" "$after"; do sh -c "$c" >/dev/null; done
"$SCRATCH/timeit" "$RUNS" 3 "$SCRATCH/out.json" \
  "bare Deno" "" "$bare" \
  "before ($(git -C "$ENARX_ROOT" rev-parse --short "$REF"))" "" "$before" \
  "after ($(git -C "$ENARX_ROOT" rev-parse --short HEAD))" "" "$after"
"$DENO" run --quiet --allow-read - "$SCRATCH/out.json" "$RUNS" <<'TS'
const [file, runs] = Deno.args;
const { results } = JSON.parse(Deno.readTextFileSync(file));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const shell = results.find((r: { command: string }) => r.command === "shell");
const ms = (xs: number[]) => xs.map((x) => x * 1000);
// The spread: the 25th and 75th percentiles (nearest rank).
const quartiles = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return [at(0.25), at(0.75)];
};
const floor = shell ? median(ms(shell.times)) : 0;
const bare = median(ms(results.find((r: { command: string }) => r.command === "bare Deno").times)) - floor;
console.log(`| what (${runs} interleaved rounds) | median ms | p25–p75 ms | − bare Deno ms | CPU ms | peak RSS MiB |`);
console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
for (const r of results) {
  if (r.command === "shell") continue;
  const wall = median(ms(r.times)) - floor;
  const cpu = median(r.user.map((u: number, i: number) => (u + r.system[i]) * 1000));
  const rss = median(r.maxrss_kib) / 1024;
  const over = r.command === "bare Deno" ? "—" : (wall - bare).toFixed(1);
  const [lo, hi] = quartiles(ms(r.times)).map((x) => (x - floor).toFixed(1));
  console.log(`| ${r.command} | ${wall.toFixed(1)} | ${lo}–${hi} | ${over} | ${cpu.toFixed(1)} | ${rss.toFixed(1)} |`);
}
TS
