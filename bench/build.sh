#!/usr/bin/env bash
# Builds what issue 2's benchmarks run into bench/build/ (ignored by git):
#   run               the native harness (bench/native/run.c) linked to the
#                     same libwasmtime as enarx ($ENARX_LIBWASMTIME)
#   *.wasm            bench/workloads/*.c, clang --target=wasm32-wasi -O2
#                     against Debian's wasi-libc
#   sha256_native     sha256.c built for the host (gcc -O2), for reference
#   timeit            the interleaved timing loop (bench/native/timeit.c)
# Usage: bench/build.sh   (after tools/bootstrap.sh; bench/run.sh calls it)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out="$here/build"
lib=${ENARX_LIBWASMTIME:?ENARX_LIBWASMTIME is not set; source tools/bootstrap.sh and run enarx_bootstrap first}
libdir=$(dirname "$lib")
include="$libdir/include"
[ -f "$include/wasmtime.h" ] || {
  echo "bench/build.sh: wasmtime C headers not found in \"$include\"; run tools/test_deps.sh" >&2
  exit 66
}
for tool in clang gcc nm; do
  command -v "$tool" >/dev/null || {
    echo "bench/build.sh: \"$tool\" is not installed (Debian: apt-get install clang lld wasi-libc gcc binutils)" >&2
    exit 69
  }
done
mkdir -p "$out"
"$here/native/gen_conf.sh" "$lib" "$out/include"
# libwasmtime.so has no SONAME-style lib prefix issue: link it by path, find it by rpath.
gcc -O2 -Wall -Wextra -std=c11 -I"$out/include" -I"$include" "$here/native/run.c" \
  -o "$out/run" "$lib" -Wl,-rpath,"$libdir"
gcc -O2 -Wall -Wextra -std=c11 "$here/native/timeit.c" -o "$out/timeit"
for w in "$here"/workloads/*.c; do
  name=$(basename "$w" .c)
  clang --target=wasm32-wasi -O2 -Wall "$w" -o "$out/$name.wasm"
done
gcc -O2 -Wall "$here/workloads/sha256.c" -o "$out/sha256_native"
echo "bench/build.sh: built run, timeit, sha256_native and $(cd "$out" && echo *.wasm) in $out" >&2
# bench/http_bench.ts: the wasm HTTP example under this libwasmtime with the
# socket shim compiled in (the C API alone cannot give a guest a socket).
gcc -O2 -Wall -Wextra -std=c11 -I"$out/include" -I"$include" "$here/native/http_host.c" \
  "$here/../ffi/native/enarx_wasi_sockets.c" -o "$out/http_host" "$lib" -ldl -Wl,-rpath,"$libdir"
echo "bench/build.sh: built http_host in $out" >&2
