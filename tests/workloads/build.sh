#!/usr/bin/env bash
# Builds the test workloads into tests/workloads/build/ from source with
# Debian's toolchains: clang + lld + wasi-libc for C (clang --target=wasm32-wasi),
# /usr/bin/rustc with libstd-rust-dev-wasm32 for Rust (--target wasm32-wasi).
# Incremental: a module is rebuilt only when its source is newer.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT="$HERE/build"
mkdir -p "$OUT"

say() { printf 'build.sh: %s\n' "$*" >&2; }
need() {
  [ -x "$(command -v "$1" 2>/dev/null)" ] || [ -x "$1" ] || {
    say "\"$1\" is missing; install Debian's $2 (tools/test.sh does it)"
    exit 1
  }
}
fresh() { [ -f "$1" ] && [ "$1" -nt "$2" ] && [ "$1" -nt "$HERE/build.sh" ]; }

need clang "clang, lld, wasi-libc and libclang-rt-14-dev-wasm32"
need /usr/bin/rustc "rustc and libstd-rust-dev-wasm32"

for src in "$HERE"/c/*.c; do
  name=$(basename "$src" .c)
  out="$OUT/$name.wasm"
  fresh "$out" "$src" && continue
  say "clang $name.c"
  clang --target=wasm32-wasi --sysroot=/usr -O2 -o "$out.tmp" "$src"
  mv "$out.tmp" "$out"
done

for src in "$HERE"/wat/*.wat; do
  cp -p "$src" "$OUT/$(basename "$src")"
done

for src in "$HERE"/rust/*.rs; do
  name=$(basename "$src" .rs)
  out="$OUT/$name-rs.wasm"
  fresh "$out" "$src" && continue
  say "rustc $name.rs"
  /usr/bin/rustc --target wasm32-wasi -O -C strip=debuginfo -o "$out.tmp" "$src"
  mv "$out.tmp" "$out"
done
