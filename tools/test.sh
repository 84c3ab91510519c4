#!/usr/bin/env bash
# Runs every test from a fresh machine: bootstraps Deno and libwasmtime,
# installs the test toolchains, builds the test workloads, then runs
# `deno fmt --check`, `deno lint`, `deno check` and `deno test`.
# Arguments after the script are passed to `deno test` (e.g. a file or --filter).
set -euo pipefail
ENARX_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
. "$ENARX_ROOT/tools/bootstrap.sh"
. "$ENARX_ROOT/tools/test_deps.sh"
enarx_bootstrap
enarx_test_deps_apt
enarx_test_deps_wasmtime_headers
enarx_test_deps_kvm_kernel
cd "$ENARX_ROOT"
enarx_say "building test workloads (tests/workloads/build.sh)"
bash tests/workloads/build.sh
if [ $# -eq 0 ]; then
  enarx_say "deno fmt --check, deno lint, deno check"
  "$DENO" fmt --check
  "$DENO" lint
  "$DENO" check cli/ mod.ts tests/ bench/ tools/
fi
enarx_say "deno test"
exec "$DENO" test --allow-all --no-prompt "${@:-tests/}"
