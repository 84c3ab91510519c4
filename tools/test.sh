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
enarx_test_deps_qemu
enarx_test_deps_apt
enarx_test_deps_rust_wasm
enarx_test_deps_wasmtime_headers
enarx_test_deps_kvm_kernel
enarx_test_deps_ovmf_amdsev
cd "$ENARX_ROOT"
enarx_say "building test workloads (tests/workloads/build.sh)"
bash tests/workloads/build.sh
if [ $# -eq 0 ]; then
  enarx_say "the repository stands alone and its folders stay small (tools/check_tree.sh)"
  ./tools/check_tree.sh
  enarx_say "deno fmt --check, deno lint, deno check"
  "$DENO" fmt --check
  "$DENO" lint
  "$DENO" check cli/ mod.ts tests/ bench/ tools/
fi
enarx_say "deno test"
# Every tool a test needs was installed above: a missing one fails its test
# instead of skipping it (tests/_requires.ts).
export ENARX_TEST_REQUIRE_ALL="${ENARX_TEST_REQUIRE_ALL:-1}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
"$DENO" test --allow-all --no-prompt "${@:-tests/}" 2>&1 | tee "$log" || status=$?
# The closing line: Deno's counts, with every skipped test named and why.
plain=$(sed 's/\x1b\[[0-9;]*m//g' "$log")
summary=$(printf '%s\n' "$plain" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -1 || true)
if [ -z "$summary" ]; then
  echo "tests: deno test ended without its summary (status $status)"
  exit $((status == 0 ? 1 : status))
fi
passed=$(printf '%s' "$summary" | sed -E 's/.* ([0-9]+) passed.*/\1/')
failed=$(printf '%s' "$summary" | sed -E 's/.* ([0-9]+) failed.*/\1/')
ignored=$(printf '%s' "$summary" | grep -oE '[0-9]+ ignored' | cut -d' ' -f1 || true)
printf '%s\n' "$plain" | grep -E '^SKIP: ' | sort -u || true
printf '%s\n' "$plain" | grep -E ' \.\.\. ignored' | sed 's/ \.\.\. ignored.*//; s/^/skipped: /' || true
echo "tests: $passed passed, $failed failed, ${ignored:-0} skipped"
exit "$status"
