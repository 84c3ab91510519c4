#!/usr/bin/env bash
# The peers that issue 11's benchmarks (bench/cached_runs.sh, bench/run.sh,
# bench/yowasp_runs.sh) compare `enarx run` with, installed when missing:
#   wazero     the wazero CLI (Go), pinned to WAZERO_VERSION, built by
#              `go install` into bench/build/peers/ (ignored by git). The
#              scripts run it with -cachedir, so that it keeps its compiled
#              code between runs as enarx does: a cached run reads the module,
#              hashes it to find its entry and loads the code from there.
#   node:wasi  Node's built-in WASI (preview 1) through bench/node_wasi.mjs,
#              with the system's node (>= 20). Node keeps no compiled wasm
#              between runs: every run compiles with Liftoff, V8's baseline
#              compiler, and tiers hot functions up with TurboFan.
#
# Sourced (after tools/bootstrap.sh): `enarx_peers` installs what is missing
# and sets WAZERO (the binary), NODE_WASI (an array: the command that runs a
# module) and PEERS_VERSIONS (one line for the report). Run: does the same and
# prints the versions.
#
# Usage: bash bench/peers.sh
WAZERO_VERSION=v1.12.0
PEERS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

enarx_peers() {
  local bin="$PEERS_DIR/build/peers"
  WAZERO="$bin/wazero"
  if [ "$("$WAZERO" version 2>/dev/null)" != "$WAZERO_VERSION" ]; then
    local go
    go=$(command -v go || { [ -x /usr/local/go/bin/go ] && echo /usr/local/go/bin/go; }) || {
      echo "bench/peers.sh: Go is not installed; it builds the wazero CLI (https://go.dev/dl/)" >&2
      return 69
    }
    mkdir -p "$bin"
    echo "bench/peers.sh: go install of the wazero CLI $WAZERO_VERSION into $bin" >&2
    GOBIN="$bin" GOFLAGS=-buildvcs=false "$go" install \
      "github.com/tetratelabs/wazero/cmd/wazero@$WAZERO_VERSION" >&2 || {
      echo "bench/peers.sh: go install of wazero $WAZERO_VERSION failed; see the messages above" >&2
      return 69
    }
  fi
  local node node_version
  node=$(command -v node) || {
    echo "bench/peers.sh: node is not installed (Debian: apt-get install nodejs); it runs node:wasi" >&2
    return 69
  }
  node_version=$("$node" --version)
  case $node_version in
    v1[0-9].* | v[0-9].*)
      echo "bench/peers.sh: node $node_version is too old for node:wasi preview1; need 20 or later" >&2
      return 69
      ;;
  esac
  NODE_WASI=("$node" --no-warnings "$PEERS_DIR/node_wasi.mjs")
  PEERS_VERSIONS="wazero $("$WAZERO" version), Node $node_version (node:wasi)"
}

# peers_check_outputs OUTDIR FILTER NAME PREPARE COMMAND [NAME PREPARE COMMAND]...
# Runs each command once (the triplets bench/native/timeit.c takes; PREPARE is
# ignored) and checks that every command named "RUNNER, WORK" gives what the
# first command of the same WORK gave: its stdout passed through FILTER (a
# shell command that must succeed on any input, "cat" for all of it) and the SHA-256 of every file it left
# in OUTDIR, which is emptied before each run. Commands whose name has no ", "
# are not run. Returns 1 and says which command differs.
peers_check_outputs() {
  local outdir=$1 filter=$2
  shift 2
  local -A want=()
  local name command work got
  while [ $# -ge 3 ]; do
    name=$1 command=$3
    shift 3
    [[ $name == *", "* ]] || continue
    work=${name#*, }
    rm -rf "${outdir:?}"/*
    got=$(sh -c "$command" | sh -c "$filter") || {
      echo "bench/peers.sh: \"$name\" failed: $command" >&2
      return 1
    }
    got+=$'\n'$(cd "$outdir" && find . -type f -print0 | sort -z | xargs -0r sha256sum)
    if [ -z "${want[$work]+set}" ]; then
      want[$work]=$got
    elif [ "$got" != "${want[$work]}" ]; then
      printf 'bench/peers.sh: "%s" gave\n%s\nwhere the first runner of "%s" gave\n%s\n' \
        "$name" "$got" "$work" "${want[$work]}" >&2
      return 1
    fi
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  enarx_peers
  echo "$PEERS_VERSIONS"
fi
