#!/usr/bin/env bash
# Cached runs of two large real programs against the C harness and the peers
# (issue 11): YoWASP's yosys (31 MB) and clang (75 MB) as plain WASI modules
# (gen/*.core.wasm of the npm packages pinned in tests/yowasp/package-lock.json,
# installed there by `npm ci` as tests/workloads/build.sh does; clang's sysroot
# unpacked into bench/build/yowasp-usr and preopened read-only as /usr).
# yosys runs `read_verilog; proc; opt; stat` on an 8-bit counter, clang
# `clang -O2 -c hello.c`. Runners: bench/native/run.c (the C harness, on the
# same libwasmtime as enarx, mapping its cached module), `./enarx run`, and the
# peers of bench/peers.sh: wazero (its compilation cache filled) and node:wasi
# (which compiles on every run); every cache is filled first, and the runs are
# interleaved round by round by bench/native/timeit.c with a bare `deno run`
# of an empty script. First checks that every runner prints the same yosys
# statistics and writes a byte-identical hello.o. Prints medians, the p25-p75
# spread and ratios as Markdown (bench/_peer_table.ts).
#
# The clang module is copied as llvm.wasm: it is LLVM's multicall binary,
# which picks the tool from argv[0] and then argv[1]; every runner passes the
# module's file name as argv[0], and "llvm" (not "clang.wasm") sends it on to
# argv[1], "clang".
#
# The first run compiles each module with each runner: several minutes.
#
# Usage: bench/yowasp_runs.sh [RUNS]   (default: 20 rounds)
set -euo pipefail
ENARX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/bootstrap.sh
. "$ENARX_ROOT/tools/bootstrap.sh"
enarx_bootstrap || exit 70
# shellcheck source=bench/peers.sh
. "$ENARX_ROOT/bench/peers.sh"
enarx_peers || exit 69
RUNS=${1:-20}
export ENARX_LIBWASMTIME DENO_DIR
bash "$ENARX_ROOT/bench/build.sh"
B="$ENARX_ROOT/bench/build"

YOWASP="$ENARX_ROOT/tests/yowasp"
stamp="$YOWASP/node_modules/.enarx-lock"
if ! { [ -f "$stamp" ] && cmp -s "$stamp" "$YOWASP/package-lock.json"; }; then
  echo "bench/yowasp_runs.sh: npm ci --prefix tests/yowasp (@yowasp/yosys, @yowasp/clang: about 120 MB)" >&2
  npm ci --prefix "$YOWASP" --no-audit --no-fund --loglevel=error >&2
  cp "$YOWASP/package-lock.json" "$stamp"
fi
gen="$YOWASP/node_modules/@yowasp"
usr="$B/yowasp-usr"
if ! [ "$usr/.unpacked" -nt "$gen/clang/gen/llvm-resources.tar" ]; then
  echo "bench/yowasp_runs.sh: unpacking clang's sysroot into $usr" >&2
  rm -rf "$usr" && mkdir -p "$usr"
  tar -xf "$gen/clang/gen/llvm-resources.tar" -C "$usr"
  touch "$usr/.unpacked"
fi

SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
mkdir -p "$SCRATCH/cache/wasmtime-$WASMTIME_VERSION" "$SCRATCH/src" "$SCRATCH/out" \
  "$SCRATCH/native" "$SCRATCH/wazero"
chmod 700 "$SCRATCH/cache"
ln -s "$ENARX_LIBWASMTIME" "$SCRATCH/cache/wasmtime-$WASMTIME_VERSION/libwasmtime.so"
export ENARX_CACHE="$SCRATCH/cache"
# The modules are copied and left quiet (enarx links a module file to its
# cache entry only once it has been unchanged for 2 s).
cp "$gen/yosys/gen/yosys.core.wasm" "$SCRATCH/yosys.wasm"
cp "$gen/clang/gen/llvm.core.wasm" "$SCRATCH/llvm.wasm"
cat >"$SCRATCH/src/counter.v" <<'EOF'
module counter(input clk, input rst, output reg [7:0] q);
  always @(posedge clk) if (rst) q <= 0; else q <= q + 1;
endmodule
EOF
cat >"$SCRATCH/src/hello.c" <<'EOF'
#include <stdio.h>
int main(void) { printf("hello\n"); return 0; }
EOF
sleep 2.5

q() { printf '%q ' "$@"; }
# run_with RUNNER MODULE ARGS...: the command by which RUNNER (native, wazero,
# node or enarx) runs MODULE with the inputs preopened read-only as /src,
# clang's sysroot read-only as /usr and $SCRATCH/out writable as /out.
run_with() {
  local runner=$1 module=$2
  shift 2
  local dirs=(--dir "$SCRATCH/src::/src:ro" --dir "$usr::/usr:ro" --dir "$SCRATCH/out::/out")
  case $runner in
    native)
      q "$B/run" --cache "$SCRATCH/native/$(basename "$module" .wasm).cwasm" \
        "${dirs[@]}" "$module" "$@"
      ;;
    wazero)
      q "$WAZERO" run -cachedir "$SCRATCH/wazero" -mount "$SCRATCH/src:/src:ro" \
        -mount "$usr:/usr:ro" -mount "$SCRATCH/out:/out" "$module" "$@"
      ;;
    node) q "${NODE_WASI[@]}" "${dirs[@]}" "$module" "$@" ;;
    enarx) q "$ENARX_ROOT/enarx" run "${dirs[@]}" "$module" "$@" ;;
  esac
}
cmds=()
for runner in "C harness:native" "enarx run ($(git -C "$ENARX_ROOT" rev-parse --short HEAD)):enarx" \
  "wazero:wazero" "node:wasi:node"; do
  label=${runner%:*} kind=${runner##*:}
  cmds+=("$label, yosys" "" "$(run_with "$kind" "$SCRATCH/yosys.wasm" -p "read_verilog /src/counter.v; proc; opt; stat")")
  cmds+=("$label, clang" "" "$(run_with "$kind" "$SCRATCH/llvm.wasm" clang -O2 -c /src/hello.c -o /out/hello.o)")
done
echo "" >"$SCRATCH/empty.ts"
all=("bare Deno" "" "$(q "$DENO" run --quiet "$SCRATCH/empty.ts")" "${cmds[@]}")
# Every runner must agree, or the timings mean nothing. yosys's log ends with
# its own CPU time, so only the statistics are compared; clang prints nothing
# and its hello.o is compared byte for byte. This first run of each command
# also compiles it into its cache.
echo "bench/yowasp_runs.sh: checking outputs (and compiling each module for each runner: minutes)" >&2
peers_check_outputs "$SCRATCH/out" "sed -n '/^=== counter ===/,/^End of script/{/^End of script/!p}'" \
  "${all[@]}" || exit 1
[ -s "$SCRATCH/out/hello.o" ] || {
  echo "bench/yowasp_runs.sh: clang wrote no hello.o" >&2
  exit 1
}
grep -q 'Number of cells' < <(sh -c "${all[5]}") || {
  echo "bench/yowasp_runs.sh: yosys printed no statistics" >&2
  exit 1
}
# Fill every cache (and Deno's code cache) once more, so that enarx's file links exist.
for ((k = 2; k < ${#all[@]}; k += 3)); do sh -c "${all[k]}" >/dev/null; done
echo "bench/yowasp_runs.sh: $(date -u), load average $(cut -d" " -f1-3 /proc/loadavg); $PEERS_VERSIONS" >&2
"$B/timeit" "$RUNS" 2 "$SCRATCH/times.json" "${all[@]}"
echo "bench/yowasp_runs.sh: $(date -u), load average $(cut -d" " -f1-3 /proc/loadavg)" >&2
"$DENO" run --quiet --allow-read "$ENARX_ROOT/bench/_peer_table.ts" "$SCRATCH/times.json" "$RUNS"
