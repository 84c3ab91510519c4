#!/usr/bin/env bash
# Prepares the Rust toolchain of the Cargo workloads (tests/workloads/rust/*/,
# e.g. tokio_http): tokio, mio and today's crates need a Rust far newer than
# bookworm's rustc 1.63, whose wasm32-wasi std the single-file workloads use.
#
# Where it comes from, all Debian packages through apt, nothing else:
#   - rustc-web and cargo-web (bookworm, security updates: the newer Rust that
#     Debian keeps for its browsers), with their std (libstd-rust-web-*) and
#     the std's sources (rust-web-src). rustc-web conflicts with bookworm's
#     rustc, which the other workloads need, so they are not installed: they
#     are fetched with `apt-get download` and unpacked with `dpkg-deb -x` into
#     the cache (below). Debian ships no wasm32 std for them: build.sh builds
#     std for wasm32-wasip1 from rust-web-src (cargo -Zbuild-std, allowed on a
#     stable compiler by RUSTC_BOOTSTRAP=1).
#   - lld-N, installed: the wasm-ld of the LLVM that rustc-web links with
#     (bookworm's lld 14 is too old for its objects: no __heap_end).
#   - wasi-libc of trixie (2024-12), unpacked as the target's self-contained
#     C library: std >= 1.9x needs its pthread stubs (libwasi-emulated-pthread),
#     which bookworm's wasi-libc (2022) and bookworm-backports' (2024-07) lack.
#     It is fetched through a private apt configuration under the cache
#     (its own sources entry for trixie and its own package lists), so the
#     machine's apt sources and pins are not changed and nothing from trixie
#     is installed.
#   - the shared libraries that these need (cargo-web's libgit2, libcurl,
#     ...), installed from bookworm by name when missing.
#
# Result: $ENARX_CACHE/rust-wasm/VERSION/ (ENARX_CACHE as tools/bootstrap.sh
# sets it: the checkout's .cache by default) with usr/bin/{rustc,cargo}, and
# an env file there that build.sh sources (RUSTC, CARGO, ENARX_RUST_LIBS for
# LD_LIBRARY_PATH, ENARX_WASM_LD). Idempotent: a ready toolchain of apt's current rustc-web
# version is used as it is.
#
#   tools/rust_wasm_toolchain.sh          prepare it (root, or sudo)
#   tools/rust_wasm_toolchain.sh --env    print the env file of a ready one, or fail
set -euo pipefail

ENARX_ROOT=${ENARX_ROOT:-$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)}
if [ -z "${ENARX_CACHE:-}" ]; then
  if [ -n "${XDG_CACHE_HOME:-}" ]; then ENARX_CACHE="$XDG_CACHE_HOME/enarx"; else ENARX_CACHE="$ENARX_ROOT/.cache"; fi
fi
BASE="$ENARX_CACHE/rust-wasm"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

say() { printf 'rust_wasm_toolchain: %s\n' "$*" >&2; }
fail() {
  say "$*"
  exit 1
}

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

# apt's candidate version of package $1 (with the machine's own sources), or nothing.
candidate() {
  apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -v '(none)' || true
}

# The env file of the newest ready toolchain, or nothing.
ready_env() {
  local dir
  for dir in $(ls -d "$BASE"/*/ 2>/dev/null | sort -rV); do
    [ -f "$dir/.ready" ] && [ -f "$dir/env" ] && { echo "${dir%/}/env"; return 0; }
  done
  return 0
}

if [ "${1:-}" = "--env" ]; then
  env=$(ready_env)
  [ -n "$env" ] || fail "no Rust toolchain for the Cargo workloads in $BASE; run tools/rust_wasm_toolchain.sh (tools/test.sh does it)"
  echo "$env"
  exit 0
fi
[ $# -eq 0 ] || fail "unknown argument \"$1\"; usage: tools/rust_wasm_toolchain.sh [--env]"

command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 ||
  fail "this needs Debian's apt-get and dpkg-deb (Debian bookworm); elsewhere build the Cargo workloads with a Rust >= 1.85 that has a wasm32-wasip1 std"
grep -q '^VERSION_CODENAME=bookworm' /etc/os-release 2>/dev/null ||
  fail "this takes rustc-web from Debian bookworm, and this system is not bookworm"

VERSION=$(candidate rustc-web)
if [ -z "$VERSION" ]; then
  say "apt-get update (apt knows no rustc-web yet)"
  $sudo apt-get update -qq >&2 || fail "apt-get update failed; see the messages above"
  VERSION=$(candidate rustc-web)
fi
[ -n "$VERSION" ] || fail "apt knows no rustc-web (bookworm's newer Rust, from bookworm-security); check that the machine's Debian sources include bookworm-security"
DIR="$BASE/$VERSION"
if [ -f "$DIR/.ready" ]; then
  say "present: rustc-web $VERSION in $DIR"
  exit 0
fi
MINOR=$(echo "$VERSION" | cut -d. -f1-2) # 1.96
RUST_DEBS="rustc-web cargo-web libstd-rust-web-$MINOR libstd-rust-web-dev rust-web-src"

# The machine's Debian mirror URI, from its own sources entry.
debian_uri() {
  local f
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    grep -hoE '(https?|mirror\+[a-z]+)://[^ ]*/debian/?( |$)' "$f" | head -1 | tr -d ' ' && return 0
  done
  return 1
}

# Downloads package names/versions "$@" into $DIR/deb with the machine's apt.
download() {
  (cd "$DIR/deb" && apt-get download -qq "$@" 2>&1 | grep -v 'Download is performed unsandboxed' >&2) || true
}

# Fetches trixie's wasi-libc with a private apt configuration under $DIR/apt.
download_wasi_libc() {
  local uri apt="$DIR/apt"
  uri=$(debian_uri) || fail "no Debian mirror entry in /etc/apt/sources.list*: cannot reach trixie's wasi-libc"
  [ -f "$KEYRING" ] || fail "missing $KEYRING (apt-get install debian-archive-keyring)"
  mkdir -p "$apt/lists/partial" "$apt/parts" "$apt/prefs"
  printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: %s\n' "$uri" "$KEYRING" >"$apt/trixie.sources"
  local opts=(-o "Dir::Etc::SourceList=$apt/trixie.sources" -o "Dir::Etc::SourceParts=$apt/parts"
    -o "Dir::Etc::Preferences=$apt/prefs/none" -o "Dir::Etc::PreferencesParts=$apt/prefs"
    -o "Dir::State::Lists=$apt/lists" -o "Dir::State::status=/dev/null"
    -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache=" -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false")
  say "fetching trixie's wasi-libc (private apt lists in $apt; the machine's sources are unchanged)"
  apt-get "${opts[@]}" -qq update >&2 || fail "apt-get update of the private trixie entry failed; see the messages above"
  (cd "$DIR/deb" && apt-get "${opts[@]}" -qq download wasi-libc 2>&1 | grep -v 'Download is performed unsandboxed' >&2) || true
  ls "$DIR"/deb/wasi-libc_*.deb >/dev/null 2>&1 || fail "apt-get download of trixie's wasi-libc failed; see the messages above"
}

# Installs from bookworm, by name, what the unpacked packages depend on and
# the machine lacks (first alternative of each; the unpacked ones excepted).
install_dependencies() {
  local want=() name deps
  deps=$(for f in "$DIR"/deb/*.deb; do dpkg-deb -f "$f" Depends; echo; done |
    tr ',' '\n' | sed -E 's/\|.*//; s/\(.*\)//; s/:any//; s/^ *//; s/ *$//' | grep -v '^$' | sort -u)
  for name in $deps "lld-$LLVM"; do
    case " $RUST_DEBS " in *" $name "*) continue ;; esac
    dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q "install ok installed" && continue
    # A virtual package (libc-dev) counts as present when a package provides it.
    [ -n "$(dpkg-query -W -f='${Provides}\n' 2>/dev/null | grep -E "(^|, )$name( |,|$)")" ] && continue
    want+=("$name")
  done
  [ ${#want[@]} -eq 0 ] && return 0
  say "installing from bookworm: ${want[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${want[@]}" >&2 ||
    fail "apt-get install ${want[*]} failed; see the messages above"
}

# Unpacks the Rust packages into $DIR/usr (rust-web-src: only std's sources).
unpack() {
  local f
  for f in "$DIR"/deb/*.deb; do
    case "$(basename "$f")" in
      wasi-libc_*) ;;
      rust-web-src_*)
        dpkg-deb --fsys-tarfile "$f" | tar -x -C "$DIR" --wildcards './usr/src/rustc-*/library' './usr/lib/rustlib/src' ;;
      *) dpkg-deb -x "$f" "$DIR" ;;
    esac
  done
  local wasi="$DIR/wasi-libc" sc="$DIR/usr/lib/rustlib/wasm32-wasip1/lib/self-contained"
  dpkg-deb -x "$DIR"/deb/wasi-libc_*.deb "$wasi"
  [ -f "$wasi/usr/lib/wasm32-wasip1/libwasi-emulated-pthread.a" ] ||
    fail "trixie's wasi-libc has no wasm32-wasip1/libwasi-emulated-pthread.a; std needs its pthread functions"
  mkdir -p "$sc" && cp "$wasi"/usr/lib/wasm32-wasip1/* "$sc/"
  rm -rf "$wasi"
}

main() {
  say "preparing rustc-web $VERSION for wasm32-wasip1 in $DIR"
  rm -rf "$DIR" && mkdir -p "$DIR/deb"
  local v
  local debs=()
  for name in $RUST_DEBS; do debs+=("$name=$VERSION"); done
  download "${debs[@]}"
  for name in $RUST_DEBS; do
    ls "$DIR/deb/${name}_"*.deb >/dev/null 2>&1 || fail "apt-get download $name=$VERSION failed; see the messages above"
  done
  # The LLVM that librustc_driver links with: lld of the same major version.
  LLVM=$(dpkg-deb -f "$DIR"/deb/libstd-rust-web-"$MINOR"_*.deb Depends | grep -oE 'libllvm[0-9]+' | head -1 | sed 's/libllvm//')
  [ -n "$LLVM" ] || fail "cannot tell which LLVM libstd-rust-web-$MINOR links with"
  download_wasi_libc
  install_dependencies
  unpack
  rm -rf "$DIR/deb" "$DIR/apt" "$DIR/usr/share"
  local wasm_ld="/usr/lib/llvm-$LLVM/bin/wasm-ld"
  [ -x "$wasm_ld" ] || fail "lld-$LLVM installed no $wasm_ld"
  # Paths inside the toolchain are taken relative to this file (a checkout
  # and its .cache may move); wasm-ld is the system's.
  cat >"$DIR/env" <<'ENV'
# Written by tools/rust_wasm_toolchain.sh; sourced by tests/workloads/build.sh.
ENARX_RUST_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUSTC="$ENARX_RUST_DIR/usr/bin/rustc"
CARGO="$ENARX_RUST_DIR/usr/bin/cargo"
ENARX_RUST_LIBS="$ENARX_RUST_DIR/usr/lib/x86_64-linux-gnu"
ENV
  echo "ENARX_WASM_LD=\"$wasm_ld\"" >>"$DIR/env"
  v=$(LD_LIBRARY_PATH="$DIR/usr/lib/x86_64-linux-gnu" "$DIR/usr/bin/rustc" --version) ||
    fail "the unpacked rustc does not run; see the messages above"
  touch "$DIR/.ready"
  say "ready: $v"
}

main
