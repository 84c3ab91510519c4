# Bootstrap for ./enarx, .ci/run and the tests: makes sure the pinned Deno and
# the pinned libwasmtime are present, fetching them on first use only.
# Sourced, not run. Sets ENARX_ROOT, ENARX_CACHE, ENARX_OVMF_DIR, DENO, ENARX_LIBWASMTIME.
# Everything goes to a cache inside the checkout (ignored by git) unless
# ENARX_CACHE or XDG_CACHE_HOME says otherwise.

ENARX_ROOT=${ENARX_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=tools/versions.sh
. "$ENARX_ROOT/tools/versions.sh"
if [ -z "${ENARX_CACHE:-}" ]; then
  if [ -n "${XDG_CACHE_HOME:-}" ]; then ENARX_CACHE="$XDG_CACHE_HOME/enarx"; else ENARX_CACHE="$ENARX_ROOT/.cache"; fi
fi
# The AmdSev OVMF (tools/build_ovmf.sh) is slow to build and the same for
# every clone: it lives in the user's cache, outside the checkout, as
# runtime/dirs.ts amdSevOvmfPath finds it.
if [ -n "${XDG_CACHE_HOME:-}" ]; then
  ENARX_OVMF_DIR="$XDG_CACHE_HOME/enarx/ovmf-amdsev"
elif [ -n "${HOME:-}" ]; then
  ENARX_OVMF_DIR="$HOME/.cache/enarx/ovmf-amdsev"
else
  ENARX_OVMF_DIR="$ENARX_CACHE/ovmf-amdsev"
fi
DENO="$ENARX_ROOT/node_modules/@deno/linux-x64-glibc/deno"
export DENO_DIR="${DENO_DIR:-$ENARX_CACHE/deno}"
export DENO_NO_UPDATE_CHECK=1

enarx_say() { printf 'enarx bootstrap: %s\n' "$*" >&2; }

enarx_need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  enarx_say "\"$1\" is not installed; install $2 and run this again"
  return 1
}

# Deno and the npm libraries come from package.json/package-lock.json via npm.
enarx_bootstrap_deno() {
  local stamp="$ENARX_ROOT/node_modules/.enarx-lock"
  if [ -x "$DENO" ] && [ -f "$stamp" ] && cmp -s "$stamp" "$ENARX_ROOT/package-lock.json"; then
    # ./enarx's fast path trusts a stamp newer than the lock file: keep it so
    # once the contents are known to match (e.g. after a checkout touched the
    # lock), also for a /bin/sh whose `-nt` only sees whole seconds.
    if ! [ "$stamp" -nt "$ENARX_ROOT/package-lock.json" ] ||
      [ "$(date -r "$stamp" +%s)" = "$(date -r "$ENARX_ROOT/package-lock.json" +%s)" ]; then
      touch "$stamp"
    fi
    return 0
  fi
  enarx_need npm "Node.js with npm (Debian: apt-get install nodejs npm)" || return 1
  enarx_say "installing Deno and npm libraries pinned in package-lock.json (npm ci)"
  (cd "$ENARX_ROOT" && npm ci --no-audit --no-fund --loglevel=error >&2) || {
    enarx_say "npm ci failed; see the messages above"
    return 1
  }
  if [ ! -x "$DENO" ]; then
    enarx_say "npm did not install the Deno binary at \"$DENO\"; only linux x86_64 (glibc) is supported"
    return 1
  fi
  cp "$ENARX_ROOT/package-lock.json" "$stamp"
}

# libwasmtime: the wasmtime wheel's _libwasmtime.so, sha256 checked.
enarx_bootstrap_wasmtime() {
  local dir="$ENARX_CACHE/wasmtime-$WASMTIME_VERSION"
  ENARX_LIBWASMTIME="$dir/libwasmtime.so"
  [ -f "$ENARX_LIBWASMTIME" ] && return 0
  enarx_need python3 "Python 3 with pip (Debian: apt-get install python3-pip)" || return 1
  python3 -m pip --version >/dev/null 2>&1 || {
    enarx_say "pip is not installed for python3; install it (Debian: apt-get install python3-pip) and run this again"
    return 1
  }
  enarx_say "fetching libwasmtime $WASMTIME_VERSION (the wasmtime wheel, 9.6 MB) with pip download"
  mkdir -p "$dir"
  local tmp
  tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux1_x86_64 --python-version 3.11 --progress-bar on \
    "wasmtime==$WASMTIME_VERSION" -d "$tmp" >&2 || {
    rm -rf "$tmp"
    enarx_say "pip download of wasmtime==$WASMTIME_VERSION failed; see the messages above"
    return 1
  }
  local got
  got=$(sha256sum "$tmp/$WASMTIME_WHEEL" | cut -d' ' -f1)
  if [ "$got" != "$WASMTIME_WHEEL_SHA256" ]; then
    rm -rf "$tmp"
    enarx_say "$WASMTIME_WHEEL has sha256 $got, expected $WASMTIME_WHEEL_SHA256; refusing to use it"
    return 1
  fi
  python3 - "$tmp/$WASMTIME_WHEEL" "$tmp/libwasmtime.so" <<'PY' || { rm -rf "$tmp"; return 1; }
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("wasmtime/linux-x86_64/_libwasmtime.so"))
PY
  mv "$tmp/libwasmtime.so" "$ENARX_LIBWASMTIME"
  rm -rf "$tmp"
}

enarx_bootstrap() {
  enarx_bootstrap_deno && enarx_bootstrap_wasmtime && export ENARX_LIBWASMTIME
}

# The run bundle, build/enarx_run.js: `enarx run` as one module
# (tools/build_run_bundle.ts), which ./enarx runs instead of cli/main.ts's
# twenty. Built when missing (a stale one deletes itself on its next start,
# cli/bundle/guard.ts). Returns 1 when there is none to run: a checkout
# this user cannot write, or a build that failed; ./enarx then runs the
# sources. `deno bundle` fetches Deno's esbuild (from the npm registry, into
# DENO_DIR) the first time; a failed build (offline, or sources that do not
# bundle, which cli/main.ts then reports) is not tried again for an hour, so
# that such a checkout does not pay for a build on every run.
enarx_build_run_bundle() {
  local failed="$ENARX_ROOT/build/enarx_run.failed"
  [ -f "$ENARX_ROOT/build/enarx_run.js" ] && return 0
  [ -w "$ENARX_ROOT" ] || return 1
  if [ -f "$failed" ] && [ -n "$(find "$failed" -mmin -60 2>/dev/null)" ]; then return 1; fi
  if "$DENO" run --quiet --allow-all --no-prompt --config "$ENARX_ROOT/deno.json" \
    "$ENARX_ROOT/tools/build_run_bundle.ts" >/dev/null 2>&1; then
    rm -f "$failed"
    return 0
  fi
  mkdir -p "$ENARX_ROOT/build" && : >"$failed"
  return 1
}
