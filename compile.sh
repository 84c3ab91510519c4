#!/usr/bin/env bash
# Builds the single `enarx` binary: `deno compile` of cli/main.ts into
# build/enarx, with the pinned libwasmtime embedded (--include). On its first
# start the binary extracts the library to
# $XDG_CACHE_HOME/enarx/wasmtime-<version>-<sha256 prefix>/libwasmtime.so
# (runtime/wasm/libwasmtime_path.ts). Type checking is left to `deno check` (the
# test command), so a build is not blocked by it.
#
# `deno compile` needs Deno's `denort` base binary: it takes it from
# DENORT_BIN when that is set, else downloads it (the npm package `deno` does
# not ship it). Where neither works, this prints "compile.sh: skipped: ..."
# and exits 0, so CI can call it anywhere.
#
# Usage: ./compile.sh [OUTPUT]   (default build/enarx)
set -euo pipefail
ENARX_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
# shellcheck source=tools/bootstrap.sh
. "$ENARX_ROOT/tools/bootstrap.sh"
enarx_bootstrap || exit 70

say() { printf 'compile.sh: %s\n' "$*" >&2; }
skip() {
  printf 'compile.sh: skipped: %s\n' "$*"
  exit 0
}

out=${1:-$ENARX_ROOT/build/enarx}
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

if [ -n "${DENORT_BIN:-}" ]; then
  if [ ! -f "$DENORT_BIN" ] || [ ! -x "$DENORT_BIN" ]; then
    say "DENORT_BIN is \"$DENORT_BIN\", which is not an executable file; point it at the denort binary of Deno $("$DENO" --version | head -1 | cut -d' ' -f2) or unset it"
    exit 66
  fi
  export DENORT_BIN
fi

# Stage the library and its digest where runtime/wasm/libwasmtime_path.ts looks
# for them (EMBEDDED_LIBWASMTIME_DIR).
embed="$ENARX_ROOT/build/embed/wasmtime-$WASMTIME_VERSION"
mkdir -p "$embed"
if ! cmp -s "$ENARX_LIBWASMTIME" "$embed/libwasmtime.so"; then
  cp "$ENARX_LIBWASMTIME" "$embed/libwasmtime.so.tmp"
  mv "$embed/libwasmtime.so.tmp" "$embed/libwasmtime.so"
fi
(cd "$embed" && sha256sum libwasmtime.so >libwasmtime.so.sha256)
# The measurement of the wasmldr being compiled (runtime/keep/measurement.ts):
# the binary reports and expects exactly this value.
measurement="$ENARX_ROOT/build/embed/wasmldr-measurement.hex"
"$DENO" run --quiet --allow-read --config "$ENARX_ROOT/deno.json" \
  "$ENARX_ROOT/tools/wasmldr_measurement.ts" >"$measurement.tmp"
mv "$measurement.tmp" "$measurement"
say "wasmldr measurement $(cat "$measurement")"

mkdir -p "$(dirname "$out")"
say "deno compile cli/main.ts -> $out (embedding libwasmtime $WASMTIME_VERSION, $(du -h "$embed/libwasmtime.so" | cut -f1))"
# The socket shim's C source (runtime/wasm/socket_shim.ts builds it on first use),
# runtime/wasm/sockets.ts, which runtime/wasm/workload.ts loads by a computed specifier,
# and runtime/units.ts, which cli/run.ts loads so.
# Every subcommand module (with its module graph), runtime/wasm/config.ts,
# runtime/backends/kvm_vm.ts, runtime/client/local_keep_run.ts and
# ffi/wasmtime/pipe.ts, so that cli/main.ts, cli/run.ts,
# runtime/backends/kvm.ts and runtime/wasm/workload.ts may load them with
# specifiers that deno
# cannot see ahead of time (which keeps `deno run` start-up from walking
# every subcommand's module graph).
includes=(--include "$embed" --include "$measurement" --include "$ENARX_ROOT/runtime/wasm/config.ts"
  --include "$ENARX_ROOT/runtime/backends/kvm_vm.ts" --include "$ENARX_ROOT/runtime/backends/sev/sev_launch.ts"
  --include "$ENARX_ROOT/runtime/client/local_keep_run.ts" --include "$ENARX_ROOT/ffi/wasmtime/pipe.ts"
  --include "$ENARX_ROOT/ffi/native/enarx_wasi_sockets.c" --include "$ENARX_ROOT/runtime/wasm/sockets.ts"
  --include "$ENARX_ROOT/runtime/wasm/tls_bridge.ts" --include "$ENARX_ROOT/runtime/wasm/keep_identity.ts"
  --include "$ENARX_ROOT/runtime/wasm/certificate_names.ts" --include "$ENARX_ROOT/runtime/units.ts")
# (Not the run bundle's entry and guard: ./enarx's, the binary does not use them.)
for f in "$ENARX_ROOT"/cli/*.ts "$ENARX_ROOT"/cli/*/*.ts; do
  case "$f" in */cli/bundle/*) continue ;; esac
  includes+=(--include "$f")
done
# With "nodeModulesDir": "manual" deno compile embeds every node_modules
# directory it finds: leave out the Deno CLI itself (npm packages deno and
# @deno/*, 92 MB), type declarations and the test workloads' packages
# (tests/yowasp, 139 MB), which enarx never loads at run time. (Paths must be
# absolute; a file reached through a hard link needs its own --exclude.)
for x in node_modules/@deno node_modules/deno node_modules/deno/deno node_modules/@types \
  tests/yowasp/node_modules; do
  includes+=(--exclude "$ENARX_ROOT/$x")
done
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! (cd "$ENARX_ROOT" && NO_COLOR=1 "$DENO" compile --quiet --no-check --allow-all --no-prompt \
  --config "$ENARX_ROOT/deno.json" \
  "${includes[@]}" \
  --output "$out" "$ENARX_ROOT/cli/main.ts") >"$log" 2>&1; then
  if [ -z "${DENORT_BIN:-}" ] && grep -q 'Setting up base binary' "$log"; then
    why=$(sed '/Stack backtrace/,$d' "$log" | grep -E '^ +[0-9]+: ' | tail -1 | sed -E 's/^ +[0-9]+: //; s/\(https?:[^)]*\)//' || true)
    skip "deno compile could not fetch its denort base binary (${why:-see the output of deno compile}) and DENORT_BIN is not set; set DENORT_BIN to the denort of Deno $("$DENO" --version | head -1 | cut -d' ' -f2)"
  fi
  cat "$log" >&2
  say "deno compile failed; see the messages above"
  exit 1
fi

# Smoke test: a base binary that is not denort (e.g. the deno CLI itself)
# yields a program that ignores its payload.
version=$(timeout 60 "$out" --version </dev/null 2>&1 | head -1 || true)
case "$version" in
  enarx\ *)
    # The embedded library must extract and run a module with no help from
    # the checkout: no ENARX_LIBWASMTIME, an empty cache directory.
    smoke=$(mktemp -d)
    if ! hello=$(cd "$smoke" && env -u ENARX_LIBWASMTIME -u ENARX_CACHE XDG_CACHE_HOME="$smoke/cache" \
      timeout 60 "$out" run "$ENARX_ROOT/examples/hello.wat" 2>&1 </dev/null); then
      rm -rf "$smoke"
      say "the binary at \"$out\" cannot run examples/hello.wat: $hello"
      exit 1
    fi
    rm -rf "$smoke"
    say "built $out ($(du -h "$out" | cut -f1)): $version; runs examples/hello.wat"
    ;;
  *)
    say "the binary at \"$out\" does not run enarx (it printed \"$version\"); is DENORT_BIN the denort of Deno $("$DENO" --version | head -1 | cut -d' ' -f2)?"
    rm -f "$out"
    exit 1
    ;;
esac
