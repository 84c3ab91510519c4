#!/usr/bin/env bash
# Builds the test workloads into tests/workloads/build/ from source with
# Debian's toolchains: clang + lld + wasi-libc for C (clang --target=wasm32-wasi),
# /usr/bin/rustc with libstd-rust-dev-wasm32 for Rust (--target wasm32-wasi),
# and rustc-web for the Cargo workloads (below).
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

# Cargo workloads (rust/NAME/Cargo.toml, built to NAME-rs.wasm): tokio and
# today's crates need a newer Rust than bookworm's, so these use the toolchain
# of tools/rust_wasm_toolchain.sh (Debian's rustc-web, unpacked in the cache),
# which builds std for wasm32-wasip1 from its sources (-Zbuild-std, allowed on
# a stable compiler by RUSTC_BOOTSTRAP=1) and links with trixie's wasi-libc,
# whose pthread stubs std needs (-lwasi-emulated-pthread). tokio enables `net`
# on WASI only with --cfg tokio_unstable. Crates at the exact versions that
# each Cargo.toml names.
# Rebuilt when a file of the project is newer than its module.
for manifest in "$HERE"/rust/*/Cargo.toml; do
  [ -f "$manifest" ] || continue
  proj=$(dirname "$manifest")
  name=$(basename "$proj")
  out="$OUT/$name-rs.wasm"
  if [ -f "$out" ] && [ "$out" -nt "$HERE/build.sh" ] &&
    [ -z "$(find "$proj" -type f ! -name Cargo.lock -newer "$out" -print -quit)" ]; then
    continue
  fi
  # Without the toolchain the other workloads are still built; build.sh fails at the end.
  env_file=$("$HERE/../../tools/rust_wasm_toolchain.sh" --env) || {
    unbuilt="${unbuilt:-}$name-rs.wasm "
    continue
  }
  # shellcheck source=/dev/null
  . "$env_file"
  say "cargo build $name (rustc-web, -Zbuild-std for wasm32-wasip1)"
  (cd "$proj" && env LD_LIBRARY_PATH="$ENARX_RUST_LIBS" RUSTC="$RUSTC" RUSTC_BOOTSTRAP=1 \
    RUSTFLAGS="--cfg tokio_unstable -C linker=$ENARX_WASM_LD -C link-arg=-lwasi-emulated-pthread" \
    "$CARGO" build --quiet --release --target wasm32-wasip1 \
    -Zbuild-std=std,panic_abort --target-dir "$OUT/cargo-target" >&2)
  cp "$OUT/cargo-target/wasm32-wasip1/release/$name.wasm" "$out.tmp"
  mv "$out.tmp" "$out"
done

# Real third-party WASI programs (tests/yowasp/package.json, pinned in its
# package-lock.json; in a folder of their own because a package.json makes
# Deno resolve its folder's configuration apart from deno.json): installed
# with npm ci when missing or when the lock changed; clang's sysroot is
# unpacked for preopening as /usr.
YOWASP=$(cd "$HERE/../yowasp" && pwd)
stamp="$YOWASP/node_modules/.enarx-lock"
if ! { [ -f "$stamp" ] && cmp -s "$stamp" "$YOWASP/package-lock.json"; }; then
  need npm "nodejs and npm"
  say "npm ci --prefix tests/yowasp (@yowasp/yosys, @yowasp/clang: about 120 MB)"
  npm ci --prefix "$YOWASP" --no-audit --no-fund --loglevel=error >&2
  cp "$YOWASP/package-lock.json" "$stamp"
fi
usr="$OUT/yowasp-usr"
tar="$YOWASP/node_modules/@yowasp/clang/gen/llvm-resources.tar"
if ! fresh "$usr/.unpacked" "$tar"; then
  say "unpacking clang's sysroot into build/yowasp-usr"
  rm -rf "$usr" && mkdir -p "$usr"
  tar -xf "$tar" -C "$usr"
  touch "$usr/.unpacked"
fi
if [ -n "${unbuilt:-}" ]; then
  say "not built: ${unbuilt% } (no toolchain for the Cargo workloads; see above)"
  exit 1
fi
