#!/usr/bin/env bash
# Issue 2's benchmarks in one command: builds the native harness and the
# workloads (bench/build.sh), checks that every runner gives the same output,
# then measures, side by side in this one run, with bench/native/timeit.c
# (commands interleaved round by round, so load from other processes on a
# shared machine falls on all of them alike):
#   1. start-up of hello.wasm: bare `deno run` of an empty script, the native
#      harness (cold and cached), `./enarx run` (cold and cached),
#      `deno run cli/main.ts run` without the wrapper, and the peers of
#      bench/peers.sh (issue 11): wazero (cold and with its cache filled) and
#      node:wasi (which compiles on every run);
#   2. SHA-256 over data generated in the guest (CPU-bound), and the same by
#      the peers;
#   3. the guest writing to stdout, into /dev/null and into a pipe, and the
#      same by the peers;
# plus peak RSS (from the start-up runs). Throughput comes from the slope
# between a small and a large size (SMALL_MIB, LARGE_MIB), so that start-up
# cancels out. Prints the
# Markdown that goes under "## enarx run (issue 2)" in BENCHMARKS.md.
#
# Usage: bench/run.sh [--quick]      (--quick: few runs, to try the script)
# Env:   STARTUP_RUNS CPU_RUNS STDOUT_RUNS SMALL_MIB LARGE_MIB RESULTS_DIR
set -euo pipefail
ENARX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/bootstrap.sh
. "$ENARX_ROOT/tools/bootstrap.sh"
enarx_bootstrap || exit 70
# shellcheck source=bench/peers.sh
. "$ENARX_ROOT/bench/peers.sh"
enarx_peers || exit 69
export ENARX_LIBWASMTIME DENO_DIR ENARX_CACHE

if [ "${1:-}" = "--quick" ]; then
  : "${STARTUP_RUNS:=5}" "${CPU_RUNS:=2}" "${STDOUT_RUNS:=3}"
fi
STARTUP_RUNS=${STARTUP_RUNS:-30}
CPU_RUNS=${CPU_RUNS:-5}
STDOUT_RUNS=${STDOUT_RUNS:-15}
SMALL_MIB=${SMALL_MIB:-32}
LARGE_MIB=${LARGE_MIB:-256}

bash "$ENARX_ROOT/bench/build.sh"
loadavg=$(cut -d" " -f1-3 /proc/loadavg)
started=$(date -u)

B="$ENARX_ROOT/bench/build"
R=${RESULTS_DIR:-$B/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$R"
# The module cache of every enarx run here lives in a scratch directory, so
# that "cold" is really cold and the user's cache is left alone.
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
# enarx keeps compiled modules in $ENARX_CACHE/modules (runtime/wasm/module_cache.ts);
# the scratch cache links the pinned libwasmtime, so that bootstrap finds it.
mkdir -p "$SCRATCH/cache/wasmtime-$WASMTIME_VERSION"
ln -s "$ENARX_LIBWASMTIME" "$SCRATCH/cache/wasmtime-$WASMTIME_VERSION/libwasmtime.so"
export ENARX_CACHE="$SCRATCH/cache"
ENARX_MODULE_CACHE="$ENARX_CACHE/modules"
ENARX="$ENARX_ROOT/enarx"
DENO_RUN=("$DENO" run --quiet --allow-all --no-prompt --config "$ENARX_ROOT/deno.json")
NATIVE="$B/run"
NCACHE="$SCRATCH/native"
mkdir -p "$NCACHE"
# wazero keeps its compiled code in -cachedir (a scratch one, as for enarx).
WCACHE="$SCRATCH/wazero"
WAZERO_RUN=("$WAZERO" run -cachedir "$WCACHE")
say() { printf '\nbench/run.sh: %s\n' "$*" >&2; }
q() { printf '%q ' "$@"; }
# The workloads time their own loop and print it to stderr: collect it per runner.
g() { printf ' 2>>%q' "$R/guest-$1.txt"; }

# --- Correctness first: every runner must agree, or the timings mean nothing.
say "checking outputs"
for w in hello sha256 write_stdout; do
  "$NATIVE" --cache "$NCACHE/$w.cwasm" "$B/$w.wasm" 1 >/dev/null
done
expect_hello=$("$NATIVE" "$B/hello.wasm")
# run_on RUNNER MODULE ARGS...: runs MODULE with RUNNER.
run_on() {
  local runner=$1
  shift
  case $runner in
    native) "$NATIVE" "$@" ;;
    enarx) "$ENARX" run "$@" ;;
    wazero) "${WAZERO_RUN[@]}" "$@" ;;
    node) "${NODE_WASI[@]}" "$@" ;;
  esac
}
for runner in enarx wazero node; do
  got_hello=$(run_on "$runner" "$B/hello.wasm")
  [ "$got_hello" = "$expect_hello" ] || {
    echo "bench/run.sh: $runner: hello.wasm printed \"$got_hello\", expected \"$expect_hello\"" >&2
    exit 1
  }
done
expect_sha=$("$B/sha256_native" "$SMALL_MIB")
for runner in native enarx wazero node; do
  out=$(run_on "$runner" "$B/sha256.wasm" "$SMALL_MIB" 2>/dev/null)
  [ "$out" = "$expect_sha" ] || {
    echo "bench/run.sh: $runner: sha256.wasm printed \"$out\", expected \"$expect_sha\"" >&2
    exit 1
  }
  bytes=$(run_on "$runner" "$B/write_stdout.wasm" "$SMALL_MIB" 2>/dev/null | wc -c)
  [ "$bytes" -eq $((SMALL_MIB * 1048576)) ] || {
    echo "bench/run.sh: $runner: write_stdout.wasm wrote $bytes bytes, expected $((SMALL_MIB * 1048576))" >&2
    exit 1
  }
done

T="$B/timeit"

# --- 1. Start-up (also gives peak RSS).
say "1. start-up of hello.wasm ($STARTUP_RUNS rounds)"
"$T" "$STARTUP_RUNS" 3 "$R/startup.json" \
  deno-empty "" "$(q "${DENO_RUN[@]}" "$ENARX_ROOT/bench/empty.ts")" \
  native-cold "" "$(q "$NATIVE" "$B/hello.wasm")" \
  native-cached "" "$(q "$NATIVE" --cache "$NCACHE/hello.cwasm" "$B/hello.wasm")" \
  enarx-cold "rm -rf $(q "$ENARX_MODULE_CACHE")" "$(q "$ENARX" run "$B/hello.wasm")" \
  enarx-cached "" "$(q "$ENARX" run "$B/hello.wasm")" \
  main-cached "" "$(q "${DENO_RUN[@]}" --v8-flags=--no-lazy "$ENARX_ROOT/cli/main.ts" run "$B/hello.wasm")" \
  wazero-cold "rm -rf $(q "$WCACHE")" "$(q "${WAZERO_RUN[@]}" "$B/hello.wasm")" \
  wazero-cached "" "$(q "${WAZERO_RUN[@]}" "$B/hello.wasm")" \
  node-wasi "" "$(q "${NODE_WASI[@]}" "$B/hello.wasm")"

# --- 2. CPU-bound.
say "2. SHA-256 of $SMALL_MIB and $LARGE_MIB MiB in the guest ($CPU_RUNS rounds)"
"$NATIVE" --epoch --cache "$NCACHE/sha256-epoch.cwasm" "$B/sha256.wasm" 1 >/dev/null
"$NATIVE" --fuel 1000000000000000 --cache "$NCACHE/sha256-fuel.cwasm" "$B/sha256.wasm" 1 >/dev/null
"$ENARX" run --fuel 1000000000000000 "$B/sha256.wasm" -- 1 >/dev/null
cpu=()
for size in small large; do
  mib=$SMALL_MIB
  [ "$size" = large ] && mib=$LARGE_MIB
  cpu+=("native-$size" "" "$(q "$NATIVE" --cache "$NCACHE/sha256.cwasm" "$B/sha256.wasm" "$mib")$(g "cpu-native-$size")")
  cpu+=("enarx-$size" "" "$(q "$ENARX" run "$B/sha256.wasm" -- "$mib")$(g "cpu-enarx-$size")")
  cpu+=("wazero-$size" "" "$(q "${WAZERO_RUN[@]}" "$B/sha256.wasm" "$mib")$(g "cpu-wazero-$size")")
  cpu+=("node-$size" "" "$(q "${NODE_WASI[@]}" "$B/sha256.wasm" "$mib")$(g "cpu-node-$size")")
done
cpu+=(native-epoch-large "" "$(q "$NATIVE" --epoch --cache "$NCACHE/sha256-epoch.cwasm" "$B/sha256.wasm" "$LARGE_MIB")$(g cpu-native-epoch-large)")
cpu+=(native-fuel-large "" "$(q "$NATIVE" --fuel 1000000000000000 --cache "$NCACHE/sha256-fuel.cwasm" "$B/sha256.wasm" "$LARGE_MIB")$(g cpu-native-fuel-large)")
cpu+=(enarx-fuel-large "" "$(q "$ENARX" run --fuel 1000000000000000 "$B/sha256.wasm" -- "$LARGE_MIB")$(g cpu-enarx-fuel-large)")
cpu+=(gcc-large "" "$(q "$B/sha256_native" "$LARGE_MIB")$(g cpu-gcc-large)")
"$T" "$CPU_RUNS" 1 "$R/cpu.json" "${cpu[@]}"

# --- 3. stdout, into /dev/null and into a pipe.
for sink in null pipe; do
  redirect=">/dev/null"
  [ "$sink" = pipe ] && redirect="| cat >/dev/null"
  say "3. write to stdout $redirect ($STDOUT_RUNS rounds)"
  out=()
  for size in small large; do
    mib=$SMALL_MIB
    [ "$size" = large ] && mib=$LARGE_MIB
    out+=("native-$size" "" "$(q "$NATIVE" --cache "$NCACHE/write_stdout.cwasm" "$B/write_stdout.wasm" "$mib")$(g "stdout-$sink-native-$size") $redirect")
    out+=("enarx-$size" "" "$(q "$ENARX" run "$B/write_stdout.wasm" -- "$mib")$(g "stdout-$sink-enarx-$size") $redirect")
    out+=("wazero-$size" "" "$(q "${WAZERO_RUN[@]}" "$B/write_stdout.wasm" "$mib")$(g "stdout-$sink-wazero-$size") $redirect")
    out+=("node-$size" "" "$(q "${NODE_WASI[@]}" "$B/write_stdout.wasm" "$mib")$(g "stdout-$sink-node-$size") $redirect")
  done
  "$T" "$STDOUT_RUNS" 2 "$R/stdout-$sink.json" "${out[@]}"
done

cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
cat >"$R/meta.json" <<EOF
{"date": "$started", "end": "$(date -u)", "loadavgEnd": "$(cut -d" " -f1-3 /proc/loadavg)", "cpu": "$cpu_model", "nproc": $(nproc), "kernel": "$(uname -r)",
 "deno": "$("$DENO" --version | head -1)", "wasmtime": "$WASMTIME_VERSION", "peers": "$PEERS_VERSIONS",
 "loadavg": "$loadavg", "startupRuns": $STARTUP_RUNS, "cpuRuns": $CPU_RUNS, "stdoutRuns": $STDOUT_RUNS,
 "cpuWarmup": 1, "stdoutWarmup": 2,
 "smallMib": $SMALL_MIB, "largeMib": $LARGE_MIB}
EOF
say "results in $R"
"${DENO_RUN[@]}" "$ENARX_ROOT/bench/report.ts" "$R"
